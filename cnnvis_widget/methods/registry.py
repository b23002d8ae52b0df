"""The method registry: one :class:`Method` descriptor per attribution method.

Descriptors carry everything a UI needs to build a form (parameters with defaults and ranges)
and everything :func:`cnnvis_widget.attribute` needs to call the method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .context import AttributionRequest

MethodFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Param:
    """A method parameter: ``kind`` is "int", "float", "bool" or "choice"."""

    name: str
    default: Any
    kind: Literal["int", "float", "bool", "choice"]
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Method:
    """An attribution method.

    ``output`` is "pixel" (a signed map shaped like the input) or "layer" (``(N, 1, h, w)`` at
    the layer's resolution, non-negative). ``cost`` is in forward (F) / backward (B) passes.
    """

    name: str
    title: str
    family: str
    output: Literal["pixel", "layer"]
    signed: bool
    uses_layer: bool
    params: tuple[Param, ...]
    cost: str
    summary: str
    fn: MethodFn
    streams: bool = False
    """Reports partial maps through ``on_step`` (long methods); the widget runs these in a
    background thread."""

    def __call__(self, request: AttributionRequest, **params: Any) -> torch.Tensor:
        return self.fn(request, **params)

    def defaults(self) -> dict[str, Any]:
        return {param.name: param.default for param in self.params}


AUTO_BATCH = {"cpu": 8, "cuda": 64}
"""Batch sizes used when ``batch_size=0``: the fastest per image measured here
(benchmarks/batch_sweep.py: ResNet-50 on 2 CPU cores is fastest at 4-8 images per pass; a GPU
needs larger batches to fill)."""


def batch_size_param(what: str) -> Param:
    """The ``batch_size`` parameter of a batched method: ``what`` per forward pass, 0 = chosen
    for the device (:data:`AUTO_BATCH`)."""
    return Param(
        "batch_size",
        0,
        "int",
        f"{what} per forward pass; 0 = automatic ({AUTO_BATCH['cpu']} on CPU, "
        f"{AUTO_BATCH['cuda']} on a GPU)",
        0,
        1024,
    )


def resolve_batch_size(batch_size: int, device: torch.device) -> int:
    """``batch_size``, or the automatic choice for ``device`` when it is 0."""
    if batch_size > 0:
        return batch_size
    return AUTO_BATCH["cuda"] if device.type == "cuda" else AUTO_BATCH["cpu"]


METHODS: dict[str, Method] = {}


def register(
    *,
    name: str,
    title: str,
    family: str,
    output: Literal["pixel", "layer"],
    signed: bool,
    uses_layer: bool,
    cost: str,
    params: tuple[Param, ...] = (),
    streams: bool = False,
) -> Callable[[MethodFn], MethodFn]:
    """Decorator that adds a method function ``fn(request, **params) -> Tensor`` to METHODS;
    the function's docstring becomes the descriptor's summary."""

    def add(fn: MethodFn) -> MethodFn:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice.")
        METHODS[name] = Method(
            name,
            title,
            family,
            output,
            signed,
            uses_layer,
            params,
            cost,
            fn.__doc__ or "",
            fn,
            streams,
        )
        return fn

    return add
