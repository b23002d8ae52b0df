"""Modified backward rules for ReLU modules (guided backprop, DeconvNet), hook-based but
in-place-safe and always cleaned up.

For every call of an ``nn.ReLU`` module, a forward pre-hook keeps the pre-activation and hands
the module a copy (so an in-place ReLU cannot overwrite it); the forward hook then replaces the
module's output with ``relu(pre)`` computed by a custom autograd function whose backward
applies the rule. Reused modules are handled call by call.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

Rule = Literal["guided", "deconvnet"]


class _GuidedReLU(torch.autograd.Function):
    """clamp(pre, 0, upper) forward; backward relu(g) * [0 < pre < upper]
    (Springenberg et al. 2015; upper = inf for ReLU, 6 for ReLU6)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, upper: float) -> torch.Tensor:
        passing = (pre > 0) & (pre < upper)
        ctx.save_for_backward(passing)
        return pre.clamp(0, upper)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (passing,) = ctx.saved_tensors
        return grad.clamp(min=0) * passing, None


class _DeconvReLU(torch.autograd.Function):
    """clamp(pre, 0, upper) forward; backward relu(g), ignoring the forward mask
    (Zeiler & Fergus 2014)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, upper: float) -> torch.Tensor:
        return pre.clamp(0, upper)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.clamp(min=0), None


_FUNCTIONS = {"guided": _GuidedReLU, "deconvnet": _DeconvReLU}


def _upper(module: nn.Module) -> float:
    return 6.0 if isinstance(module, nn.ReLU6) else math.inf


_RULE_TITLES = {"guided": "guided backpropagation", "deconvnet": "DeconvNet"}

_NOTES: ContextVar[list[str] | None] = ContextVar("relu_rule_notes", default=None)


@contextmanager
def collect_notes() -> Iterator[list[str]]:
    """Collect the notes :func:`relu_rule` gives inside the block (in this thread only), so
    that a caller such as the widget can show them beside the map as well as warn."""
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)


def no_relu_note(model_name: str, rule: Rule) -> str:
    """What a map of ``rule`` is when the model has no ReLU modules for it to act on."""
    return (
        f"{model_name} has no nn.ReLU / nn.ReLU6 modules (its activations are functional, "
        f"like F.relu, or of another kind, like GELU), so {_RULE_TITLES[rule]} changes "
        "nothing: this map is the plain gradient (saliency)."
    )


@contextmanager
def relu_rule(module: nn.Module, rule: Rule, model_name: str | None = None) -> Iterator[int]:
    """Apply ``rule`` to the backward pass of every ``nn.ReLU`` and ``nn.ReLU6`` in ``module``
    inside the block (Captum handles ``nn.ReLU`` only; EfficientNet-Lite and MobileNet use
    ReLU6). Yields the number of modules found; with none, a ``UserWarning`` (also handed to
    :func:`collect_notes`) says the map is the plain gradient, naming the model as
    ``model_name`` (the user's model class; ``module`` may be a stand-in for it). Functional
    relus (``F.relu`` inside a forward) and other activations keep their ordinary gradient, as
    in Captum.
    """
    function = _FUNCTIONS[rule]
    handles: list[RemovableHandle] = []
    relus = [m for m in module.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    if not relus:
        note = no_relu_note(model_name or type(module).__name__, rule)
        warnings.warn(note, stacklevel=4)
        notes = _NOTES.get()
        if notes is not None and note not in notes:
            notes.append(note)
    try:
        for relu in relus:
            pending: list[torch.Tensor] = []

            def keep_input(
                m: nn.Module, inputs: tuple[Any, ...], _p: list[torch.Tensor] = pending
            ) -> tuple[Any, ...] | None:
                _p.append(inputs[0])
                if getattr(m, "inplace", False):  # it would overwrite the kept pre-activation
                    return (inputs[0].clone(), *inputs[1:])
                return None

            def replace_output(
                _m: nn.Module,
                _i: object,
                _o: object,
                _p: list[torch.Tensor] = pending,
                _u: float = _upper(relu),
            ) -> torch.Tensor:
                return function.apply(_p.pop(), _u)

            handles.append(relu.register_forward_pre_hook(keep_input))
            handles.append(relu.register_forward_hook(replace_output))
        yield len(relus)
    finally:
        for handle in handles:
            handle.remove()
