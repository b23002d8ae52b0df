"""A faster stand-in for the network up to the layers a synthesis pass needs: the fast path's
batch-norm folded copy (see :mod:`cnnvis_widget.methods.fast_model`), cut after the last of
them.

Synthesis passes only need input -> some layer outputs (and maybe the logits) and their input
gradient; folding batch norm into the convolutions saves a pass over every normalized
activation. Each layer's output is found in the traced graph by module path (the last node
recorded inside the module, which for a module that runs several times is its last call); the
cut graph is checked against the model itself on a probe and not used when it disagrees or
cannot be built.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Sequence

import torch
from torch import fx, nn

from ...models import logits_of
from ..fast_model import FoldedNorm, _fingerprint, _folded_copy

StandInKey = tuple[tuple[str, ...], bool]
_CACHE: weakref.WeakKeyDictionary[
    nn.Module, dict[StandInKey, tuple[Hashable, nn.Module | None]]
] = weakref.WeakKeyDictionary()


def layer_stand_in(
    module: nn.Module, layers: Sequence[str], probe: torch.Tensor, logits: bool = False
) -> nn.Module | None:
    """A module mapping model input to the tuple of ``layers``' outputs (each its last call),
    followed by the logits when ``logits``, with batch norm folded and parameters frozen.

    ``None`` when the model cannot be traced, a layer cannot be located in the graph, or an
    output differs from the model's own on ``probe`` (model input (1, 3, H, W)). Cached per
    model, layers and ``logits``; rebuilt when parameters change.
    """
    cache_key: StandInKey = (tuple(layers), logits)
    key = _fingerprint(module)
    per_model = _CACHE.setdefault(module, {})
    cached = per_model.get(cache_key)
    if cached is not None and cached[0] == key:
        return cached[1]
    stand_in = _build(module, cache_key[0], logits, probe)
    per_model[cache_key] = (key, stand_in)
    return stand_in


def _build(
    module: nn.Module, layers: tuple[str, ...], logits: bool, probe: torch.Tensor
) -> nn.Module | None:
    from ...capture import capture

    try:
        folded = _folded_copy(module, probe)
        if not isinstance(folded, fx.GraphModule):
            return None
        graph = folded.graph
        output = next(node for node in graph.nodes if node.op == "output")
        wanted: list[tuple[fx.Node, FoldedNorm | None]] = []
        for layer in layers:
            located = _located(graph, layer)
            if located is None:
                return None
            wanted.append(located)
        if logits:
            if not isinstance(output.args[0], fx.Node):
                return None  # a structured output: logits_of picks from it at run time
            wanted.append((output.args[0], None))
        output.args = (tuple(node for node, _ in wanted),)
        graph.eliminate_dead_code()
        output.args = (tuple(_kept(folded, node, undo, output) for node, undo in wanted),)
        graph.lint()
        folded.recompile()
        folded.delete_all_unused_submodules()
        with torch.no_grad(), capture(module, list(layers)) as recorded:
            model_output = module(probe)
            expected = [recorded.tensor(layer) for layer in layers]
            expected += [logits_of(model_output)] if logits else []
            got = folded(probe)
    except Exception:  # untraceable or unusual graph: the model itself is used
        return None
    if not isinstance(got, tuple) or len(got) != len(expected):
        return None
    for value, reference in zip(got, expected, strict=True):
        if not isinstance(value, torch.Tensor) or value.shape != reference.shape:
            return None
        scale = float(reference.abs().max()) or 1.0
        if not torch.allclose(value, reference, rtol=1e-3, atol=1e-4 * scale):
            return None
    return folded.eval()


def _located(graph: fx.Graph, layer: str) -> tuple[fx.Node, FoldedNorm | None] | None:
    """The node whose output is ``layer``'s in the folded graph, with the batch norm to undo
    when ``layer`` is a conv that a batch norm was folded into; None if not found."""
    inside = [n for n in graph.nodes if layer in n.meta.get("nn_module_stack", {})]
    if inside:
        last = inside[-1]
        norm = last.meta.get("folded_norm")
        own_conv = last.op == "call_module" and last.target == layer
        return last, norm if own_conv else None
    for node in graph.nodes:  # a batch norm folded away: its output is its conv's now
        norm = node.meta.get("folded_norm")
        if norm is not None and norm.name == layer:
            return node, None
    return None


class _UndoNorm(nn.Module):
    """y = (x - shift) / scale per channel: a conv's own output from its batch-norm-folded
    output."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, norm: FoldedNorm) -> None:
        super().__init__()
        self.register_buffer("scale", norm.scale.clone())
        self.register_buffer("shift", norm.shift.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def _kept(
    module: fx.GraphModule, node: fx.Node, undo: FoldedNorm | None, output: fx.Node
) -> fx.Node:
    """What the stand-in returns for ``node``: the conv's own output when a batch norm folded
    into it is to be undone; else ``node``, or a copy of it taken right after it when later
    operations also use it (one of them may change it in place, as ``ReLU(inplace=True)``
    does)."""
    graph = module.graph
    if undo is not None:
        name = f"_undo_norm_{len(module._modules)}"
        module.add_submodule(name, _UndoNorm(undo))
        with graph.inserting_after(node):
            return graph.call_module(name, (node,))
    if all(user is output for user in node.users):
        return node
    with graph.inserting_after(node):
        return graph.call_method("clone", (node,))
