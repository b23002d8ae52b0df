"""Hooks on named layers: record outputs (and make them differentiable), always cleaned up.

Hooks go on the eval-mode view a method runs on (:func:`~cnnvis_widget.model_view.eval_view`),
never on the user's modules; they are removed when the block ends, also on exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


@dataclass(frozen=True)
class LayerRef:
    """A layer by dotted name, optionally one call of a module that runs several times.

    ``"layer1.0.relu"`` is its last call; ``"layer1.0.relu@0"`` its first.
    """

    name: str
    call: int | None = None

    @classmethod
    def parse(cls, text: str) -> LayerRef:
        name, sep, call = text.rpartition("@")
        if sep and call.isdigit():
            return cls(name, int(call))
        return cls(text)

    def __str__(self) -> str:
        return self.name if self.call is None else f"{self.name}@{self.call}"


def resolve_module(module: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (as in ``named_modules()``), or a ``ValueError`` that
    lists the close matches and every valid name."""
    modules = dict(module.named_modules())
    modules.pop("", None)
    if name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, list(modules), n=5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown layer {name!r}.{hint} Valid layer names (see cv.layers(module, x)): "
        f"{', '.join(modules)}."
    )


@dataclass
class _Tap:
    ref: LayerRef
    calls: int = 0
    output: object = None
    enable_grad: bool = False
    finished: int | None = None
    clock: list[int] = field(default_factory=lambda: [0])


@dataclass
class Capture:
    """Outputs recorded by :func:`capture`: ``outputs[name]`` is the layer's output tensor.

    With ``differentiable=True`` each captured tensor is a leaf that requires grad and the rest
    of the forward pass is built on it, so ``torch.autograd.grad(score, capture.tensor(name))``
    backpropagates from the score down to that layer and no further.
    """

    taps: dict[str, _Tap] = field(default_factory=dict)

    def tensor(self, name: str) -> torch.Tensor:
        tap = self.taps[name]
        if tap.calls == 0:
            raise RuntimeError(
                f"layer {name!r} did not run in the forward pass, so it has no output to use. "
                "Pick a layer whose calls > 0 in cv.layers(module, x)."
            )
        if tap.ref.call is not None and tap.calls <= tap.ref.call:
            raise RuntimeError(
                f"layer {tap.ref.name!r} ran {tap.calls} time(s); call @{tap.ref.call} does not exist."
            )
        if not isinstance(tap.output, torch.Tensor):
            raise TypeError(
                f"layer {name!r} returns {type(tap.output).__name__}, not a tensor; pick one of its "
                "submodules instead."
            )
        return tap.output

    def calls(self, name: str) -> int:
        return self.taps[name].calls


@contextmanager
def capture(
    module: nn.Module, layers: Sequence[str], *, differentiable: bool = False
) -> Iterator[Capture]:
    """Record the outputs of ``layers`` during forward passes run inside the block.

    Each hook hands the rest of the network a copy of the output, so in-place operations that
    follow (``ReLU(inplace=True)``) never alter what was recorded. A module that runs several
    times records its last call unless the name says ``@k``.

    ``differentiable=True`` is meant for a forward pass run under ``torch.no_grad()``: the part
    of the network before the first captured layer builds no autograd graph, and from the
    captured output on the graph is recorded. Grad mode is restored when the block exits.
    """
    if differentiable and len(layers) != 1:
        # Each captured output is detached to start the graph there, which would cut the
        # gradient path to any earlier captured layer.
        raise ValueError("differentiable capture takes exactly one layer.")
    result = Capture()
    handles: list[RemovableHandle] = []
    grad_mode = torch.is_grad_enabled()
    clock = [0]  # shared by all taps: orders the completions of the hooked modules
    try:
        for text in layers:
            ref = LayerRef.parse(text)
            tap = _Tap(ref, enable_grad=differentiable, clock=clock)
            result.taps[text] = tap
            handles.append(resolve_module(module, ref.name).register_forward_hook(_hook_for(tap)))
        yield result
    finally:
        for handle in handles:
            handle.remove()
        torch.set_grad_enabled(grad_mode)


def _hook_for(tap: _Tap) -> Callable[[nn.Module, object, object], object]:
    def hook(_module: nn.Module, _inputs: object, output: object) -> object:
        index = tap.calls
        tap.calls += 1
        tap.finished = tap.clock[0]
        tap.clock[0] += 1
        if tap.ref.call is not None and index != tap.ref.call:
            return None
        if not isinstance(output, torch.Tensor):
            tap.output = output
            return None
        if tap.enable_grad:
            torch.set_grad_enabled(True)
            recorded = output.detach().requires_grad_(True)
        else:
            recorded = output
        tap.output = recorded
        return recorded.clone()

    return hook
