"""A faster stand-in for the network up to one layer: the fast path's batch-norm folded copy
(see :mod:`cnnvis_widget.methods.fast_model`), cut after the layer's output.

Synthesis passes only need input -> layer output and its input gradient; folding batch norm
into the convolutions before the layer saves a pass over every normalized activation. The
layer's output is found in the traced graph by module path (the last node recorded inside the
module, which for a module that runs several times is its last call); the cut graph is checked
against the model itself on a probe and not used when it disagrees or cannot be built.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable

import torch
from torch import fx, nn

from ..fast_model import _fingerprint, _folded_copy

_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[Hashable, nn.Module | None]]] = (
    weakref.WeakKeyDictionary()
)


def layer_stand_in(module: nn.Module, layer: str, probe: torch.Tensor) -> nn.Module | None:
    """A module mapping model input to ``layer``'s output (its last call), with batch norm
    folded and parameters frozen; ``None`` when the model cannot be traced, the layer cannot
    be located in the graph, or the result differs from the model's own on ``probe``
    (model input (1, 3, H, W)). Cached per model and layer; rebuilt when parameters change."""
    key = _fingerprint(module)
    per_model = _CACHE.setdefault(module, {})
    cached = per_model.get(layer)
    if cached is not None and cached[0] == key:
        return cached[1]
    stand_in = _build(module, layer, probe)
    per_model[layer] = (key, stand_in)
    return stand_in


def _build(module: nn.Module, layer: str, probe: torch.Tensor) -> nn.Module | None:
    from ...capture import capture

    try:
        folded = _folded_copy(module, probe)
        if not isinstance(folded, fx.GraphModule):
            return None
        graph = folded.graph
        inside = [node for node in graph.nodes if layer in node.meta.get("nn_module_stack", {})]
        if not inside:
            return None
        output = next(node for node in graph.nodes if node.op == "output")
        output.args = (inside[-1],)
        graph.eliminate_dead_code()
        graph.lint()
        folded.recompile()
        folded.delete_all_unused_submodules()
        with torch.no_grad(), capture(module, [layer]) as recorded:
            module(probe)
            expected = recorded.tensor(layer)
            got = folded(probe)
    except Exception:  # untraceable or unusual graph: the model itself is used
        return None
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return None
    scale = float(expected.abs().max()) or 1.0
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-4 * scale):
        return None
    return folded.eval()
