"""Hooks on named layers: record outputs (and make them differentiable), always cleaned up.

This module is also the one place layer names are read: ``"layer4"`` names a submodule as in
``named_modules()``, ``"layer1.0.relu@1"`` one call of a module that runs several times in a
forward pass (:class:`LayerRef`, :func:`resolve_layer`).

Hooks go on the eval-mode view a method runs on (:func:`~cnnvis_widget.model_view.eval_view`),
never on the user's modules; they are removed when the block ends, also on exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.utils.hooks import RemovableHandle


@dataclass(frozen=True)
class LayerRef:
    """A layer by dotted name, optionally one call of a module that runs several times.

    ``"layer1.0.relu"`` is its last call; ``"layer1.0.relu@0"`` its first. Text whose part
    after the last ``@`` is not a call number is a plain name (``call`` ``None``).
    """

    name: str
    call: int | None = None

    @classmethod
    def parse(cls, text: str) -> LayerRef:
        name, sep, call = text.rpartition("@")
        if sep and call.isdigit():
            return cls(name, int(call))
        return cls(text)

    def __str__(self) -> str:
        return self.name if self.call is None else f"{self.name}@{self.call}"


def resolve_module(module: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (as in ``named_modules()``, no ``@k``), or a
    ``ValueError`` that lists the close matches and every valid name."""
    modules = dict(module.named_modules())
    modules.pop("", None)
    if name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, list(modules), n=5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown layer {name!r}.{hint} Valid layer names (see cv.layers(module, x)): "
        f"{', '.join(modules)}."
    )


def resolve_layer(module: nn.Module, text: str) -> nn.Module:
    """The submodule a layer name refers to, with or without a call suffix (``"relu"`` and
    ``"relu@1"`` both give ``relu``), or the ``ValueError`` of :func:`resolve_module`. Whether
    call ``k`` exists is only known after a forward pass (:meth:`Capture.tensor` says)."""
    return resolve_module(module, LayerRef.parse(text).name)


class _ForwardDone(Exception):
    """Raised from a hook once every wanted call ran (``stop_early``): it ends the forward
    pass there, and the :func:`capture` block that owns the hook swallows it."""

    def __init__(self, owner: Capture) -> None:
        super().__init__("every wanted layer output is recorded")
        self.owner = owner


@dataclass
class _Pass:
    """What the taps of one :func:`capture` share."""

    owner: Capture
    clock: int = 0
    """Completions of hooked modules so far: orders them."""
    pending: int | None = None
    """Taps whose recorded call has yet to run; ``None``: the pass is never cut short."""


@dataclass
class _Tap:
    ref: LayerRef
    shared: _Pass
    record_at: int | None = None
    """Index of the call recorded; ``None``: every call, so the last one stays."""
    calls: int = 0
    output: object = None
    enable_grad: bool = False
    finished: int | None = None


@dataclass
class Capture:
    """Outputs recorded by :func:`capture`: ``tensor(name)`` is the layer's output tensor.

    With ``differentiable=True`` each captured tensor is a leaf that requires grad and the rest
    of the forward pass is built on it, so ``torch.autograd.grad(score, capture.tensor(name))``
    backpropagates from the score down to that layer and no further.
    """

    taps: dict[str, _Tap] = field(default_factory=dict)
    stopped: bool = False
    """Whether ``stop_early`` ended the forward pass after the last wanted output."""

    def tensor(self, name: str) -> torch.Tensor:
        """The output of layer ``name`` (as given to :func:`capture`); a ``RuntimeError`` /
        ``TypeError`` naming the fix when it did not run or gave no tensor."""
        tap = self.taps[name]
        if tap.calls == 0:
            raise RuntimeError(
                f"layer {name!r} did not run in the forward pass, so it has no output to use. "
                "Pick a layer whose calls > 0 in cv.layers(module, x)."
            )
        if tap.ref.call is not None and tap.calls <= tap.ref.call:
            raise RuntimeError(
                f"layer {tap.ref.name!r} ran {tap.calls} time(s); call @{tap.ref.call} does not exist."
            )
        if not isinstance(tap.output, torch.Tensor):
            raise TypeError(
                f"layer {name!r} returns {type(tap.output).__name__}, not a tensor; pick one of its "
                "submodules instead."
            )
        return tap.output

    def output(self, name: str) -> torch.Tensor | None:
        """The output tensor of layer ``name``, or ``None`` when the wanted call did not run
        or gave something other than a tensor."""
        output = self.taps[name].output
        return output if isinstance(output, torch.Tensor) else None

    def calls(self, name: str) -> int:
        """How often layer ``name``'s module ran inside the block (all passes together)."""
        return self.taps[name].calls


