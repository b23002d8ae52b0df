"""Modified backward rules for ReLU modules (guided backprop, DeconvNet), hook-based but
in-place-safe and always cleaned up.

For every call of an ``nn.ReLU`` module, a forward pre-hook keeps the pre-activation and hands
the module a copy (so an in-place ReLU cannot overwrite it); the forward hook then replaces the
module's output with ``relu(pre)`` computed by a custom autograd function whose backward
applies the rule. Reused modules are handled call by call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

Rule = Literal["guided", "deconvnet"]


class _GuidedReLU(torch.autograd.Function):
    """relu forward; backward relu(g) * [pre > 0] (Springenberg et al. 2015)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor) -> torch.Tensor:
        positive = pre > 0
        ctx.save_for_backward(positive)
        return pre * positive

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (positive,) = ctx.saved_tensors
        return grad.clamp(min=0) * positive


class _DeconvReLU(torch.autograd.Function):
    """relu forward; backward relu(g), ignoring the forward mask (Zeiler & Fergus 2014)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor) -> torch.Tensor:
        return pre.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


_FUNCTIONS = {"guided": _GuidedReLU, "deconvnet": _DeconvReLU}


@contextmanager
def relu_rule(module: nn.Module, rule: Rule) -> Iterator[int]:
    """Apply ``rule`` to the backward pass of every ``nn.ReLU`` in ``module`` inside the block.

    Yields the number of ReLU modules found. Functional relus (``F.relu`` inside a forward)
    and other activations keep their ordinary gradient, as in Captum.
    """
    function = _FUNCTIONS[rule]
    handles: list[RemovableHandle] = []
    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
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
                _m: nn.Module, _i: object, _o: object, _p: list[torch.Tensor] = pending
            ) -> torch.Tensor:
                return function.apply(_p.pop())

            handles.append(relu.register_forward_pre_hook(keep_input))
            handles.append(relu.register_forward_hook(replace_output))
        yield len(relus)
    finally:
        for handle in handles:
            handle.remove()
