"""CNN Fixations' step rules that need the recorded graph, as the ``NodeRules`` base of the
walker (:class:`.walker.Unravel`): residual additions (follow the larger operand, the skip
connection on ties), gating multiplications, concatenations (route by offset), basic
indexing, reshapes and reductions, shape-preserving ops, the padding / stride arguments of a
convolution, and whether a linear layer keeps all positive contributions or the single
argmax. Each rule takes an fx ``Node`` and the ``(P, 1 + D)`` long points on its output and
returns the points on its input(s); the tensor arithmetic is in :mod:`.steps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

import torch
from torch import nn
from torch.fx import GraphModule, Node

from .ops import SUPPORTED, bind, is_passthrough, is_reshape
from .steps import Points, conv_step, pair, ravel_index, unravel_index


class NodeRules:
    """The per-node rules, and the error for a node no rule covers. The attributes are set by
    the walker once the forward pass is recorded."""

    model: str  # the model's class name, for messages
    graph_module: GraphModule  # the traced model
    modules: dict[str, nn.Module]  # the graph module's named modules
    values: dict[Node, Any]  # every node's recorded output (tensors copied)
    dependent: set[Node]  # nodes that depend on the input
    depth: dict[Node, int]  # conv / linear layers on the longest path from the input
    conv_position: str  # "argmax" or "anchor"
    passthrough: AbstractSet[Callable[..., Any]]  # the user's extra pass-through functions
    spatial_memo: dict[Node, bool]  # memo of _flattened_map

    def unsupported(self, node: Node, why: str = "") -> NotImplementedError:
        """The error for ``node``: what it is, where, ``why`` if given, and what is supported."""
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

    def value(self, arg: Any) -> Any:
        """A node argument's recorded value (a constant as given)."""
        return self.values[arg] if isinstance(arg, Node) else arg

    def tensor_args(self, node: Node) -> list[Node]:
        """The inputs of ``node`` that depend on the model input and recorded a tensor."""
        return [
            arg
            for arg in node.all_input_nodes
            if arg in self.dependent and isinstance(self.values.get(arg), torch.Tensor)
        ]

    # ----------------------------------------------------------------- rules

    def positive_rule(self, source: Node) -> bool:
        """Linear <- linear (or <- a 1x1 global pool): keep all positive contributions.
        Linear <- a flattened feature map with more than one position: the single argmax."""
        return not self._flattened_map(source)

    def _flattened_map(self, node: Node) -> bool:
        if node in self.spatial_memo:
            return self.spatial_memo[node]
        result = False
        inputs = self.tensor_args(node)
        if len(inputs) == 1 and node.op != "placeholder":
            before, after = self.values[inputs[0]], self.values[node]
            if is_reshape(node, self.modules):
                result = (
                    before.ndim >= 3
                    and math.prod(before.shape[2:]) > 1
                    and after.ndim < before.ndim
                )
            elif before.shape == after.shape and is_passthrough(
                node, self.modules, self.passthrough
            ):
                result = self._flattened_map(inputs[0])
        self.spatial_memo[node] = result
        return result

    def conv(
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
        """Conv (module or ``F.conv2d``): the padding before the first input position (also
        for ``"same"`` / ``"valid"``), then :func:`.steps.conv_step`."""
        if inp.ndim != 4 or weight.ndim != 4:
            raise self.unsupported(
                node, f"input of shape {tuple(inp.shape)}; only 2-D convolutions"
            )
        kh, kw = int(weight.shape[2]), int(weight.shape[3])
        stride_, dilation_ = pair(stride), pair(dilation)
        before: tuple[int, int]
        if isinstance(padding, str):
            if padding == "valid":
                before = (0, 0)
            else:  # "same": PyTorch puts the smaller half before
                before = (dilation_[0] * (kh - 1) // 2, dilation_[1] * (kw - 1) // 2)
        else:
            before = pair(padding)
        return conv_step(
            inp, weight, points, stride_, before, dilation_, groups, self.conv_position
        )

    def same_shape(self, node: Node, inp: Any, out: Any, points: Points) -> Points:
        if (
            not isinstance(inp, torch.Tensor)
            or not isinstance(out, torch.Tensor)
            or inp.shape != out.shape
        ):
            raise self.unsupported(node, "expected a shape-preserving operation")
        return points

    def reshape(self, node: Node, inp: torch.Tensor, out: torch.Tensor, points: Points) -> Points:
        if inp.shape[0] != out.shape[0] or inp.numel() != out.numel():
            raise self.unsupported(node, "reshape that mixes the batch dimension")
        flat = ravel_index(points[:, 1:], tuple(out.shape[1:]))
        return torch.cat([points[:, :1], unravel_index(flat, tuple(inp.shape[1:]))], 1)

    def reduce(
        self, node: Node, inp: torch.Tensor, points: Points, dim: Any, keepdim: bool
    ) -> Points:
        if dim is None:
            raise self.unsupported(node, "reduction over the batch dimension")
        dims = sorted(d % inp.ndim for d in ((dim,) if isinstance(dim, int) else dim))
        if 0 in dims:
            raise self.unsupported(node, "reduction over the batch dimension")
        kept = [d for d in range(inp.ndim) if d not in dims]
        lead = points[:, kept] if keepdim else points
        # The location of the largest contribution (= largest value) over the reduced dims.
        moved = inp.permute(*kept, *dims).reshape(*[inp.shape[d] for d in kept], -1)
        best = moved[tuple(lead.T)].argmax(-1)
        reduced = unravel_index(best, tuple(inp.shape[d] for d in dims))
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
                raise self.unsupported(node, "operands of different rank or batch")
            broadcast = torch.tensor([s == 1 for s in value.shape], device=points.device)
            mapped.append(torch.where(broadcast, torch.zeros_like(points), points))
        return operands, mapped

    def add(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
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

    def mul(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
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
        return self.add(node, points)

    def cat(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        p = bind(node.args, node.kwargs, ("tensors", "dim"), {"dim": 0})
        out = self.values[node]
        dim = p["dim"] % out.ndim
        if dim == 0:
            raise self.unsupported(node, "concatenation along the batch dimension")
        moved = []
        offset = 0
        for part in p["tensors"]:
            size = self.value(part).shape[dim]
            inside = (points[:, dim] >= offset) & (points[:, dim] < offset + size)
            if isinstance(part, Node):
                chosen = points[inside].clone()
                chosen[:, dim] -= offset
                moved.append((part, chosen))
            offset += size
        return moved

    def getitem(self, node: Node, points: Points) -> list[tuple[Node, Points]]:
        source, index = node.args[0], node.args[1]
        value = self.value(source)
        if not isinstance(source, Node) or not isinstance(value, torch.Tensor):
            raise self.unsupported(node, "indexing a non-tensor output")
        items = index if isinstance(index, tuple) else (index,)
        if any(isinstance(item, Node | torch.Tensor) for item in items):
            raise self.unsupported(node, "advanced (tensor) indexing")
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
                    raise self.unsupported(node, "indexing the batch dimension")
                result[:, in_dim] = item % value.shape[in_dim]
            elif isinstance(item, slice):
                start, _, step = item.indices(value.shape[in_dim])
                if in_dim == 0 and (start, step) != (0, 1):
                    raise self.unsupported(node, "slicing the batch dimension")
                result[:, in_dim] = start + step * points[:, out_dim]
                out_dim += 1
            else:
                raise self.unsupported(node, f"index {item!r}")
            in_dim += 1
        while in_dim < value.ndim:
            result[:, in_dim] = points[:, out_dim]
            in_dim += 1
            out_dim += 1
        return [(source, result)]
