"""Fingerprints that tie a saved dataset pass to the model and the data it was computed on, so a
stale result is refused instead of silently reused."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

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


class IndexedItems(Protocol):
    """A data set's items prepared for the model: ``items[i]`` is (input, target, index)."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any, int]: ...


SAMPLED_ITEMS = 9
"""Items of a data set whose model input and label enter its fingerprint: the first, the
last, and evenly spaced ones between."""


def data_fingerprint(data: Any, items: IndexedItems) -> str:
    """SHA-256 (hex) of the data set's type and length, its file list when it has one
    (``.paths``), and, for :data:`SAMPLED_ITEMS` evenly spaced items (the first and the last
    among them), the model input and the int label. ``items`` are ``data``'s items prepared
    for the model (:class:`~cnnvis_widget.dataset_pass.PreparedItems`: (input, target,
    index)). A change of length, files, or of a sampled image or label changes it; a change
    elsewhere in a large set is not seen (reading every item would cost a pass)."""
    total = len(data)
    digest = hashlib.sha256(f"{type(data).__qualname__}:{total};".encode())
    for path in getattr(data, "paths", None) or ():
        digest.update(f"{path};".encode())
    if total == 0:
        return digest.hexdigest()
    picks = sorted({round(i * (total - 1) / (SAMPLED_ITEMS - 1)) for i in range(SAMPLED_ITEMS)})
    for index in picks:
        x, target, _ = items[index]
        digest.update(x.detach().float().cpu().contiguous().numpy().tobytes())
        if isinstance(target, int):
            digest.update(f"label {target};".encode())
    return digest.hexdigest()


def same_data(fingerprint: str, data: Any, preprocess: Any) -> bool:
    """Whether ``data``, prepared with ``preprocess``, has the data ``fingerprint``."""
    from ..dataset_pass import PreparedItems  # the pass imports this module

    return fingerprint == data_fingerprint(data, PreparedItems(data, preprocess))
