"""Per-unit moments of one per-image quantity, and per-class means of the pooled response.

Both keep float64 sums, so merging shards in any order changes a sum only by float64
rounding (relative 1e-15 per addition), and the per-image values they add are computed from
each image's own map (see ``LayerBatch.means``), so they do not depend on the batching.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ._batch import StateDict, check_same, read_int, read_tensor, scalar


class Moments:
    """Count, sum, sum of squares, minimum and maximum (float64, per unit) of one value per
    image and unit, e.g. the spatial mean or the spatial maximum of each map."""

    def __init__(self, units: int, *, device: str | torch.device = "cpu") -> None:
        self.units, self.device = int(units), torch.device(device)
        zeros = torch.zeros(self.units, dtype=torch.float64, device=self.device)
        self.count = 0
        self.sum, self.sumsq = zeros.clone(), zeros.clone()
        self.low = torch.full_like(zeros, float("inf"))
        self.high = torch.full_like(zeros, float("-inf"))

    def update(self, values: torch.Tensor) -> None:
        """Add one batch of per-image values (B, C)."""
        if values.ndim != 2 or values.shape[1] != self.units:
            raise ValueError(f"expected values (B, {self.units}); got {tuple(values.shape)}.")
        if values.shape[0] == 0:
            return
        v = values.to(device=self.device, dtype=torch.float64)
        self.count += int(v.shape[0])
        self.sum += v.sum(dim=0)
        self.sumsq += (v * v).sum(dim=0)
        self.low = torch.minimum(self.low, v.amin(dim=0))
        self.high = torch.maximum(self.high, v.amax(dim=0))

    def merge(self, other: Moments) -> Moments:
        check_same("unit counts", self.units, other.units)
        self.count += other.count
        self.sum += other.sum.to(self.device)
        self.sumsq += other.sumsq.to(self.device)
        self.low = torch.minimum(self.low, other.low.to(self.device))
        self.high = torch.maximum(self.high, other.high.to(self.device))
        return self

    def mean(self) -> torch.Tensor:
        """(C,) float64; NaN before any image."""
        return self.sum / self.count if self.count else torch.full_like(self.sum, float("nan"))

    def var(self, ddof: int = 0) -> torch.Tensor:
        """(C,) float64 variance, from the sums (clamped at 0 against rounding)."""
        if self.count - ddof <= 0:
            return torch.full_like(self.sum, float("nan"))
        centred = self.sumsq - self.sum * self.sum / self.count
        return centred.clamp_min(0) / (self.count - ddof)

    def std(self, ddof: int = 0) -> torch.Tensor:
        return self.var(ddof).sqrt()

    def max(self) -> torch.Tensor:
        """(C,) the largest value seen; -inf before any image."""
        return self.high.clone()

    def min(self) -> torch.Tensor:
        return self.low.clone()

    def state_dict(self) -> StateDict:
        return {
            "count": scalar(self.count),
            "sum": self.sum.clone(),
            "sumsq": self.sumsq.clone(),
            "min": self.low.clone(),
            "max": self.high.clone(),
        }

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, object], *, device: str | torch.device = "cpu"
    ) -> Moments:
        total = state.get("sum")
        if not isinstance(total, torch.Tensor) or total.ndim != 1:
            raise ValueError("state entry 'sum' should be a (units,) tensor.")
        self = cls(int(total.shape[0]), device=device)
        shape, f64 = (self.units,), torch.float64
        self.count = read_int(state, "count")
        self.sum = read_tensor(state, "sum", shape, f64, self.device)
        self.sumsq = read_tensor(state, "sumsq", shape, f64, self.device)
        self.low = read_tensor(state, "min", shape, f64, self.device)
        self.high = read_tensor(state, "max", shape, f64, self.device)
        return self


class ClassMeans:
    """Per class and unit, the mean over the class's images of the pooled (spatial mean)
    response: float64 ``sums`` (K, C) and int64 ``counts`` (K,). Label -1 = unlabelled, not
    counted. With ``num_classes`` the table has that size from the start and a larger label
    is refused; without it, the table grows to the largest label seen + 1 (its memory grows
    with the number of classes, never with the number of images)."""

    def __init__(
        self, units: int, num_classes: int | None = None, *, device: str | torch.device = "cpu"
    ) -> None:
        if num_classes is not None and num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 or None; got {num_classes}.")
        self.units, self.device = int(units), torch.device(device)
        self.fixed = num_classes is not None
        rows = int(num_classes or 0)
        self.sums = torch.zeros(rows, self.units, dtype=torch.float64, device=self.device)
        self.counts = torch.zeros(rows, dtype=torch.int64, device=self.device)

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])

    def update(self, pooled: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Add per-image pooled responses (B, C) with their labels (B,) (None: no labels)."""
        if labels is None:
            return
        keep = labels >= 0
        labels = labels[keep].to(device=self.device, dtype=torch.int64)
        if labels.numel() == 0:
            return
        top = int(labels.max())
        if top >= self.num_classes:
            if self.fixed:
                raise ValueError(
                    f"label {top} is out of range for num_classes={self.num_classes}; pass a "
                    "larger num_classes, or None to let the table grow."
                )
            self._grow(top + 1)
        values = pooled[keep].to(device=self.device, dtype=torch.float64)
        self.sums.index_add_(0, labels, values)
        self.counts += torch.bincount(labels, minlength=self.num_classes)

    def _grow(self, rows: int) -> None:
        extra = rows - self.num_classes
        self.sums = torch.cat([self.sums, self.sums.new_zeros(extra, self.units)])
        self.counts = torch.cat([self.counts, self.counts.new_zeros(extra)])

    def merge(self, other: ClassMeans) -> ClassMeans:
        check_same("unit counts", self.units, other.units)
        if self.fixed and other.num_classes > self.num_classes:
            check_same("num_classes", self.num_classes, other.num_classes)
        if other.num_classes > self.num_classes:
            self._grow(other.num_classes)
        rows = other.num_classes
        self.sums[:rows] += other.sums.to(self.device)
        self.counts[:rows] += other.counts.to(self.device)
        return self

    def means(self) -> torch.Tensor:
        """(K, C) float64: mean pooled response per class; NaN rows for classes without
        images."""
        return self.sums / self.counts[:, None]

    def state_dict(self) -> StateDict:
        return {
            "fixed": scalar(int(self.fixed)),
            "sums": self.sums.clone(),
            "counts": self.counts.clone(),
        }

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, object], *, device: str | torch.device = "cpu"
    ) -> ClassMeans:
        sums = state.get("sums")
        if not isinstance(sums, torch.Tensor) or sums.ndim != 2:
            raise ValueError("state entry 'sums' should be a (classes, units) tensor.")
        rows, units = int(sums.shape[0]), int(sums.shape[1])
        self = cls(units, rows if read_int(state, "fixed") else None, device=device)
        self.sums = read_tensor(state, "sums", (rows, units), torch.float64, self.device)
        self.counts = read_tensor(state, "counts", (rows,), torch.int64, self.device)
        return self
