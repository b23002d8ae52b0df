"""CNN Fixations' graph walker: the model is traced with ``torch.fx``, the forward pass is
recorded once (``torch.no_grad``, every node's output copied), and the walk goes backwards
from the target logit over the graph, keeping a deduplicated point set per node and
dispatching each node (module, function or tensor method) to its step rule.

Point sets are ``(P, 1 + D)`` long tensors: the sample index, then the index inside that
sample's activation. The rules are in :mod:`.rules` and :mod:`.steps`, the op tables in
:mod:`.ops`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx import GraphModule, Node

from ...fx_trace import trace
from .ops import (
    ADD_FUNCTIONS,
    CAT_FUNCTIONS,
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    ELEMENTWISE_MODULES,
    MUL_FUNCTIONS,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    RESHAPE_FUNCTIONS,
    RESHAPE_METHODS,
    SCALAR_FUNCTIONS,
    bind,
)
from .rules import NodeRules
from .steps import Points, adaptive_pool_step, dedupe, linear_step, pad_step, pool_step


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


class Unravel(NodeRules):
    """One forward pass recorded on the fx graph, then the backward walk of point sets.

    ``x`` is the model input, ``targets`` the class per sample (``None``: the predicted one),
    ``passthrough`` the user's extra pass-through functions. After construction ``points``
    maps every node the walk reached to its points and ``input_node`` is the model's input
    (its points index ``x``: sample, channel, y, x)."""

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        conv_position: str,
        passthrough: AbstractSet[Callable[..., Any]],
    ) -> None:
        if conv_position not in ("argmax", "anchor"):
            raise ValueError(f"conv_position must be 'argmax' or 'anchor'; got {conv_position!r}.")
        self.conv_position = conv_position
        self.passthrough = passthrough
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
        self.spatial_memo = {}
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
            points = dedupe(torch.cat(pending.pop(node)), tuple(self.values[node].shape))
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
        raise self.unsupported(node)

    # ----------------------------------------------------------------- dispatch

    def _module_step(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        module = self.graph_module.get_submodule(str(node.target))
        source = node.args[0] if node.args else None
        if not isinstance(source, Node) or len(self.tensor_args(node)) != 1:
            raise self.unsupported(node, "expected one input tensor")
        inp, out = self.values[source], self.values[node]
        if isinstance(module, nn.Linear):
            return [(source, linear_step(inp, module.weight, points, self.positive_rule(source)))]
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise self.unsupported(node, f"padding_mode={module.padding_mode!r}")
            moved = self.conv(
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
            moved = pool_step(
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
            return [(source, adaptive_pool_step(inp, out, points, central))]
        if isinstance(module, nn.Flatten | nn.Unflatten):
            return [(source, self.reshape(node, inp, out, points))]
        if isinstance(module, nn.ZeroPad2d | nn.ConstantPad2d):
            return [(source, pad_step(inp, points, module.padding))]
        if isinstance(module, ELEMENTWISE_MODULES):
            return [(source, self.same_shape(node, inp, out, points))]
        raise self.unsupported(node)

    def _function_step(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        target = node.target
        args, kwargs = node.args, node.kwargs
        if target in ADD_FUNCTIONS:
            return self.add(node, points)
        if target in MUL_FUNCTIONS:
            return self.mul(node, points)
        if target in CAT_FUNCTIONS:
            return self.cat(node, points)
        if target is operator.getitem:
            return self.getitem(node, points)
        sources = self.tensor_args(node)
        if len(sources) != 1 or args[0] is not sources[0]:
            raise self.unsupported(node, "expected one input tensor, passed first")
        source = sources[0]
        inp, out = self.values[source], self.values[node]
        if target is F.conv2d:
            p = bind(
                args,
                kwargs,
                ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
                {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1},
            )
            weight = self.value(p["weight"])
            return [
                (
                    source,
                    self.conv(
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
            p = bind(args, kwargs, ("input", "weight", "bias"), {"bias": None})
            return [
                (
                    source,
                    linear_step(inp, self.value(p["weight"]), points, self.positive_rule(source)),
                )
            ]
        if target in (F.max_pool2d, F.avg_pool2d):
            names = ("input", "kernel_size", "stride", "padding")
            p = bind(
                args,
                kwargs,
                (*names, "dilation" if target is F.max_pool2d else "ceil_mode"),
                {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
            )
            if p.get("return_indices") or kwargs.get("return_indices"):
                raise self.unsupported(node, "return_indices=True")
            stride = p["stride"] if p["stride"] else p["kernel_size"]
            return [
                (
                    source,
                    pool_step(
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
                raise self.unsupported(node, "return_indices=True")
            central = target is F.adaptive_avg_pool2d
            return [(source, adaptive_pool_step(inp, out, points, central))]
        if target is F.pad:
            p = bind(
                args, kwargs, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None}
            )
            if p["mode"] != "constant":
                raise self.unsupported(node, f"mode={p['mode']!r}")
            return [(source, pad_step(inp, points, p["pad"]))]
        if target in RESHAPE_FUNCTIONS:
            return [(source, self.reshape(node, inp, out, points))]
        if target in REDUCE_FUNCTIONS:
            p = bind(args, kwargs, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
            return [(source, self.reduce(node, inp, points, p["dim"], p["keepdim"]))]
        if (
            target in SCALAR_FUNCTIONS
            or target in ELEMENTWISE_FUNCTIONS
            or target in self.passthrough
        ):
            return [(source, self.same_shape(node, inp, out, points))]
        raise self.unsupported(node)

    def _method_step(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        name = str(node.target)
        if name in ("add", "add_"):
            return self.add(node, points)
        if name in ("mul", "mul_"):
            return self.mul(node, points)
        sources = self.tensor_args(node)
        if len(sources) != 1 or node.args[0] is not sources[0]:
            raise self.unsupported(node, "expected one input tensor, as self")
        source = sources[0]
        inp, out = self.values[source], self.values[node]
        if name in RESHAPE_METHODS:
            return [(source, self.reshape(node, inp, out, points))]
        if name in REDUCE_METHODS:
            p = bind(
                node.args, node.kwargs, ("self", "dim", "keepdim"), {"dim": None, "keepdim": False}
            )
            return [(source, self.reduce(node, inp, points, p["dim"], p["keepdim"]))]
        if name in ELEMENTWISE_METHODS or name in ("sub", "sub_", "div", "div_"):
            return [(source, self.same_shape(node, inp, out, points))]
        raise self.unsupported(node)
