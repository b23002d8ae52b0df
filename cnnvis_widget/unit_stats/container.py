"""UnitStats: every per-unit statistic of one layer, updated together from one batch."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ._batch import StateDict, check_same, layer_batch, prefixed, read_int, scalar, sub_state
from .histogram import PeakHistogram
from .moments import ClassMeans, Moments
from .quantile import UpperQuantile
from .topk import TopK

FORMAT = 2  # bumped when the state dict's layout changes


class UnitStats:
    """Streaming, mergeable per-unit statistics of one layer's activations.

    ``update(acts, indices, labels=None)`` takes one batch: activations (B, C, h, w) or
    (B, C), the images' dataset indices (B,) and optionally their labels (B,) (-1 =
    unlabelled). The activations are reduced and dropped; the state has a fixed size (the
    class table grows only with the number of classes). ``merge(other)`` makes the state of
    the union of two shards. Per unit (channel):

    - ``topk``: the ``k`` images with the largest spatial maximum, their dataset indices and
      argmax (y, x) (:class:`TopK`; identical for any sharding and order);
    - ``pooled`` / ``peak``: count, float64 sum and sum of squares, min and max of each
      image's spatial mean / spatial maximum (:class:`Moments`);
    - ``classes``: mean pooled response per class (:class:`ClassMeans`);
    - ``histogram``: how many images had their spatial maximum in each bin, exact for any
      sharding (:class:`PeakHistogram`);
    - ``quantile``: the upper-``q`` quantile over every position of every image
      (:class:`UpperQuantile`; exact while small, then a stated rank error).

    ``state_dict()`` holds only tensors (numbers as 0-d tensors), so it saves with
    ``torch.save`` (and loads with ``torch.load(..., weights_only=True)``) or
    ``safetensors.torch.save_file``; ``UnitStats.from_state_dict`` rebuilds it.
    """

    def __init__(
        self,
        units: int,
        *,
        k: int = 16,
        q: float = 0.005,
        rank_cap: int = 1024,
        num_classes: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if units < 1:
            raise ValueError(f"units must be >= 1 (the layer's channel count); got {units}.")
        self.units, self.device = int(units), torch.device(device)
        self.images = 0
        self.topk = TopK(self.units, k, device=self.device)
        self.pooled = Moments(self.units, device=self.device)
        self.peak = Moments(self.units, device=self.device)
        self.classes = ClassMeans(self.units, num_classes, device=self.device)
        self.histogram = PeakHistogram(self.units, device=self.device)
        self.quantile = UpperQuantile(
            self.units, q, rank_cap=rank_cap, seed=seed, device=self.device
        )

    def update(
        self,
        acts: torch.Tensor,
        indices: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> None:
        """Add one batch (see the class docstring); the activations are not kept."""
        batch = layer_batch(acts, indices, labels, units=self.units, device=self.device)
        if batch.size == 0:
            return
        self.images += batch.size
        self.topk.update_batch(batch)
        self.pooled.update(batch.means)
        self.peak.update(batch.maxima)
        self.classes.update(batch.means, batch.labels)
        self.histogram.update(batch.maxima)
        self.quantile.update_batch(batch)

    def merge(self, other: UnitStats) -> UnitStats:
        """Fold another shard's statistics into these (in place; returns self)."""
        # every check first: a refused merge changes nothing
        check_same("unit counts", self.units, other.units)
        check_same("k", self.topk.k, other.topk.k)
        for name in ("q", "rank_cap", "seed"):
            check_same(name, getattr(self.quantile, name), getattr(other.quantile, name))
        if self.classes.fixed and other.classes.num_classes > self.classes.num_classes:
            check_same("num_classes", self.classes.num_classes, other.classes.num_classes)
        self.images += other.images
        self.topk.merge(other.topk)
        self.pooled.merge(other.pooled)
        self.peak.merge(other.peak)
        self.classes.merge(other.classes)
        self.histogram.merge(other.histogram)
        self.quantile.merge(other.quantile)
        return self

    def thresholds(self) -> torch.Tensor:
        """(C,) float64: the per-unit upper-q quantile (Network Dissection's T_k)."""
        return self.quantile.thresholds()

    def state_dict(self) -> StateDict:
        state: StateDict = {"format": scalar(FORMAT), "images": scalar(self.images)}
        for name in ("topk", "pooled", "peak", "classes", "histogram", "quantile"):
            state.update(prefixed(name, getattr(self, name).state_dict()))
        return state

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, object], *, device: str | torch.device = "cpu"
    ) -> UnitStats:
        version = read_int(state, "format")
        if version != FORMAT:
            raise ValueError(
                f"this state has format {version}; this version of cnnvis_widget reads "
                f"format {FORMAT}. Recompute the statistics."
            )
        topk = TopK.from_state_dict(sub_state(state, "topk"), device=device)
        self = cls.__new__(cls)
        self.units, self.device = topk.units, torch.device(device)
        self.images = read_int(state, "images")
        self.topk = topk
        self.pooled = Moments.from_state_dict(sub_state(state, "pooled"), device=device)
        self.peak = Moments.from_state_dict(sub_state(state, "peak"), device=device)
        self.classes = ClassMeans.from_state_dict(sub_state(state, "classes"), device=device)
        self.histogram = PeakHistogram.from_state_dict(sub_state(state, "histogram"), device=device)
        self.quantile = UpperQuantile.from_state_dict(sub_state(state, "quantile"), device=device)
        for part in (self.pooled, self.peak, self.classes, self.histogram, self.quantile):
            check_same("unit counts", self.units, part.units)
        return self