@contextmanager
def capture(
    module: nn.Module,
    layers: Sequence[str],
    *,
    differentiable: bool = False,
    calls: Mapping[str, int] | None = None,
    stop_early: bool = False,
) -> Iterator[Capture]:
    """Record the outputs of ``layers`` (names as in ``named_modules()``, ``"name@k"`` for
    call ``k``) during forward passes run inside the block.

    Each hook hands the rest of the network a copy of the output, so in-place operations that
    follow (``ReLU(inplace=True)``) never alter what was recorded. A module that runs several
    times records its last call unless the name says ``@k``. Without ``differentiable`` the
    recorded outputs are the network's own tensors: under grad mode, gradients flow from them
    back to the input (synthesis backpropagates through them).

    ``differentiable=True`` is meant for a forward pass run under ``torch.no_grad()``: the part
    of the network before the first captured layer builds no autograd graph, and from the
    captured output on the graph is recorded. Grad mode is restored when the block exits.

    ``calls`` gives how often each named layer's module runs per forward pass (counted on an
    earlier pass with :meth:`Capture.calls`): a plainly named layer listed there is recorded
    (and copied) only at its last call, not at every call. ``stop_early=True`` ends the
    forward pass by an exception once every wanted call ran (only when each is known: an
    ``@k`` name or one listed in ``calls``), skipping the rest of the network; the block
    swallows it and exits right there (code after the forward pass in the block does not run)
    with :attr:`Capture.stopped` set. Hooks are removed when the block exits, also on errors.
    """
    if differentiable and len(layers) != 1:
        # Each captured output is detached to start the graph there, which would cut the
        # gradient path to any earlier captured layer.
        raise ValueError("differentiable capture takes exactly one layer.")
    known = calls or {}
    result = Capture()
    shared = _Pass(result)
    handles: list[RemovableHandle] = []
    grad_mode = torch.is_grad_enabled()
    try:
        for text in dict.fromkeys(layers):
            ref = LayerRef.parse(text)
            record_at = ref.call
            if record_at is None and text in known:
                record_at = known[text] - 1
            tap = _Tap(ref, shared, record_at, enable_grad=differentiable)
            result.taps[text] = tap
            handles.append(resolve_layer(module, text).register_forward_hook(_hook_for(tap)))
        taps = result.taps.values()
        if stop_early and all(tap.record_at is not None for tap in taps):
            shared.pending = len(taps)
        try:
            yield result
        except _ForwardDone as done:
            if done.owner is not result:
                raise
            result.stopped = True
    finally:
        for handle in handles:
            handle.remove()
        torch.set_grad_enabled(grad_mode)


def _hook_for(tap: _Tap) -> Callable[[nn.Module, object, object], object]:
    shared = tap.shared

    def hook(_module: nn.Module, _inputs: object, output: object) -> object:
        index = tap.calls
        tap.calls += 1
        tap.finished = shared.clock
        shared.clock += 1
        if tap.record_at is not None and index != tap.record_at:
            return None
        if shared.pending is not None:
            shared.pending -= 1
        if not isinstance(output, torch.Tensor):
            tap.output = output
            return None
        if tap.enable_grad:
            torch.set_grad_enabled(True)
            recorded = output.detach().requires_grad_(True)
        else:
            recorded = output
        tap.output = recorded
        if shared.pending == 0:
            raise _ForwardDone(shared.owner)
        return recorded.clone()

    return hook


def layer_node(graph: fx.Graph, layer: LayerRef | str) -> fx.Node | None:
    """The node of a torch.fx graph (traced with module stacks, e.g. by
    :func:`~cnnvis_widget.fx_trace.trace`) whose output is ``layer``'s: the last node recorded
    inside the module (its last call), or for ``name@k`` the last node inside call ``k``
    (torch.fx keys call ``k > 0`` of a module ``name@k``); for a batch norm folded away, the
    conv it was folded into (``meta["folded_norm"]``). None if not found."""
    ref = LayerRef.parse(layer) if isinstance(layer, str) else layer
    if ref.call is not None:
        key = ref.name if ref.call == 0 else str(ref)
        return next(
            (n for n in reversed(graph.nodes) if key in n.meta.get("nn_module_stack", {})), None
        )
    for node in reversed(graph.nodes):
        stack = node.meta.get("nn_module_stack", {})
        if any(LayerRef.parse(key).name == ref.name for key in stack):
            return node
    for node in reversed(graph.nodes):
        if node.meta.get("folded_norm") == ref.name:
            return node
    return None
