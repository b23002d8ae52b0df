"""``attribute``: the one entry point to every registered method."""

from __future__ import annotations

import contextlib
import difflib
import numbers
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..capture import resolve_layer
from ..checks import (
    check_callback,
    check_flag,
    check_int,
    check_module,
    check_param,
    check_tensor_param,
)
from ..layers import check_input, default_cam_layer, layers
from ..model_view import engine_call, eval_view
from ..models import size_errors_explained, to_model_input
from .context import AttributionRequest, StepCallback
from .registry import METHODS

Target = int | Sequence[int] | torch.Tensor | None
Precision = Literal["float32", "bfloat16"]


@engine_call
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
    stays there. A float16 / bfloat16 model computes in its own dtype; its maps come back
    as float32. ``target`` is a class index, one index per sample, or ``None`` for the
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
    check_module(module)
    check_input(x, module)
    check_flag("fast", fast)
    check_callback("on_step", on_step)
    if layer is not None and not isinstance(layer, str):
        raise TypeError(
            f"layer must be a layer name (str) as in named_modules(); got {layer!r}. "
            "List them with cv.layers(module, x)."
        )
    if layer is not None and not descriptor.uses_layer:
        raise TypeError(
            f"{method} works on the input pixels and takes no layer; drop layer=, or pick a "
            "layer method such as gradcam."
        )
    x = to_model_input(x, module)
    if precision == "bfloat16" and x.dtype != torch.float32:
        raise ValueError(
            f"precision='bfloat16' runs float32 models under autocast; the model runs in {x.dtype}. "
            "Use a float32 model and input, or precision='float32'."
        )
    targets = resolve_targets(target, x.shape[0], x.device)
    options = check_params(method, params)
    for name, value in options.items():
        if isinstance(value, torch.Tensor):
            check_tensor_param(f"{method}: {name}", value, x.shape)
    view = eval_view(module)
    if descriptor.uses_layer:
        if layer is None:
            layer = default_cam_layer(layers(view, x[:1]), view, x[:1])
        resolve_layer(view, layer)
    listener = on_step
    # Maps come back in x's dtype, float32 for a float16 / bfloat16 model (computed in its
    # dtype; float32 holds them exactly, and float16's range would cut small products).
    map_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    if on_step is not None:  # partial maps reach the listener in the same dtype

        def listener(partial: torch.Tensor, done: float) -> bool | None:
            return on_step(partial.to(map_dtype), done)

    request = AttributionRequest(view, x, targets, layer, listener, fast, origin=module)
    arithmetic = (
        torch.autocast(x.device.type, dtype=torch.bfloat16)
        if precision == "bfloat16"
        else contextlib.nullcontext()  # float32: a caller's own autocast is left alone
    )
    with arithmetic, size_errors_explained(module, x):
        return descriptor(request, **options).to(map_dtype)


def check_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against ``method``'s descriptor (names, types, ranges, choices) and
    completed with its defaults; raises ``ValueError`` / ``TypeError`` naming the fix."""
    descriptor = _method(method)
    unknown = set(params) - {param.name for param in descriptor.params}
    if unknown:
        raise TypeError(
            f"{method} does not take {sorted(unknown)}: remove "
            f"{'it' if len(unknown) == 1 else 'them'}; its parameters are "
            f"{[param.name for param in descriptor.params] or 'none'}."
        )
    for param in descriptor.params:
        if param.name in params:
            check_param(method, param, params[param.name])
    return {**descriptor.defaults(), **params}


def upsample(attribution: torch.Tensor, size: tuple[int, int] | int) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of ``(N, C, h, w)`` maps to ``size``."""
    if attribution.ndim != 4:
        hint = " Add a batch dimension: maps.unsqueeze(0)." if attribution.ndim == 3 else ""
        raise ValueError(f"expected maps (N, C, h, w); got {tuple(attribution.shape)}.{hint}")
    for side in (size, size) if isinstance(size, int) else tuple(size):
        check_int("size (pixels per side)", side, low=1)
    return F.interpolate(attribution, size=size, mode="bilinear", align_corners=False)


def _method(name: str) -> Any:
    if not isinstance(name, str):
        raise TypeError(
            f"method must be a method name (str); got {name!r}. Available: {', '.join(METHODS)}."
        )
    if name in METHODS:
        return METHODS[name]
    close = difflib.get_close_matches(name, list(METHODS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown method {name!r}.{hint} Available: {', '.join(METHODS)}.")


def resolve_targets(target: Target, batch: int, device: torch.device) -> torch.Tensor | None:
    """``target`` as class indices (batch,) of dtype long on ``device``: one int for every
    sample, one index per sample, or a single index broadcast; ``None`` stays ``None`` (the
    predicted class). Raises ``TypeError`` / ``ValueError`` naming the fix for anything else
    (strings, fractions, negative indices, a count that does not match ``batch``)."""
    if target is None:
        return None
    _check_target_type(target)
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


def _check_target_type(target: object) -> None:
    """A TypeError naming the fix for targets that are no numbers at all (a string, a dict)."""
    items = (
        list(target)
        if isinstance(target, Sequence) and not isinstance(target, (str, bytes))
        else [target]
    )
    kinds = (numbers.Number, torch.Tensor, np.ndarray, Sequence)
    if all(isinstance(t, kinds) and not isinstance(t, (str, bytes)) for t in items):
        return
    hint = (
        f" Pass target={int(target)} (an int)."
        if isinstance(target, str) and target.strip().isdigit()
        else " Find a class index by name with bundle.labels.index(name)."
    )
    raise TypeError(
        f"target must be a class index (int), one per sample, or None; got {target!r}.{hint}"
    )


def _integral(target: Target) -> bool:
    if isinstance(target, int):
        return True
    values = torch.as_tensor(target)
    if values.is_floating_point():
        return bool(torch.all(values == values.round()))
    return not values.is_complex() and values.dtype != torch.bool
