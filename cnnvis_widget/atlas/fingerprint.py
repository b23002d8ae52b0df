"""Fingerprints that tie a saved dataset pass to the model and the data it was computed on, so a
stale result is refused instead of silently reused."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn


def model_fingerprint(module: nn.Module) -> str:
    """SHA-256 (hex) of the module's class name and every parameter and buffer (name, dtype,
    shape, values): any change of a weight or a batch-norm statistic changes it."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        values = tensor.detach().cpu().contiguous()
        if values.dtype == torch.bfloat16:
            values = values.view(torch.int16)  # numpy has no bfloat16: hash the raw bits
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(data: Any, first: torch.Tensor, last: torch.Tensor) -> str:
    """SHA-256 (hex) of the data set's type and length, its file list when it has one
    (``.paths``), and the model inputs of its first and last items (``first`` / ``last``)."""
    digest = hashlib.sha256(f"{type(data).__qualname__}:{len(data)};".encode())
    for path in getattr(data, "paths", None) or ():
        digest.update(f"{path};".encode())
    for item in (first, last):
        digest.update(item.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
