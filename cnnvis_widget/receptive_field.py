"""Theoretical receptive fields: which input pixels a unit at map position (y, x) of a layer
can see, so the unit atlas can show each top example as a crop around its maximum.

The field of every map position is a box of the input: along each axis, position ``i`` of a
map sees input pixels ``[start + i * jump, start + i * jump + size)`` (``jump``: input
pixels between neighbouring positions; ``start`` may be negative where padding reaches past
the border). :func:`receptive_field` computes ``(jump, size, start)`` per axis from the traced
graph ("geometry", exact) and falls back to the support of an input gradient ("gradient")
where the graph cannot be traced or holds an op that moves positions in a way it does not
know. docs/receptive_field.md lists the rules per op.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from .capture import LayerRef, capture, layer_node, resolve_layer
from .checks import check_input, check_module
from .fx_trace import trace
from .methods.fixations.ops import (
    ADD_FUNCTIONS,
    CAT_FUNCTIONS,
    ELEMENTWISE_METHODS,
    MUL_FUNCTIONS,
    PASSTHROUGH_FUNCTIONS,
    SCALAR_FUNCTIONS,
    bind,
    is_passthrough,
    is_reshape,
)
from .model_io import to_model_input
from .model_view import engine_call, eval_view

GRADIENT_PROBES = 4
"""Random inputs (one batch) whose input-gradient supports are united by the fallback."""


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of every position of one layer's output map, in input pixels.

    Along each axis (y, then x), map position ``i`` sees input pixels
    ``[start + i * jump, start + i * jump + size)``; :meth:`box` gives that box, clipped to
    ``extent`` (the input). The box is a bounding box: a dilation, or a stride larger than
    the kernel, leaves pixels inside it that the unit does not see. ``method`` is
    ``"geometry"`` (exact, from the strides, kernels, dilations and paddings of the traced
    graph; ``jump`` and ``size`` are ints) or ``"gradient"`` (the fallback, see
    :func:`receptive_field`: ``jump`` is the input / map size ratio, a float, and ``reason``
    says why the geometry was not used).
    """

    layer: str
    input_size: tuple[int, int]
    """(H, W) of the model input it was computed for, pixels."""
    map_size: tuple[int, int]
    """(h, w) of the layer's output map, positions."""
    jump: tuple[int | float, int | float]
    """Input pixels between neighbouring map positions (y, x)."""
    size: tuple[int, int]
    """Extent of one position's field (y, x), input pixels, before clipping."""
    start: tuple[float, float]
    """Input pixel coordinate (y, x) of the first pixel of position (0, 0)'s field; negative
    where padding reaches past the top / left border."""
    extent: tuple[int, int, int, int]
    """``(top, left, bottom, right)``: the input pixels that some map position sees, which
    :meth:`box` clips to: the image, less rows / columns that no position reads (those a
    strided window drops at the bottom / right border)."""
    method: str
    """``"geometry"`` or ``"gradient"``."""
    reason: str = ""
    """Why the gradient fallback was used; empty for ``"geometry"``."""

    def box(self, y: int, x: int, clip: bool = True) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` in input pixels (bottom / right exclusive) of the
        field of map position (``y``, ``x``), clipped to ``extent`` unless ``clip=False``
        (then it may reach past the image: padding). A position that sees only padding has an
        empty clipped box (``top == bottom`` or ``left == right``)."""
        edges = []
        for axis, position in enumerate((y, x)):
            if not 0 <= position < self.map_size[axis]:
                raise ValueError(
                    f"map position ({y}, {x}) is outside the {self.map_size[0]} x "
                    f"{self.map_size[1]} map of layer {self.layer!r}; pass 0 <= y < "
                    f"{self.map_size[0]} and 0 <= x < {self.map_size[1]}."
                )
            first = math.floor(self.start[axis] + position * self.jump[axis] + 0.5)
            last = first + self.size[axis]
            if clip:
                low, high = self.extent[axis], self.extent[axis + 2]
                first, last = min(max(first, low), high), min(max(last, low), high)
            edges.append((first, last))
        (top, bottom), (left, right) = edges
        return top, left, bottom, right


@engine_call
def receptive_field(model: nn.Module, layer: str, x: torch.Tensor) -> ReceptiveField:
    """The receptive field of ``layer``'s output map for inputs shaped like ``x``
    (``(1, C, H, W)``; only its shape, dtype and device matter, and only the first image).

    ``layer`` is a name as in ``named_modules()`` (``"name@k"``: call ``k``) whose output is
    a map ``(N, C, h, w)``. The model is never changed: everything runs on an
    :func:`~cnnvis_widget.model_view.eval_view`.

    The geometry is propagated over the ``torch.fx`` graph from the input (rules in
    docs/receptive_field.md). Inputs of an op that are not maps are left out: a
    squeeze-excitation gate ``(N, C, 1, 1)`` multiplied onto a map weighs channels and does
    not widen the field. Where that is not possible (untraceable forward, upsampling or
    another op that changes the map size or moves positions and is not known) the field is
    the bounding box of the support of the input gradient of the layer's output at the
    central map position (summed over channels), on random inputs (``method="gradient"``).
    That fallback can underestimate the field: a ReLU that is dead on the random inputs or
    a max-pool that picks one pixel of its window passes no gradient from part of it, and a
    field clipped by the border at the centre is taken as its full size elsewhere.
    """
    check_module(model)
    check_input(x, model)
    x = x[:1].detach()
    view = eval_view(model)
    resolve_layer(view, layer)
    with torch.no_grad(), capture(view, [layer]) as recorded:
        view(to_model_input(x, view))
    try:
        output = recorded.tensor(layer)
    except (RuntimeError, TypeError) as error:
        raise ValueError(str(error)) from error
    if output.ndim != 4:
        raise ValueError(
            f"layer {layer!r} outputs shape {tuple(output.shape)}, not a map (N, C, h, w), so "
            "its units have no receptive field on the image. Pick a convolution, pooling or "
            "block layer before the flatten / classifier (cv.layers(module, x) lists each "
            "layer's output shape)."
        )
    input_size = (int(x.shape[2]), int(x.shape[3]))
    map_size = (int(output.shape[2]), int(output.shape[3]))
    try:
        field = _geometry(eval_view(model), LayerRef.parse(layer), x, tuple(output.shape))
        reason = "" if isinstance(field, tuple) else field
    except Exception as error:  # the shape pass failed, or an op's arguments are unusual
        field, reason = None, f"the geometry failed ({type(error).__name__}: {error})"
    if isinstance(field, tuple):
        y, x_ = field
        return ReceptiveField(
            layer,
            input_size,
            map_size,
            (y.jump, x_.jump),
            (y.size, x_.size),
            (float(y.start), float(x_.start)),
            (y.low, x_.low, y.high, x_.high),
            "geometry",
        )
    return _gradient_field(model, layer, x, map_size, recorded.calls(layer), reason)


# ----------------------------------------------------------------------------- geometry


class _Axis(NamedTuple):
    """One axis of a node's field: position ``i`` sees input pixels
    ``[start + i * jump, start + i * jump + size)`` within ``[low, high)``, the pixels some
    real (not padded) position sees."""

    jump: int
    size: int
    start: int
    low: int
    high: int


_Field = tuple[_Axis, _Axis]
"""(y, x) geometry of a node whose output's last two dims are a map over the input."""
_FLAT = "flat"
"""A node that depends on the input but is not a map: a vector, or a 1 x 1 map reached
without a known field (e.g. a squeeze-excitation gate after ``x.mean((2, 3))``)."""
_UNKNOWN = "unknown"
"""A map whose positions the rules cannot follow (upsampling, a transpose, ...)."""
_State = _Field | str | None
"""Per node: a field, ``_FLAT``, ``_UNKNOWN``, or ``None`` (does not depend on the input)."""

_CONV_FUNCTIONS = {F.conv2d}
_POOL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d}
_ADAPTIVE_FUNCTIONS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_PAD_MODULES = (
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.ZeroPad2d,
)
_NARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}


def _geometry(
    view: nn.Module, ref: LayerRef, x: torch.Tensor, shape: tuple[int, ...]
) -> _Field | str:
    """The field of ``ref``'s output node, or the reason why there is none."""
    try:
        graph_module = trace(view)
    except Exception as error:  # data-dependent control flow in forward, ...
        return f"torch.fx could not trace the model ({type(error).__name__}: {error})"
    target = layer_node(graph_module.graph, ref)
    if target is None:
        return f"layer {str(ref)!r} was not found in the traced graph"
    with torch.no_grad():
        ShapeProp(graph_module).propagate(to_model_input(x, view))
    meta = target.meta.get("tensor_meta")
    if not isinstance(meta, TensorMetadata) or tuple(meta.shape) != shape:
        return f"the traced graph's node for {str(ref)!r} does not give the layer's output"
    modules = dict(graph_module.named_modules())
    states: dict[fx.Node, _State] = {}
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            first = not any(n.op == "placeholder" for n in states)
            height, width = x.shape[-2:]
            states[node] = (_Axis(1, 1, 0, 0, height), _Axis(1, 1, 0, 0, width)) if first else None
        elif node.op in ("call_module", "call_function", "call_method"):
            states[node] = _state(node, states, modules)
        if node is target:
            break
    state = states.get(target)
    if isinstance(state, tuple):
        return state
    return f"the path to {str(ref)!r} holds an op that moves map positions in an unknown way"


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def _state(node: fx.Node, states: dict[fx.Node, _State], modules: dict[str, nn.Module]) -> _State:
    """The state of ``node`` from its inputs' (see ``_State``)."""
    inputs = [n for n in node.all_input_nodes if states.get(n) is not None]
    if not inputs:
        return None
    if any(states[n] == _UNKNOWN for n in inputs):
        return _UNKNOWN
    field = _rule(node, states, modules)
    if field is not None:
        return field
    shape = _shape(node)
    is_map = shape is not None and len(shape) >= 3 and shape[-2:] != (1, 1)
    return _UNKNOWN if is_map else _FLAT


def _rule(
    node: fx.Node, states: dict[fx.Node, _State], modules: dict[str, nn.Module]
) -> _Field | None:
    """The field of ``node`` by the rule of its op, or ``None`` (unknown op, or an input
    the rule cannot use)."""
    source = node.args[0] if node.args else None
    field = states.get(source) if isinstance(source, fx.Node) else None
    if not isinstance(field, tuple):
        field = None
    args, kwargs, target = node.args, node.kwargs, node.target
    out = (_shape(node) or (0, 0))[-2:]
    if node.op == "call_module":
        module = modules[str(target)]
        if isinstance(module, nn.Conv2d) and field:
            padding = _conv_padding(module.padding, module.kernel_size, module.dilation)
            return _window(field, out, module.kernel_size, module.stride, padding, module.dilation)
        if isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and field:
            dilation = getattr(module, "dilation", 1)
            stride = module.stride or module.kernel_size
            return _window(field, out, module.kernel_size, stride, module.padding, dilation)
        if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d) and field:
            return _adaptive(field, _shape(source), _shape(node))
        if isinstance(module, _PAD_MODULES) and field:
            return _pad(field, module.padding)
    elif target in _CONV_FUNCTIONS and field:
        p = bind(args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation"), {})
        kernel = (_shape(p["weight"]) or (1, 1))[-2:]
        dilation = p["dilation"] or 1
        padding = _conv_padding(p["padding"] or 0, kernel, dilation)
        return _window(field, out, kernel, p["stride"] or 1, padding, dilation)
    elif target in _POOL_FUNCTIONS and field:
        names = ("input", "kernel_size", "stride", "padding", "dilation")  # avg: no dilation
        p = bind(args, kwargs, names[:5] if target is F.max_pool2d else names[:4], {})
        stride = p["stride"] or p["kernel_size"]
        return _window(
            field, out, p["kernel_size"], stride, p["padding"] or 0, p.get("dilation") or 1
        )
    elif target in _ADAPTIVE_FUNCTIONS and field:
        return _adaptive(field, _shape(source), _shape(node))
    elif target is F.pad and field:
        return _pad(field, bind(args, kwargs, ("input", "pad"), {})["pad"])
    if is_reshape(node, modules):
        shape, before = _shape(node), _shape(source)
        keeps_map = shape and before and len(shape) >= 3 and shape[-2:] == before[-2:]
        return field if keeps_map else None
    if (
        is_passthrough(node, modules, PASSTHROUGH_FUNCTIONS)
        or target in ADD_FUNCTIONS | MUL_FUNCTIONS | SCALAR_FUNCTIONS | CAT_FUNCTIONS
        or (node.op == "call_method" and target in _NARY_METHODS | ELEMENTWISE_METHODS)
    ):
        return _union(node, states)
    return None


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _conv_padding(padding: Any, kernel: Any, dilation: Any) -> tuple[int, int]:
    """Top / left padding of a convolution; ``"same"`` pads ``total // 2`` before."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        k, d = _pair(kernel), _pair(dilation)
        return d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2
    return _pair(padding)


def _window(
    field: _Field, out: Sequence[int], kernel: Any, stride: Any, padding: Any, dilation: Any
) -> _Field:
    """A sliding window (conv, pool) giving an ``out`` (h, w) map: ``kernel`` taps
    ``dilation`` apart, every ``stride`` positions, starting ``padding`` positions before the
    first. What the ``out`` positions see together narrows ``low`` / ``high``."""
    axes = []
    for axis, m, k, s, p, d in zip(
        field, out, _pair(kernel), _pair(stride), _pair(padding), _pair(dilation), strict=True
    ):
        jump, size = axis.jump * s, axis.size + d * (k - 1) * axis.jump
        start = axis.start - p * axis.jump
        low, high = max(axis.low, start), min(axis.high, start + (m - 1) * jump + size)
        axes.append(_Axis(jump, size, start, low, high))
    return axes[0], axes[1]


def _adaptive(field: _Field, before: Any, after: Any) -> _Field | None:
    """An adaptive pool: a window ``n // m`` wide every ``n // m`` when the output size ``m``
    divides the input size ``n`` (global pooling: the whole map); otherwise its windows differ
    in size and there is no single geometry."""
    if not before or not after:
        return None
    n, m = before[-2:], after[-2:]
    if n[0] % m[0] or n[1] % m[1]:
        return None
    kernel = (n[0] // m[0], n[1] // m[1])
    return _window(field, m, kernel, kernel, 0, 1)


def _pad(field: _Field, pad: Sequence[int]) -> _Field:
    """Padding ``(left, right[, top, bottom])``: only the top / left amount moves the map."""
    top = int(pad[2]) if len(pad) >= 4 else 0
    left = int(pad[0])
    y, x = field
    return y._replace(start=y.start - top * y.jump), x._replace(start=x.start - left * x.jump)


def _union(node: fx.Node, states: dict[fx.Node, _State]) -> _Field | None:
    """A shape-preserving or n-ary op (activation, norm, add, mul, cat, ...): the union of the
    fields of its map inputs. An input whose map is 1 x 1 while the output's is not (a
    squeeze-excitation gate broadcast over the map) is a channel weight, not a spatial
    field: it is left out. ``None`` when an input's map differs from the output's, the
    inputs' jumps differ, or no input has a field."""
    shape = _shape(node)
    if shape is None or len(shape) < 3:
        return None
    fields: list[_Field] = []
    for source in node.all_input_nodes:
        state, before = states.get(source), _shape(source)
        if state is None or before is None:
            continue  # a constant, or a number (x.size(0)) computed from the input
        if before[-2:] == shape[-2:] and isinstance(state, tuple):
            fields.append(state)
        elif (1, 1, *before)[-2:] != (1, 1) or shape[-2:] == (1, 1):
            return None  # a map of another size (cat along h / w), or a non-map input
    if not fields:
        return None
    axes = []
    for parts in zip(*fields, strict=True):
        if len({part.jump for part in parts}) > 1:
            return None
        start = min(part.start for part in parts)
        end = max(part.start + part.size for part in parts)
        low, high = min(part.low for part in parts), max(part.high for part in parts)
        axes.append(_Axis(parts[0].jump, end - start, start, low, high))
    return axes[0], axes[1]


# ----------------------------------------------------------------------------- gradient


def _gradient_field(
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    map_size: tuple[int, int],
    calls: int,
    reason: str,
) -> ReceptiveField:
    """The fallback: the bounding box of the input pixels whose gradient of the layer's
    output at the central map position (summed over channels) is nonzero for any of
    ``GRADIENT_PROBES`` random inputs; the whole input if none is."""
    view = eval_view(model)
    height, width = int(x.shape[2]), int(x.shape[3])
    cy, cx = map_size[0] // 2, map_size[1] // 2
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn((GRADIENT_PROBES, *x.shape[1:]), generator=generator)
    probe = to_model_input(probe, view).requires_grad_(True)
    with torch.enable_grad(), capture(view, [layer], calls={layer: calls}, stop_early=True) as rec:
        view(probe)
    output = rec.tensor(layer)
    (grad,) = torch.autograd.grad(output[:, :, cy, cx].sum(), probe, allow_unused=True)
    support = torch.zeros(height, width, dtype=torch.bool)
    if grad is not None:
        support = (grad.detach().abs().sum((0, 1)) != 0).cpu()
    if support.any():
        rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
        top, bottom = int(rows.min()), int(rows.max()) + 1
        left, right = int(cols.min()), int(cols.max()) + 1
    else:
        top, left, bottom, right = 0, 0, height, width
        reason += "; no input gradient reached the layer, so the whole input is used"
    jump = (height / map_size[0], width / map_size[1])
    return ReceptiveField(
        layer,
        (height, width),
        map_size,
        jump,
        (bottom - top, right - left),
        (top - cy * jump[0], left - cx * jump[1]),
        (0, 0, height, width),
        "gradient",
        reason,
    )
