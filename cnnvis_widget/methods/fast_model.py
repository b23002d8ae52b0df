"""A faster stand-in for the model in whole-network passes: batch norm folded into the
convolutions, parameters frozen, activations in the measured faster memory layout.

The pixel methods (gradients, SmoothGrad, IG, occlusion, Score-CAM's masked passes) only need
the map input -> logits and its input gradient, not the model's internals, so they can run on
a copy that computes the same function with less work:

- eval-mode ``BatchNorm2d`` after a ``Conv2d`` is an affine map, folded into the conv's weight
  and bias (torch.fx ``fuse``): one pass over the activation instead of two;
- parameters of the copy do not require grad, so autograd saves nothing for weight gradients;
- the input is handed over in the memory layout measured to be faster for this model and
  batch size (channels-last for dense convolutions, usually; not for depthwise ones or at
  batch 1 on some models), and every conv after it keeps that layout.

The copy shares the storage of every parameter it does not fold, so it costs only the folded
weights in memory. One stand-in is cached per model (a weak reference: it goes with the
model). When the model's parameters or buffers change in place (an optimizer step, a
``load_state_dict``; seen by their version counters) the folded weights are recomputed in
place, so a model trained between calls keeps one stand-in; when a tensor or submodule is
replaced, the stand-in is rebuilt and replaces the old one. Models that torch.fx cannot trace
get the same wrapper without the folding. Models with hooks or parametrizations of their own
never get a stand-in (see :func:`~cnnvis_widget.model_view.user_hooks`).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Collection, Hashable
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..fx_trace import ThreadSafeTracer, trace
from ..layout import faster_layout
from ..models import logits_of

_CACHE: weakref.WeakKeyDictionary[nn.Module, MeasuredLayout] = weakref.WeakKeyDictionary()


class MeasuredLayout(nn.Module):
    """Runs ``inner`` on a 4-D input in the faster memory layout for this batch size, measured
    on first use (:func:`~cnnvis_widget.layout.faster_layout`); same function as ``inner``."""

    def __init__(self, inner: nn.Module, fingerprint: Fingerprint) -> None:
        super().__init__()
        self.inner = inner
        self.fingerprint = fingerprint
        self.values_changed = False
        """Whether the model's weights changed in place since the stand-in was built (then
        no frozen TorchScript copy of its weights is made: it would go stale)."""

    def follow(self, fingerprint: Fingerprint) -> None:
        """Bring the folded weights up to date with the model's tensors, whose values (not
        identities) changed since ``self.fingerprint``."""
        refresh_folds(self.inner)
        self.fingerprint = fingerprint
        self.values_changed = True

    def forward(self, x: torch.Tensor) -> object:
        if x.ndim == 4:
            autocast = torch.is_autocast_enabled(x.device.type)
            key = ("stand-in", id(self), *x.shape[:2], x.device, x.dtype, autocast)
            layout = faster_layout(key, x, lambda probe: logits_of(self.inner(probe)))
            x = x.contiguous(memory_format=layout)
        return self.inner(x)


def fast_model(module: nn.Module, example: torch.Tensor | None = None) -> MeasuredLayout:
    """The cached fast stand-in for ``module`` (which must be in eval mode), built on first use.

    The stand-in computes ``module``'s function up to float rounding; it never changes
    ``module`` (no hooks, flags or parameters of the original are touched). ``example``, an
    input batch, is used once when the stand-in is built to check that folding kept the
    function; where it did not, the unfolded copy is used.
    """
    current = fingerprint(module)
    cached = _CACHE.get(module)
    if cached is not None and cached.fingerprint.structure == current.structure:
        if cached.fingerprint.values != current.values:
            cached.follow(current)
        return cached
    device = example.device.type if example is not None else "cpu"
    with torch.autocast(device, enabled=False):  # checked in the model's own precision
        stand_in = MeasuredLayout(folded_copy(module, example), current).eval()
    _CACHE[module] = stand_in  # replaces the stand-in of the model's former structure
    return stand_in


def folded_copy(
    module: nn.Module, example: torch.Tensor | None, keep: Collection[str] = ()
) -> nn.Module:
    """A frozen copy of ``module`` with batch norms folded into their convs (a torch.fx
    GraphModule), except where the fold would change the output of a module named in
    ``keep`` (plain names as in ``named_modules()``); the unfolded copy when tracing fails,
    nothing folds or the check on ``example`` (model input (N, C, H, W); ``None``: not
    checked) fails. The copy shares every parameter and buffer it does not fold."""
    frozen = {id(p): nn.Parameter(p.detach(), requires_grad=False) for p in module.parameters()}
    shared_buffers = {id(b): b for b in module.buffers()}
    twin = copy.deepcopy(module, memo={**frozen, **shared_buffers})
    twin.eval()
    # Hooks a user left on the original must not run twice or on the copy.
    for sub in twin.modules():
        sub._forward_hooks.clear()
        sub._forward_pre_hooks.clear()
        sub._backward_hooks.clear()
    if not any(isinstance(sub, nn.BatchNorm2d) for sub in twin.modules()):
        return twin
    try:
        folded = _fold_batch_norms(_trace(twin), keep)
    except Exception:  # untraceable (data-dependent control flow): run unfolded
        return twin
    if example is not None and not same_function(twin, folded, example):
        return twin  # e.g. a conv subclass that transforms its weight: folding is not valid
    return folded


class _ConvLeafTracer(ThreadSafeTracer):
    """Keeps conv subclasses (e.g. EfficientNet's same-padding convs) as single modules, so
    their batch norm can be folded into them."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> fx.GraphModule:
    return trace(module, _ConvLeafTracer())


def _fold_batch_norms(graph_module: fx.GraphModule, keep: Collection[str] = ()) -> fx.GraphModule:
    """Fold every eval-mode ``BatchNorm2d`` that is the only user of a ``Conv2d`` (or a
    subclass, e.g. same-padding convs) into a copy of that conv, unless the conv lies inside a
    module of ``keep`` and the batch norm outside it (that module's output would change). The
    fused conv node records the folded norm's name in ``node.meta["folded_norm"]``."""
    modules = dict(graph_module.named_modules())
    folds: list[tuple[nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]] = []
    # A plain list, not a submodule: (fused conv, the conv and norm whose tensors it folds).
    graph_module.__dict__["_folds"] = folds
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if not (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), nn.Conv2d)
            and len(source.users) == 1
        ):
            continue
        conv, norm = modules[source.target], modules[node.target]
        if norm.running_mean is None or norm.running_var is None:
            continue
        if any(_inside(source.target, k) and not _inside(node.target, k) for k in keep):
            continue
        fused = copy.deepcopy(conv)
        weight, bias = _folded_weights(conv, norm)
        fused.weight = nn.Parameter(weight.detach(), requires_grad=False)
        fused.bias = nn.Parameter(bias.detach(), requires_grad=False)
        _set_submodule(graph_module, str(source.target), fused)
        folds.append((fused, conv, norm))
        source.meta["folded_norm"] = str(node.target)
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
    graph_module.graph.lint()
    graph_module.recompile()
    graph_module.delete_all_unused_submodules()
    return graph_module


