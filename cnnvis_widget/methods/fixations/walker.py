"""CNN Fixations (Mopuri, Garg & Babu, arXiv 1708.06670 / TIP 2019): gradient-free evidence.

The forward pass is recorded once (``torch.no_grad``) on a ``torch.fx`` graph of the model, then
unravelled backwards from the target logit with a set of "discriminative points" per graph
node, using only the stored activations and the weights. No autograd, no hooks, and the
user's module is traced, never modified.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx import GraphModule, Node

from ..fx_trace import trace
from ..layers import check_input
from ..model_view import eval_view
from ..models import to_model_input
from .api import Target, _targets
from .context import AttributionRequest
from .registry import Param, register

Points = torch.Tensor  # (P, 1 + D) long: sample index, then the index inside that sample

#: Extra functions (for instance your own ``torch.fx.wrap``-ed element-wise helpers) that CNN
#: Fixations may pass points straight through, like ReLU. Add to it; names are compared by object.
PASSTHROUGH_FUNCTIONS: set[Callable[..., Any]] = set()

SUPPORTED = (
    "Linear, Conv2d (stride, padding, dilation, groups), max / average / adaptive pooling, "
    "flatten / view / reshape / squeeze / unsqueeze, add (residual), torch.cat, constant padding, "
    "basic indexing, mean / sum over dimensions, gating multiplication, and shape-preserving "
    "layers (ReLU and other activations, BatchNorm and other norms, Dropout, Identity)"
)

_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Threshold,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.dropout._DropoutNd,
    nn.Identity,
)
_ELEMENTWISE_FUNCTIONS: set[Any] = {
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.celu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.softplus,
    F.sigmoid,
    F.tanh,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    F.dropout2d,
    F.alpha_dropout,
    F.batch_norm,
    F.group_norm,
    F.instance_norm,
    F.local_response_norm,
    torch.clone,
    torch.clamp,
    torch.clip,
}
try:  # EfficientNet / ConvNeXt: identity in eval mode
    from torchvision.ops import stochastic_depth

    _ELEMENTWISE_FUNCTIONS.add(stochastic_depth)
except ImportError:  # pragma: no cover - torchvision is a dependency
    pass
_ELEMENTWISE_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "clamp",
    "clamp_",
    "clamp_min",
    "clamp_min_",
    "clip",
    "contiguous",
    "clone",
    "detach",
    "float",
    "double",
    "half",
    "to",
    "type_as",
}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
_SCALAR_FUNCTIONS = {operator.sub, operator.isub, operator.truediv, operator.itruediv, torch.sub}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}
_REDUCE_METHODS = {"mean", "sum", "amax"}

_CHUNK = 1 << 22  # elements per vectorized step (bounds memory on big layers)


# --------------------------------------------------------------------------- public API


@register(
    name="cnn_fixations",
    title="CNN Fixations",
    family="fixations",
    output="pixel",
    signed=False,
    uses_layer=False,
    cost="1F, no backward",
    params=(
        Param(
            "conv_position",
            "argmax",
            "choice",
            "where a point moves inside a conv window: 'argmax' = largest contribution of the "
            "chosen channel (PyTorch port), 'anchor' = window centre (official code)",
            choices=("argmax", "anchor"),
        ),
        Param(
            "sigma",
            20.0,
            "float",
            "std of the Gaussian blur in pixels (paper: 20 at 224 px); clamped to a sixth of "
            "the blur kernel (the shorter image side) on small inputs; 0 = no blur",
            0.0,
            200.0,
        ),
    ),
)
def cnn_fixations(request: AttributionRequest, conv_position: str, sigma: float) -> torch.Tensor:
    """Mopuri, Garg & Babu 2017/2019: unravel the forward pass from the target logit down to
    "fixation" pixels using only the stored activations and weights (no gradients, one
    forward pass). Linear <- linear keeps every input with a_i W_ji > 0 (the argmax if none
    is positive); linear <- flattened feature map keeps the single argmax; global / average
    pooling keeps the position of the largest input; conv picks the input channel with the largest summed
    contribution over its window (position: ``conv_position``); max-pool follows its switch;
    additions follow the operand with the larger value at the point (the skip on ties);
    concatenations route by channel offset. Heatmap as in the reference: fixations with no
    more than 5% of all fixations within 0.1 x the image diagonal are dropped as outliers,
    unit impulses are blurred with a Gaussian (``sigma`` px, kernel = the shorter image side)
    and each map is scaled to max 1. Same value in every colour channel. Unlike the
    reference, a single input is used (no five-crop averaging)."""
    x = request.x
    points = _fixations(request.module, x, request.targets, conv_position)
    n, channels, height, width = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    maps = torch.stack([fixation_map(p, height, width, sigma=sigma, dtype=work) for p in points])
    return maps.to(x.dtype).unsqueeze(1).expand(n, channels, height, width).contiguous()


def fixation_points(
    module: nn.Module, x: torch.Tensor, target: Target = None, conv_position: str = "argmax"
) -> list[torch.Tensor]:
    """The fixations of each sample: a list of ``(P, 2)`` long tensors of distinct ``(y, x)``
    input-pixel coordinates (before outlier removal), on the model's device. ``target`` is a
    class index, one per sample, or ``None`` for the predicted class. The model is left as
    found (eval mode only for the call)."""
    check_input(x)
    x = to_model_input(x, module)
    targets = _targets(target, x.shape[0], x.device)
    return _fixations(eval_view(module), x, targets, conv_position)


def remove_outliers(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The reference's outlier rule: keep a fixation only if more than 5% of all fixations
    (itself included) lie closer than 0.1 x the image diagonal. Where that would drop every
    fixation (a few dozen spread over the image, as ``conv_position="anchor"`` gives on
    EfficientNet-Lite0), all are kept: an empty map would explain nothing."""
    if points.shape[0] == 0:
        return points
    radius = 0.1 * math.hypot(height, width)
    coords = points.to(torch.float64)
    neighbours = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    step = max(1, _CHUNK // max(1, points.shape[0]))
    for start in range(0, points.shape[0], step):
        distance = torch.cdist(coords[start : start + step], coords)
        neighbours[start : start + step] = (distance < radius).sum(1)
    kept = points[neighbours > 0.05 * points.shape[0]]
    return kept if kept.shape[0] else points


def fixation_map(
    points: torch.Tensor,
    height: int,
    width: int,
    sigma: float = 20.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(height, width)`` heatmap of ``(P, 2)`` ``(y, x)`` fixations: outlier removal, unit
    impulses, Gaussian blur (kernel side = the shorter image side made odd, reflected borders
    as in OpenCV, ``sigma`` clamped to a sixth of the kernel side) and scaling to max 1."""
    kept = remove_outliers(points, height, width)
    impulses = torch.zeros(height * width, dtype=dtype, device=points.device)
    if kept.shape[0]:
        flat = kept[:, 0] * width + kept[:, 1]
        impulses.index_add_(0, flat, torch.ones(flat.shape[0], dtype=dtype, device=points.device))
    heat = _gaussian_blur(impulses.view(height, width), sigma)
    peak = heat.max()
    return heat / peak if peak > 0 else heat


def trace_fixations(
    module: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    conv_position: str = "argmax",
) -> dict[str, torch.Tensor]:
    """The discriminative points at every graph node the unravelling reached, keyed by the
    ``torch.fx`` node name: ``(P, 1 + D)`` long tensors whose first column is the sample and
    the rest the index inside that sample's activation (for a feature map: channel, y, x).
    Works for any input rank (e.g. fully connected nets); for inspection and tests."""
    x = to_model_input(x, module)
    targets = _targets(target, x.shape[0], x.device)
    run = _Unravel(eval_view(module), x, targets, conv_position)
    return {node.name: points for node, points in run.points.items()}


# --------------------------------------------------------------------------- the walk


def _fixations(
    module: nn.Module, x: torch.Tensor, targets: torch.Tensor | None, conv_position: str
) -> list[torch.Tensor]:
    run = _Unravel(module, x, targets, conv_position)
    found = run.points.get(run.input_node, x.new_zeros((0, 4), dtype=torch.long))
    size = tuple(x.shape[2:])
    return [_dedupe(found[found[:, 0] == b][:, 2:4], size) for b in range(x.shape[0])]


class _Recorder(torch.fx.Interpreter):
    """Runs the traced graph and keeps a copy of every node's output (copies, so in-place
    operations later in the pass do not change what was recorded)."""

    def __init__(self, graph_module: GraphModule) -> None:
        super().__init__(graph_module)
        self.values: dict[Node, Any] = {}

    def run_node(self, n: Node) -> Any:
        result = super().run_node(n)
        keep = isinstance(result, torch.Tensor) and n.op != "get_attr"
        self.values[n] = result.clone() if keep else result
        return result


class _Unravel:
    """One forward pass recorded on the fx graph, then the backward walk of point sets."""

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        conv_position: str,
    ) -> None:
        if conv_position not in ("argmax", "anchor"):
            raise ValueError(f"conv_position must be 'argmax' or 'anchor'; got {conv_position!r}.")
        self.conv_position = conv_position
        self.model = type(module).__name__
        try:
            self.graph_module = trace(module)
        except Exception as error:
            raise NotImplementedError(
                f"CNN Fixations needs the graph of {self.model}, but torch.fx could not trace "
                f"it ({type(error).__name__}: {error}). Models with data-dependent Python "
                "control flow in forward are not supported."
            ) from error
        self.nodes = list(self.graph_module.graph.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if not placeholders:
            raise NotImplementedError(f"CNN Fixations found no input in the graph of {self.model}.")
        self.input_node = placeholders[0]
        with torch.no_grad():
            recorder = _Recorder(self.graph_module)
            recorder.run(x.detach())
        self.values = recorder.values
        self.dependent = self._input_dependent()
        self.depth = self._conv_depth()
        self.modules = dict(self.graph_module.named_modules())
        self._spatial_memo: dict[Node, bool] = {}
        with torch.no_grad():
            self.points = self._walk(targets)

    # ----------------------------------------------------------------- graph facts

    def _input_dependent(self) -> set[Node]:
        dependent = {self.input_node}
        for node in self.nodes:
            if any(arg in dependent for arg in node.all_input_nodes):
                dependent.add(node)
        return dependent

    def _conv_depth(self) -> dict[Node, int]:
        """Number of conv / linear layers on the longest path from the input: the shallower
        operand of an addition is its skip connection."""
        depth: dict[Node, int] = {}
        for node in self.nodes:
            inner = max((depth.get(arg, 0) for arg in node.all_input_nodes), default=0)
            depth[node] = inner + int(self._is_weighted(node))
        return depth

    def _is_weighted(self, node: Node) -> bool:
        if node.op == "call_module":
            return isinstance(
                self.graph_module.get_submodule(str(node.target)), nn.Conv2d | nn.Linear
            )
        return node.op == "call_function" and node.target in (F.conv2d, F.linear)

    def _logits_node(self) -> Node:
        output = next(n for n in self.nodes if n.op == "output")
        result = output.args[0]
        if isinstance(result, (tuple, list)) and result:
            result = result[0]
        if isinstance(result, dict):
            result = result.get("logits")
        if not isinstance(result, Node) or not isinstance(self.values.get(result), torch.Tensor):
            raise NotImplementedError(
                f"CNN Fixations could not find the logits tensor in the output of {self.model}; "
                "wrap the model so its forward returns the logits (N, classes)."
            )
        return result

    # ----------------------------------------------------------------- walk

    def _walk(self, targets: torch.Tensor | None) -> dict[Node, Points]:
        logits_node = self._logits_node()
        logits = self.values[logits_node]
        if logits.ndim != 2:
            raise ValueError(
                f"the model output has shape {tuple(logits.shape)}; CNN Fixations needs logits "
                "(N, classes)."
            )
        if targets is None:
            targets = logits.argmax(dim=1)
        targets = targets.to(logits.device).long()
        if int(targets.max()) >= logits.shape[1]:
            raise ValueError(
                f"target {int(targets.max())} is out of range: the model has {logits.shape[1]} classes."
            )
        batch = torch.arange(logits.shape[0], device=logits.device)
        pending: dict[Node, list[Points]] = {logits_node: [torch.stack([batch, targets], 1)]}
        found: dict[Node, Points] = {}
        for node in reversed(self.nodes):
            if node not in pending:
                continue
            points = _dedupe(torch.cat(pending.pop(node)), tuple(self.values[node].shape))
            found[node] = points
            if node is self.input_node or points.shape[0] == 0:
                continue
            for source, moved in self._step(node, points):
                if source in self.dependent and moved.shape[0]:
                    pending.setdefault(source, []).append(moved)
        return found

    def _step(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        if node.op == "call_module":
            return self._module_step(node, points)
        if node.op == "call_function":
            return self._function_step(node, points)
        if node.op == "call_method":
            return self._method_step(node, points)
        raise self._unsupported(node)

    def _unsupported(self, node: Node, why: str = "") -> NotImplementedError:
        if node.op == "call_module":
            what = f"{type(self.graph_module.get_submodule(str(node.target))).__name__} module {node.target!r}"
        elif node.op == "call_function":
            what = f"function {getattr(node.target, '__name__', node.target)}"
        elif node.op == "call_method":
            what = f"method .{node.target}()"
        else:
            what = f"{node.op} {node.target}"
        detail = f" ({why})" if why else ""
        return NotImplementedError(
            f"CNN Fixations cannot unravel {what} at node {node.name!r} in {self.model}{detail}; "
            f"supported: {SUPPORTED}."
        )

    def _value(self, arg: Any) -> Any:
        return self.values[arg] if isinstance(arg, Node) else arg

    def _tensor_args(self, node: Node) -> list[Node]:
        return [
            arg
            for arg in node.all_input_nodes
            if arg in self.dependent and isinstance(self.values.get(arg), torch.Tensor)
        ]

    # ----------------------------------------------------------------- dispatch

    def _module_step(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        module = self.graph_module.get_submodule(str(node.target))
        source = node.args[0] if node.args else None
        if not isinstance(source, Node) or len(self._tensor_args(node)) != 1:
            raise self._unsupported(node, "expected one input tensor")
        inp, out = self.values[source], self.values[node]
        if isinstance(module, nn.Linear):
            return [(source, _linear_step(inp, module.weight, points, self._positive_rule(source)))]
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise self._unsupported(node, f"padding_mode={module.padding_mode!r}")
            moved = self._conv(
                node,
                inp,
                module.weight,
                module.stride,
                module.padding,
                module.dilation,
                module.groups,
                points,
            )
            return [(source, moved)]
        if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
            dilation = module.dilation if isinstance(module, nn.MaxPool2d) else 1
            moved = _pool_step(
                inp,
                points,
                module.kernel_size,
                module.stride,
                module.padding,
                dilation,
                central=isinstance(module, nn.AvgPool2d),
            )
            return [(source, moved)]
        if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            central = isinstance(module, nn.AdaptiveAvgPool2d)
            return [(source, _adaptive_pool_step(inp, out, points, central))]
        if isinstance(module, nn.Flatten | nn.Unflatten):
            return [(source, self._reshape(node, inp, out, points))]
        if isinstance(module, nn.ZeroPad2d | nn.ConstantPad2d):
            return [(source, _pad_step(inp, points, module.padding))]
        if isinstance(module, _ELEMENTWISE_MODULES):
            return [(source, self._same_shape(node, inp, out, points))]
        raise self._unsupported(node)

    def _function_step(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        target = node.target
        args, kwargs = node.args, node.kwargs
        if target in _ADD_FUNCTIONS:
            return self._add(node, points)
        if target in _MUL_FUNCTIONS:
            return self._mul(node, points)
        if target in _CAT_FUNCTIONS:
            return self._cat(node, points)
        if target is operator.getitem:
            return self._getitem(node, points)
        sources = self._tensor_args(node)
        if len(sources) != 1 or args[0] is not sources[0]:
            raise self._unsupported(node, "expected one input tensor, passed first")
        source = sources[0]
        inp, out = self.values[source], self.values[node]
        if target is F.conv2d:
            p = _bind(
                args,
                kwargs,
                ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
                {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1},
            )
            weight = self._value(p["weight"])
            return [
                (
                    source,
                    self._conv(
                        node,
                        inp,
                        weight,
                        p["stride"],
                        p["padding"],
                        p["dilation"],
                        p["groups"],
                        points,
                    ),
                )
            ]
        if target is F.linear:
            p = _bind(args, kwargs, ("input", "weight", "bias"), {"bias": None})
            return [
                (
                    source,
                    _linear_step(
                        inp, self._value(p["weight"]), points, self._positive_rule(source)
                    ),
                )
            ]
        if target in (F.max_pool2d, F.avg_pool2d):
            names = ("input", "kernel_size", "stride", "padding")
            p = _bind(
                args,
                kwargs,
                (*names, "dilation" if target is F.max_pool2d else "ceil_mode"),
                {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
            )
            if p.get("return_indices") or kwargs.get("return_indices"):
                raise self._unsupported(node, "return_indices=True")
            stride = p["stride"] if p["stride"] else p["kernel_size"]
            return [
                (
                    source,
                    _pool_step(
                        inp,
                        points,
                        p["kernel_size"],
                        stride,
                        p["padding"],
                        p.get("dilation", 1),
                        central=target is F.avg_pool2d,
                    ),
                )
            ]
        if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            if kwargs.get("return_indices"):
                raise self._unsupported(node, "return_indices=True")
            central = target is F.adaptive_avg_pool2d
            return [(source, _adaptive_pool_step(inp, out, points, central))]
        if target is F.pad:
            p = _bind(
                args, kwargs, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None}
            )
            if p["mode"] != "constant":
                raise self._unsupported(node, f"mode={p['mode']!r}")
            return [(source, _pad_step(inp, points, p["pad"]))]
        if target in _RESHAPE_FUNCTIONS:
            return [(source, self._reshape(node, inp, out, points))]
        if target in _REDUCE_FUNCTIONS:
            p = _bind(args, kwargs, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
            return [(source, self._reduce(node, inp, points, p["dim"], p["keepdim"]))]
        if (
            target in _SCALAR_FUNCTIONS
            or target in _ELEMENTWISE_FUNCTIONS
            or target in PASSTHROUGH_FUNCTIONS
        ):
            return [(source, self._same_shape(node, inp, out, points))]
        raise self._unsupported(node)

    def _method_step(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        name = str(node.target)
        if name in ("add", "add_"):
            return self._add(node, points)
        if name in ("mul", "mul_"):
            return self._mul(node, points)
        sources = self._tensor_args(node)
        if len(sources) != 1 or node.args[0] is not sources[0]:
            raise self._unsupported(node, "expected one input tensor, as self")
        source = sources[0]
        inp, out = self.values[source], self.values[node]
        if name in _RESHAPE_METHODS:
            return [(source, self._reshape(node, inp, out, points))]
        if name in _REDUCE_METHODS:
            p = _bind(
                node.args, node.kwargs, ("self", "dim", "keepdim"), {"dim": None, "keepdim": False}
            )
            return [(source, self._reduce(node, inp, points, p["dim"], p["keepdim"]))]
        if name in _ELEMENTWISE_METHODS or name in ("sub", "sub_", "div", "div_"):
            return [(source, self._same_shape(node, inp, out, points))]
        raise self._unsupported(node)

    # ----------------------------------------------------------------- rules needing the graph

    def _positive_rule(self, source: Node) -> bool:
        """Linear <- linear (or <- a 1x1 global pool): keep all positive contributions.
        Linear <- a flattened feature map with more than one position: the single argmax."""
        return not self._flattened_map(source)

    def _flattened_map(self, node: Node) -> bool:
        if node in self._spatial_memo:
            return self._spatial_memo[node]
        result = False
        inputs = self._tensor_args(node)
        if len(inputs) == 1 and node.op != "placeholder":
            before, after = self.values[inputs[0]], self.values[node]
            if _is_reshape(node, self.modules):
                result = (
                    before.ndim >= 3
                    and math.prod(before.shape[2:]) > 1
                    and after.ndim < before.ndim
                )
            elif before.shape == after.shape and _is_passthrough(node, self.modules):
                result = self._flattened_map(inputs[0])
        self._spatial_memo[node] = result
        return result

    def _conv(
        self,
        node: Node,
        inp: torch.Tensor,
        weight: torch.Tensor,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
        points: Points,
    ) -> Points:
        if inp.ndim != 4 or weight.ndim != 4:
            raise self._unsupported(
                node, f"input of shape {tuple(inp.shape)}; only 2-D convolutions"
            )
        kh, kw = int(weight.shape[2]), int(weight.shape[3])
        stride_, dilation_ = _pair(stride), _pair(dilation)
        before: tuple[int, int]
        if isinstance(padding, str):
            if padding == "valid":
                before = (0, 0)
            else:  # "same": PyTorch puts the smaller half before
                before = (dilation_[0] * (kh - 1) // 2, dilation_[1] * (kw - 1) // 2)
        else:
            before = _pair(padding)
        return _conv_step(
            inp, weight, points, stride_, before, dilation_, groups, self.conv_position
        )

    def _same_shape(self, node: Node, inp: Any, out: Any, points: Points) -> Points:
        if (
            not isinstance(inp, torch.Tensor)
            or not isinstance(out, torch.Tensor)
            or inp.shape != out.shape
        ):
            raise self._unsupported(node, "expected a shape-preserving operation")
        return points

    def _reshape(self, node: Node, inp: torch.Tensor, out: torch.Tensor, points: Points) -> Points:
        if inp.shape[0] != out.shape[0] or inp.numel() != out.numel():
            raise self._unsupported(node, "reshape that mixes the batch dimension")
        flat = _ravel(points[:, 1:], tuple(out.shape[1:]))
        return torch.cat([points[:, :1], _unravel(flat, tuple(inp.shape[1:]))], 1)

    def _reduce(
        self, node: Node, inp: torch.Tensor, points: Points, dim: Any, keepdim: bool
    ) -> Points:
        if dim is None:
            raise self._unsupported(node, "reduction over the batch dimension")
        dims = sorted(d % inp.ndim for d in ((dim,) if isinstance(dim, int) else dim))
        if 0 in dims:
            raise self._unsupported(node, "reduction over the batch dimension")
        kept = [d for d in range(inp.ndim) if d not in dims]
        lead = points[:, kept] if keepdim else points
        # The location of the largest contribution (= largest value) over the reduced dims.
        moved = inp.permute(*kept, *dims).reshape(*[inp.shape[d] for d in kept], -1)
        best = moved[tuple(lead.T)].argmax(-1)
        reduced = _unravel(best, tuple(inp.shape[d] for d in dims))
        result = torch.empty((points.shape[0], inp.ndim), dtype=torch.long, device=points.device)
        result[:, kept] = lead
        result[:, dims] = reduced
        return result

    def _operands(self, node: Node, points: Points) -> tuple[list[Node], list[Points]]:
        out = self.values[node]
        operands = [
            arg
            for arg in node.args[:2]
            if isinstance(arg, Node)
            and arg in self.dependent
            and isinstance(self.values.get(arg), torch.Tensor)
        ]
        mapped = []
        for arg in operands:
            value = self.values[arg]
            if (
                not isinstance(value, torch.Tensor)
                or value.ndim != out.ndim
                or value.shape[0] != out.shape[0]
            ):
                raise self._unsupported(node, "operands of different rank or batch")
            broadcast = torch.tensor([s == 1 for s in value.shape], device=points.device)
            mapped.append(torch.where(broadcast, torch.zeros_like(points), points))
        return operands, mapped

    def _add(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        """Residual rule: follow the operand whose value at the point is larger; on a tie the
        shallower one (fewer conv / linear layers from the input: the skip connection)."""
        operands, mapped = self._operands(node, points)
        if len(operands) < 2:
            return list(zip(operands, mapped, strict=True))
        first, second = operands
        a = self.values[first][tuple(mapped[0].T)]
        b = self.values[second][tuple(mapped[1].T)]
        pick_first = a > b if self.depth[second] < self.depth[first] else a >= b
        return [(first, mapped[0][pick_first]), (second, mapped[1][~pick_first])]

    def _mul(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        """Scaling and gating (squeeze-excitation): follow the operand shaped like the output;
        two full-size operands: the larger value at the point, as for additions."""
        operands, mapped = self._operands(node, points)
        if len(operands) < 2:
            return list(zip(operands, mapped, strict=True))
        shape = self.values[node].shape
        full = [self.values[arg].shape == shape for arg in operands]
        if full[0] != full[1]:
            index = full.index(True)
            return [(operands[index], mapped[index])]
        return self._add(node, points)

    def _cat(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        p = _bind(node.args, node.kwargs, ("tensors", "dim"), {"dim": 0})
        out = self.values[node]
        dim = p["dim"] % out.ndim
        if dim == 0:
            raise self._unsupported(node, "concatenation along the batch dimension")
        moved = []
        offset = 0
        for part in p["tensors"]:
            size = self._value(part).shape[dim]
            inside = (points[:, dim] >= offset) & (points[:, dim] < offset + size)
            if isinstance(part, Node):
                chosen = points[inside].clone()
                chosen[:, dim] -= offset
                moved.append((part, chosen))
            offset += size
        return moved

    def _getitem(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        source, index = node.args[0], node.args[1]
        value = self._value(source)
        if not isinstance(source, Node) or not isinstance(value, torch.Tensor):
            raise self._unsupported(node, "indexing a non-tensor output")
        items = index if isinstance(index, tuple) else (index,)
        if any(isinstance(item, Node | torch.Tensor) for item in items):
            raise self._unsupported(node, "advanced (tensor) indexing")
        if Ellipsis in items:
            at = items.index(Ellipsis)
            fill = value.ndim - (len(items) - 1 - items.count(None))
            items = items[:at] + (slice(None),) * fill + items[at + 1 :]
        result = torch.zeros((points.shape[0], value.ndim), dtype=torch.long, device=points.device)
        out_dim = 0
        in_dim = 0
        for item in items:
            if item is None:
                out_dim += 1
                continue
            if isinstance(item, int):
                if in_dim == 0:
                    raise self._unsupported(node, "indexing the batch dimension")
                result[:, in_dim] = item % value.shape[in_dim]
            elif isinstance(item, slice):
                start, _, step = item.indices(value.shape[in_dim])
                if in_dim == 0 and (start, step) != (0, 1):
                    raise self._unsupported(node, "slicing the batch dimension")
                result[:, in_dim] = start + step * points[:, out_dim]
                out_dim += 1
            else:
                raise self._unsupported(node, f"index {item!r}")
            in_dim += 1
        while in_dim < value.ndim:
            result[:, in_dim] = points[:, out_dim]
            in_dim += 1
            out_dim += 1
        return [(source, result)]


# --------------------------------------------------------------------------- steps (pure)


def _linear_step(inp: torch.Tensor, weight: torch.Tensor, points: Points, positive: bool) -> Points:
    """FC step. ``positive``: every input i with a_i W_ji > 0 (the argmax where none is
    positive, so no point is lost); otherwise the single argmax of a_i W_ji."""
    lead, unit = points[:, :-1], points[:, -1]
    features = inp.shape[-1]
    step = max(1, _CHUNK // max(1, features))
    moved = []
    for start in range(0, points.shape[0], step):
        chunk_lead = lead[start : start + step]
        contribution = inp[tuple(chunk_lead.T)] * weight[unit[start : start + step]].to(inp.dtype)
        best = contribution.argmax(1)
        if positive:
            keep = contribution > 0
            (empty,) = (~keep.any(1)).nonzero(as_tuple=True)
            keep[empty, best[empty]] = True
            rows, columns = keep.nonzero(as_tuple=True)
            moved.append(torch.cat([chunk_lead[rows], columns.unsqueeze(1)], 1))
        else:
            moved.append(torch.cat([chunk_lead, best.unsqueeze(1)], 1))
    return torch.cat(moved) if moved else points.new_zeros((0, points.shape[1]))


def _conv_step(
    inp: torch.Tensor,
    weight: torch.Tensor,
    points: Points,
    stride: tuple[int, int],
    before: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    position: str,
) -> Points:
    """Conv step: the input channel (of the output channel's group) with the largest summed
    contribution a * W over the zero-padded window, then the position of that channel's
    largest contribution inside the window (``argmax``) or the window centre (``anchor``)."""
    height, width = inp.shape[2:]
    out_channels, group_channels, kh, kw = weight.shape
    per_group = out_channels // groups
    step = max(1, _CHUNK // (group_channels * kh * kw))
    moved = []
    for start in range(0, points.shape[0], step):
        b, c, y, x = points[start : start + step].T
        count = b.shape[0]
        rows, row_ok = _window(y, stride[0], before[0], kh, dilation[0], height)
        cols, col_ok = _window(x, stride[1], before[1], kw, dilation[1], width)
        valid = row_ok[:, :, None] & col_ok[:, None, :]
        first = (c // per_group) * group_channels
        chans = first[:, None] + torch.arange(group_channels, device=inp.device)
        block = inp[
            b[:, None, None, None],
            chans[:, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        contribution = block * weight[c].to(inp.dtype) * valid[:, None]
        channel = contribution.sum((2, 3)).argmax(1)
        pick = torch.arange(count, device=inp.device)
        if position == "argmax":
            chosen = _central_argmax(contribution[pick, channel].masked_fill(~valid, -math.inf))
            ny, nx = rows[pick, chosen // kw], cols[pick, chosen % kw]
        else:
            ny = (y * stride[0] - before[0] + (kh - 1) * dilation[0] // 2).clamp(0, height - 1)
            nx = (x * stride[1] - before[1] + (kw - 1) * dilation[1] // 2).clamp(0, width - 1)
        moved.append(torch.stack([b, first + channel, ny, nx], 1))
    return torch.cat(moved) if moved else points


def _central_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Flat index of the largest of each ``(P, kh, kw)`` window, ties going to the position
    nearest the window's centre (then the first in row-major order).

    Ties are common: after (Re)LU-6 activations many inputs are exactly zero, so a window in a
    dead region has only zero contributions. ``argmax`` alone would take the window's first
    (top-left) position every time, and over a dozen stride-2 layers the fixations drift to
    the image's top-left corner (seen on EfficientNet-Lite0, whose depthwise convs see one
    channel per window)."""
    kh, kw = scores.shape[1:]
    rows = torch.arange(kh, device=scores.device, dtype=torch.float64) - (kh - 1) / 2
    cols = torch.arange(kw, device=scores.device, dtype=torch.float64) - (kw - 1) / 2
    distance = (rows[:, None] ** 2 + cols[None, :] ** 2).flatten()
    flat = scores.flatten(1)
    best = flat == flat.max(1, keepdim=True).values
    preference = torch.where(best, -distance, -math.inf)
    return preference.argmax(1)


def _pool_step(
    inp: torch.Tensor,
    points: Points,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    central: bool = False,
) -> Points:
    """Max-pool (the switch) and average pool (the largest contribution): the argmax of the
    channel inside the point's window; on ties the first in row-major order, like
    ``max_pool2d(return_indices=True)``, or with ``central`` (average pools, which have no
    switch) the one nearest the window's centre (see :func:`_central_argmax`)."""
    (kh, kw), (sh, sw) = _pair(kernel), _pair(stride if stride else kernel)
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    b, c, y, x = points.T
    rows, row_ok = _window(y, sh, ph, kh, dh, inp.shape[2])
    cols, col_ok = _window(x, sw, pw, kw, dw, inp.shape[3])
    return _window_argmax(inp, b, c, rows, row_ok, cols, col_ok, central)


def _adaptive_pool_step(
    inp: torch.Tensor, out: torch.Tensor, points: Points, central: bool = False
) -> Points:
    """Adaptive pooling: the argmax inside PyTorch's region [floor(i H / h), ceil((i+1) H / h));
    ties as in :func:`_pool_step`."""
    b, c, y, x = points.T
    rows, row_ok = _adaptive_window(y, inp.shape[2], out.shape[2])
    cols, col_ok = _adaptive_window(x, inp.shape[3], out.shape[3])
    return _window_argmax(inp, b, c, rows, row_ok, cols, col_ok, central)


def _pad_step(inp: torch.Tensor, points: Points, padding: Any) -> Points:
    """Constant padding (F.pad order: last dimension first); a point in the padding moves
    to the nearest input position."""
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    result = points.clone()
    for k in range(len(pads) // 2):
        dim = inp.ndim - 1 - k
        result[:, dim] = (points[:, dim] - pads[2 * k]).clamp(0, inp.shape[dim] - 1)
    return result


def _window(
    index: torch.Tensor, stride: int, before: int, kernel: int, dilation: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamped input indices ``(P, kernel)`` of each output index's window and their validity."""
    raw = index[:, None] * stride - before + torch.arange(kernel, device=index.device) * dilation
    return raw.clamp(0, size - 1), (raw >= 0) & (raw < size)


def _adaptive_window(index: torch.Tensor, size: int, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    starts = (index * size) // out
    ends = ((index + 1) * size + out - 1) // out
    longest = max(((i + 1) * size + out - 1) // out - (i * size) // out for i in range(out))
    raw = starts[:, None] + torch.arange(longest, device=index.device)
    return raw.clamp(0, size - 1), raw < ends[:, None]


def _window_argmax(
    inp: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    rows: torch.Tensor,
    row_ok: torch.Tensor,
    cols: torch.Tensor,
    col_ok: torch.Tensor,
    central: bool = False,
) -> Points:
    valid = row_ok[:, :, None] & col_ok[:, None, :]
    values = inp[b[:, None, None], c[:, None, None], rows[:, :, None], cols[:, None, :]]
    values = values.masked_fill(~valid, -math.inf)
    chosen = _central_argmax(values) if central else values.flatten(1).argmax(1)
    pick = torch.arange(b.shape[0], device=inp.device)
    width = cols.shape[1]
    return torch.stack([b, c, rows[pick, chosen // width], cols[pick, chosen % width]], 1)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """OpenCV-style GaussianBlur: kernel side = the shorter side made odd, BORDER_REFLECT_101."""
    side = min(image.shape)
    size = side if side % 2 else side - 1
    sigma = min(float(sigma), (size - 1) / 6)
    if sigma <= 0 or size < 3:
        return image
    offsets = torch.arange(size, dtype=image.dtype, device=image.device) - size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    pad = size // 2
    padded = F.pad(image[None, None], (pad, pad, pad, pad), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1))
    return blurred[0, 0]


# --------------------------------------------------------------------------- small helpers


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _dedupe(points: Points, shape: tuple[int, ...]) -> Points:
    """Distinct rows of ``points`` (indices into ``shape``), sorted (unique of flat indices:
    much faster than ``unique(dim=0)``)."""
    return _unravel(torch.unique(_ravel(points, shape)), shape)


def _ravel(index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    flat = torch.zeros(index.shape[0], dtype=torch.long, device=index.device)
    for dim, size in enumerate(shape):
        flat = flat * size + index[:, dim]
    return flat


def _unravel(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    coords = []
    for size in reversed(shape):
        coords.append(flat % size)
        flat = flat // size
    return torch.stack(coords[::-1], 1) if coords else flat.new_zeros((flat.shape[0], 0))


def _bind(
    args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str], defaults: dict[str, Any]
) -> dict[str, Any]:
    bound = dict(zip(names, args, strict=False))
    bound.update({k: v for k, v in kwargs.items()})
    for name in names:
        bound.setdefault(name, defaults.get(name))
    return bound


def _is_reshape(node: Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), nn.Flatten | nn.Unflatten)
    if node.op == "call_function":
        return node.target in _RESHAPE_FUNCTIONS
    return node.op == "call_method" and node.target in _RESHAPE_METHODS


def _is_passthrough(node: Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS or node.target in PASSTHROUGH_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS
