"""How to feed a user's module and read what it returns, without moving or casting it.

The module's device and floating dtype are those of its first parameter (CPU and float32
when it has none); a model input ``(N, C, H, W)`` is moved and cast to match; the logits
``(N, classes)`` are taken out of whatever the forward pass returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a parameterless module)."""
    for parameter in module.parameters():
        return parameter.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def module_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of the module's first floating parameter (float32 without one)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def to_model_input(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``x`` on the module's device and in its floating dtype (a float64 or float16 model gets
    a float64 or float16 input); the module itself is never moved or cast."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), x.dtype)
    return x.to(device=module_device(module), dtype=dtype)


def logits_of(output: object) -> torch.Tensor:
    """The logits tensor from a model's output (tensors pass; ``.logits`` or the first item of
    a tuple is taken from structured outputs such as GoogLeNet's in training mode)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"the model returned {type(output).__name__}; expected a logits tensor (N, classes). "
        "Wrap the model so its forward returns the logits tensor."
    )
