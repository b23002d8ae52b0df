"""A faster stand-in for the network up to the layers a synthesis pass needs: the fast path's
batch-norm folded copy (see :mod:`cnnvis_widget.methods.fast_model`), cut after the last of
them.

Synthesis passes only need input -> some layer outputs (and maybe the logits) and their input
gradient; folding batch norm into the convolutions saves a pass over every normalized
activation. A batch norm is not folded where that would change a wanted layer's output (a
wanted conv keeps its own batch norm). Each layer's output is found in the traced graph by
module path (the last node recorded inside the module, which for a module that runs several
times is its last call); the cut graph is checked against the model itself on a probe and not
used when it disagrees or cannot be built. Each stand-in holds its own folded weights, so only
the most recently used few are kept per model; when the model's weights change in place, the
folded weights are recomputed rather than the stand-in rebuilt.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import fx, nn

from ..capture import capture, layer_node
from ..methods.fast_model import Fingerprint, fingerprint, folded_copy, refresh_folds
from ..models import logits_of

StandInKey = tuple[tuple[str, ...], bool]
KEPT_PER_MODEL = 4
"""Stand-ins cached per model (layer sets and logits), least recently used dropped first."""
_CACHE: weakref.WeakKeyDictionary[
    nn.Module, dict[StandInKey, tuple[Fingerprint, nn.Module | None]]
] = weakref.WeakKeyDictionary()


def layer_stand_in(
    module: nn.Module, layers: Sequence[str], probe: torch.Tensor, logits: bool = False
) -> nn.Module | None:
    """A module mapping model input to the tuple of ``layers``' outputs (each its last call),
    followed by the logits when ``logits``, with batch norm folded and parameters frozen.

    ``None`` when the model cannot be traced, a layer cannot be located in the graph, or an
    output differs from the model's own on ``probe`` (model input (1, C, H, W)). Cached per
    model, layers and ``logits``; rebuilt when parameters change.
    """
    cache_key: StandInKey = (tuple(layers), logits)
    current = fingerprint(module)
    per_model = _CACHE.setdefault(module, {})
    cached = per_model.pop(cache_key, None)
    if cached is not None and cached[0].structure == current.structure:
        if cached[1] is not None and cached[0].values != current.values:
            refresh_folds(cached[1])
        per_model[cache_key] = (current, cached[1])  # now the most recently used
        return cached[1]
    stand_in = _build(module, cache_key[0], logits, probe)
    per_model[cache_key] = (current, stand_in)
    while len(per_model) > KEPT_PER_MODEL:
        per_model.pop(next(iter(per_model)))
    return stand_in


def _build(
    module: nn.Module, layers: tuple[str, ...], logits: bool, probe: torch.Tensor
) -> nn.Module | None:
    from ..model_view import eval_view

    try:
        folded = folded_copy(module, probe, keep=layers)
        if not isinstance(folded, fx.GraphModule):
            return None
        graph = folded.graph
        output = next(node for node in graph.nodes if node.op == "output")
        wanted: list[fx.Node] = []
        for layer in layers:
            node = layer_node(graph, layer)
            if node is None:
                return None
            wanted.append(node)
        if logits:
            if not isinstance(output.args[0], fx.Node):
                return None  # a structured output: logits_of picks from it at run time
            wanted.append(output.args[0])
        output.args = (tuple(wanted),)
        graph.eliminate_dead_code()
        output.args = (tuple(_kept(graph, node, output) for node in wanted),)
        graph.lint()
        folded.recompile()
        folded.delete_all_unused_submodules()
        view = eval_view(module)
        with torch.no_grad(), capture(view, list(layers)) as recorded:
            model_output = view(probe)
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


def _kept(graph: fx.Graph, node: fx.Node, output: fx.Node) -> fx.Node:
    """``node``, or a copy of it taken right after it when later operations also use it
    (one of them may change it in place, as ``ReLU(inplace=True)`` does)."""
    if all(user is output for user in node.users):
        return node
    with graph.inserting_after(node):
        return graph.call_method("clone", (node,))