def _inside(target: object, name: str) -> bool:
    """Whether module path ``target`` is module ``name`` or one of its submodules."""
    return str(target) == name or str(target).startswith(name + ".")


def _set_submodule(root: nn.Module, target: str, replacement: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, replacement)


def same_function(reference: nn.Module, candidate: nn.Module, example: torch.Tensor) -> bool:
    """Whether ``candidate`` gives ``reference``'s logits on ``example`` up to float rounding
    (:func:`same_outputs`)."""
    with torch.no_grad():
        return same_outputs(reference(example), candidate(example))


def same_outputs(expected: object, got: object) -> bool:
    """Whether the logits in ``got`` equal those in ``expected`` up to float rounding
    (relative 1e-3 of the largest logit)."""
    expected, got = logits_of(expected), logits_of(got)
    if expected.shape != got.shape:
        return False
    if expected.numel() == 0:
        return True
    scale = float(expected.abs().max()) or 1.0
    return bool(torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * scale))


def _folded_weights(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``conv`` followed by the eval-mode ``norm``, as one conv."""
    assert norm.running_mean is not None and norm.running_var is not None
    return fuse_conv_bn_weights(
        conv.weight,
        conv.bias,
        norm.running_mean,
        norm.running_var,
        norm.eps,
        norm.weight,
        norm.bias,
    )


def refresh_folds(graph_module: nn.Module) -> None:
    """Recompute, in place, the weights of every conv that :func:`_fold_batch_norms` folded a
    batch norm into, from the current values of the conv's and the norm's tensors (shared
    with the user's model)."""
    with torch.no_grad():
        for fused, conv, norm in graph_module.__dict__.get("_folds", ()):
            weight, bias = _folded_weights(conv, norm)
            fused.weight.copy_(weight)
            assert fused.bias is not None
            fused.bias.copy_(bias)


@dataclass(frozen=True)
class Fingerprint:
    """What a stand-in built from a model depends on. ``structure``: the identity, storage,
    dtype, device and shape of every parameter and buffer, and the identity of every
    submodule (a change means rebuild). ``values``: their version counters (a change means
    the values changed in place: refresh)."""

    structure: Hashable
    values: Hashable


def fingerprint(module: nn.Module) -> Fingerprint:
    """``module``'s :class:`Fingerprint` now (one pass over its parameters, buffers and
    submodules; no tensor values are read)."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    structure = tuple(
        (name, id(t), t.data_ptr(), t.dtype, t.device, tuple(t.shape)) for name, t in tensors
    ) + tuple(id(sub) for sub in module.modules())
    return Fingerprint(structure, tuple(t._version for _, t in tensors))
