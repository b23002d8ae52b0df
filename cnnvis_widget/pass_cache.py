"""Layer outputs kept between two dataset passes over the same images, so the second does
not run the model again: Network Dissection's tally pass reads the maps its first pass (the
unit atlas, which gives the thresholds) computed. NetDissect-Lite keeps every feature map on
disk for the same reason; here they stay in memory up to a budget, and past it the cache
empties itself and the second pass runs the model as before (the result is the same either
way: the maps are the same tensors)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

Batch = tuple[dict[str, torch.Tensor], Any, torch.Tensor]
"""One batch of a pass: each layer's output (B, C, h, w) or (B, C), the targets, the items'
dataset indices (B,)."""


class OutputCache:
    """A pass's batches (outputs moved to the CPU, targets, indices) in order, while their
    size stays within ``max_bytes``; past it, :attr:`overflowed` and nothing is kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.batches: list[Batch] = []
        self.bytes = 0
        self.overflowed = self.max_bytes <= 0
        self.setup: Any = None
        """The :class:`~cnnvis_widget.dataset_pass.PassSetup` of the pass that filled it (its
        eval view and layer call counts hold for a second pass over the same model)."""

    def keep(self, outputs: dict[str, torch.Tensor], targets: Any, indices: torch.Tensor) -> None:
        """Add one batch, or give up (and free what was kept) when it no longer fits."""
        if self.overflowed:
            return
        size = sum(t.numel() * t.element_size() for t in outputs.values()) + _target_bytes(targets)
        if self.bytes + size > self.max_bytes:
            self.batches.clear()
            self.bytes, self.overflowed = 0, True
            return
        kept = {name: t.detach().cpu() for name, t in outputs.items()}
        self.batches.append((kept, targets, indices.cpu()))
        self.bytes += size

    def covers(self, indices: Sequence[int]) -> bool:
        """Whether the kept batches are exactly the items ``indices``, in this order."""
        if self.overflowed:
            return False
        kept = [int(i) for _, _, batch_indices in self.batches for i in batch_indices]
        return kept == [int(i) for i in indices]

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)


def _target_bytes(targets: Any) -> int:
    """Memory held by a batch's targets: a label tensor, or per-item objects whose numpy
    arrays (label maps) are counted."""
    if isinstance(targets, torch.Tensor):
        return targets.numel() * targets.element_size()
    return sum(_arrays_bytes(vars(t) if hasattr(t, "__dict__") else t) for t in targets)


def _arrays_bytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_arrays_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_arrays_bytes(v) for v in value)
    return 8
