"""``attribute``: the one entry point to every registered method."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import model_guard, resolve_module
from ..layers import check_input, default_cam_layer, layers
from ..models import to_model_input
from .context import AttributionRequest, StepCallback
from .registry import METHODS, Param

Target = int | Sequence[int] | torch.Tensor | None
Precision = Literal["float32", "bfloat16"]


def attribute(
    module: nn.Module,
    x: torch.Tensor,
    method: str,
    target: Target = None,
    layer: str | None = None,
    *,
    on_step: StepCallback | None = None,
    fast: bool = True,
    precision: Precision = "float32",
    **params: Any,
) -> torch.Tensor:
    """Explain ``module``'s decision on ``x`` with a registered method.

    ``x`` is the model input ``(N, C, H, W)``; it is moved to the model's device and the result
    stays there. ``target`` is a class index, one index per sample, or ``None`` for the
    predicted class. ``layer`` (layer methods only) is a dotted name from ``named_modules()``;
    by default the last spatial layer. Pixel methods return a signed tensor shaped like ``x``;
    layer methods ``(N, 1, h, w)`` at the layer's resolution, non-negative. The model is left
    exactly as found (mode, hooks, gradients, parameters).

    Long methods (smoothgrad, integrated_gradients, occlusion, scorecam) call
    ``on_step(partial_map, fraction_done)`` after every batch; returning ``False`` from it
    stops the method and raises :class:`cnnvis_widget.methods.Cancelled`.

    ``fast=True`` (default) runs whole-network passes on a cached stand-in of the model with
    batch norm folded into the convolutions, frozen parameters and channels-last activations
    (see :mod:`cnnvis_widget.methods.fast_model`): the same function up to float32 rounding,
    1.3-2x faster. ``fast=False`` runs the model op for op, as Captum does.

    ``precision="bfloat16"`` runs the network under ``torch.autocast`` in bfloat16 (float32
    models and inputs only; maps are returned in ``x``'s dtype, CAM maps computed from
    bfloat16 activations and gradients): on ResNet-50 here the batched methods (SmoothGrad,
    IG) run about 1.9x faster, single passes about 1.2x; slower for depthwise convolutions. It
    costs accuracy: on EfficientNet-Lite0 single input gradients (saliency, IG) correlate only
    0.82-0.88 with float32's, SmoothGrad's average 0.94-0.95, CAM and occlusion maps more
    (tests/test_precision.py). For exploring; not for comparing with float32 references.
    """
    descriptor = _method(method)
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16'; got {precision!r}.")
    check_input(x)
    x = to_model_input(x, module)
    if precision == "bfloat16" and x.dtype != torch.float32:
        raise ValueError(
            f"precision='bfloat16' runs float32 models under autocast; the model runs in {x.dtype}. "
            "Use a float32 model and input, or precision='float32'."
        )
    targets = _targets(target, x.shape[0], x.device)
    options = check_params(method, params)
    with model_guard(module):
        if descriptor.uses_layer:
            if layer is None:
                layer = default_cam_layer(layers(module, x[:1]))
            resolve_module(module, layer.rpartition("@")[0] if "@" in layer else layer)
        elif layer is not None:
            raise TypeError(f"{method} works on the input pixels and takes no layer.")
        listener = on_step
        if on_step is not None:  # partial maps reach the listener in x's dtype (bfloat16 too)

            def listener(partial: torch.Tensor, done: float) -> bool | None:
                return on_step(partial.to(x.dtype), done)

        request = AttributionRequest(module, x, targets, layer, listener, fast)
        arithmetic = (
            torch.autocast(x.device.type, dtype=torch.bfloat16)
            if precision == "bfloat16"
            else contextlib.nullcontext()  # float32: a caller's own autocast is left alone
        )
        with arithmetic:
            return descriptor(request, **options).to(x.dtype)


def check_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against ``method``'s descriptor (names, types, ranges, choices) and
    completed with its defaults; raises ``ValueError`` / ``TypeError`` naming the fix."""
    descriptor = _method(method)
    unknown = set(params) - {param.name for param in descriptor.params}
    if unknown:
        raise TypeError(
            f"{method} does not take {sorted(unknown)}; its parameters are "
            f"{[param.name for param in descriptor.params] or 'none'}."
        )
    for param in descriptor.params:
        if param.name in params:
            _check_param(method, param, params[param.name])
    return {**descriptor.defaults(), **params}


def upsample(attribution: torch.Tensor, size: tuple[int, int] | int) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of ``(N, C, h, w)`` maps to ``size``."""
    if attribution.ndim != 4:
        raise ValueError(f"expected maps (N, C, h, w); got {tuple(attribution.shape)}.")
    return F.interpolate(attribution, size=size, mode="bilinear", align_corners=False)


def _method(name: str) -> Any:
    if name in METHODS:
        return METHODS[name]
    close = difflib.get_close_matches(name, list(METHODS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown method {name!r}.{hint} Available: {', '.join(METHODS)}.")


def _targets(target: Target, batch: int, device: torch.device) -> torch.Tensor | None:
    if target is None:
        return None
    if isinstance(target, bool) or not _integral(target):
        raise ValueError(f"target must be class indices (int); got {target!r}.")
    if isinstance(target, int):
        values = torch.full((batch,), target, dtype=torch.long)
    else:
        values = torch.as_tensor(target).flatten().long()
        if values.numel() == 1:
            values = values.expand(batch)
        if values.numel() != batch:
            raise ValueError(
                f"got {values.numel()} targets for a batch of {batch}; give one per sample or one for all."
            )
    if int(values.min()) < 0:
        raise ValueError(f"target {int(values.min())} is negative; class indices start at 0.")
    return values.to(device)


def _integral(target: Target) -> bool:
    if isinstance(target, int):
        return True
    values = torch.as_tensor(target)
    if values.is_floating_point():
        return bool(torch.all(values == values.round()))
    return not values.is_complex() and values.dtype != torch.bool


def _check_param(method: str, param: Param, value: Any) -> None:
    """Type, range and choice of one parameter, with a message that names the fix."""
    where = f"{method}: {param.name}"
    if param.kind == "choice":
        if value not in param.choices:
            raise ValueError(f"{where} must be one of {list(param.choices)}; got {value!r}.")
        return
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be True or False; got {value!r}.")
        return
    if isinstance(value, torch.Tensor) and param.kind == "float":
        return  # e.g. a baseline image; its shape is the method's to check
    number_types = (int,) if param.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_types):
        raise TypeError(
            f"{where} must be {'an int' if param.kind == 'int' else 'a number'}; got {value!r}."
        )
    if (param.low is not None and value < param.low) or (
        param.high is not None and value > param.high
    ):
        raise ValueError(f"{where} must lie in [{param.low}, {param.high}]; got {value!r}.")
