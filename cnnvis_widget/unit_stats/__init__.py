"""Mergeable per-unit statistics of a layer's activations, for one streaming pass over a data set.

Pure torch: no model, no hooks. Feed each batch's activations with the images' dataset
indices (and labels); merge shards; save the state. See docs/unit_stats.md.

    stats = UnitStats(units=256)
    for acts, indices, labels in batches:          # acts (B, 256, h, w)
        stats.update(acts, indices, labels)
    stats.topk.examples(7)                         # [(max, dataset index, y, x), ...]
    stats.thresholds()                             # (256,) upper 0.5% quantile per unit
    torch.save(stats.state_dict(), "layer3.pt")
"""

from __future__ import annotations

from ._batch import LayerBatch, layer_batch, state_nbytes
from .container import UnitStats
from .histogram import PeakHistogram
from .moments import ClassMeans, Moments
from .quantile import UpperQuantile, position_levels
from .topk import TopK

__all__ = [
    "ClassMeans",
    "LayerBatch",
    "Moments",
    "PeakHistogram",
    "TopK",
    "UnitStats",
    "UpperQuantile",
    "layer_batch",
    "position_levels",
    "state_nbytes",
]
