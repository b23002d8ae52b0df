"""Per-unit histogram of one value per image (the spatial maximum), exact and mergeable without
knowing the range in advance.

Each unit has ``BINS`` bins of width ``2**e`` centred on zero: bin ``i`` holds the values in
``[(i - HALF) * 2**e, (i - HALF + 1) * 2**e)``. ``e`` is the smallest exponent for which every
value seen satisfies ``|v| < HALF * 2**e``; when a larger value arrives, ``e`` grows and
neighbouring bins are added together (a bin of width ``2**e`` splits exactly into bins of width
``2**(e-1)``). Dividing by a power of two and flooring is exact in floating point, so the bin of
a value does not depend on when it arrived: any sharding and order of the images gives the same
counts and the same ``e`` (the one the largest ``|v|`` needs).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ._batch import StateDict, check_same, read_tensor

BINS = 128
HALF = BINS // 2
MIN_EXPONENT = -60
"""Bin width floor (2**-60): a unit that only ever outputs zero keeps the finest bins."""


class PeakHistogram:
    """``counts`` (C, BINS) int64 and ``exponent`` (C,) int64: per unit, how many images had
    their value in each bin of width ``2**exponent`` (see the module docstring)."""

    def __init__(self, units: int, *, device: str | torch.device = "cpu") -> None:
        self.units, self.device = int(units), torch.device(device)
        self.counts = torch.zeros(self.units, BINS, dtype=torch.int64, device=self.device)
        self.exponent = torch.full(
            (self.units,), MIN_EXPONENT, dtype=torch.int64, device=self.device
        )

    def update(self, values: torch.Tensor) -> None:
        """Add one batch of per-image values (B, C) (finite)."""
        if values.ndim != 2 or values.shape[1] != self.units:
            raise ValueError(f"expected values (B, {self.units}); got {tuple(values.shape)}.")
        if values.shape[0] == 0:
            return
        v = values.to(device=self.device, dtype=torch.float64)
        # |v| < 2**power exactly (frexp: |v| = mantissa * 2**power, mantissa in [0.5, 1)),
        # so |v| < HALF * 2**(power - log2(HALF)).
        _, power = torch.frexp(v.abs().amax(dim=0))
        self._coarsen_to(torch.maximum(self.exponent, power.long() - (HALF.bit_length() - 1)))
        scaled = torch.ldexp(v, -self.exponent[None, :].to(torch.float64))
        index = (scaled.floor().long() + HALF).clamp_(0, BINS - 1)
        self.counts.scatter_add_(1, index.T, torch.ones_like(index.T))

    def _coarsen_to(self, exponent: torch.Tensor) -> None:
        """Widen each unit's bins to ``2**exponent`` (>= the current width)."""
        shift = exponent - self.exponent
        if not bool((shift > 0).any()):
            return
        offsets = torch.arange(BINS, device=self.device) - HALF  # (BINS,)
        # floor((i - HALF) / 2**shift) + HALF: the arithmetic right shift floors negatives too
        target = torch.bitwise_right_shift(offsets[None, :], shift.clamp(max=62)[:, None]) + HALF
        counts = torch.zeros_like(self.counts)
        counts.scatter_add_(1, target, self.counts)
        self.counts, self.exponent = counts, exponent.clone()

    def merge(self, other: PeakHistogram) -> PeakHistogram:
        check_same("unit counts", self.units, other.units)
        theirs = PeakHistogram(self.units, device=self.device)
        theirs.counts, theirs.exponent = (
            other.counts.to(self.device),
            other.exponent.to(self.device),
        )
        common = torch.maximum(self.exponent, theirs.exponent)
        self._coarsen_to(common)
        theirs._coarsen_to(common)
        self.counts = self.counts + theirs.counts
        return self

    def bins(self, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit's non-empty range: ``edges`` (n + 1,) float64 and ``counts`` (n,) int64,
        from the first to the last non-empty bin (empty: no image yet)."""
        counts = self.counts[unit]
        filled = counts.nonzero().flatten()
        if filled.numel() == 0:
            return torch.zeros(0, dtype=torch.float64), counts[:0].clone()
        first, last = int(filled[0]), int(filled[-1])
        width = 2.0 ** int(self.exponent[unit])
        edges = (torch.arange(first, last + 2, dtype=torch.float64) - HALF) * width
        return edges, counts[first : last + 1].clone()

    def state_dict(self) -> StateDict:
        return {"counts": self.counts.clone(), "exponent": self.exponent.clone()}

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, object], *, device: str | torch.device = "cpu"
    ) -> PeakHistogram:
        exponent = state.get("exponent")
        if not isinstance(exponent, torch.Tensor) or exponent.ndim != 1:
            raise ValueError("state entry 'exponent' should be a (units,) tensor.")
        self = cls(int(exponent.shape[0]), device=device)
        self.counts = read_tensor(state, "counts", (self.units, BINS), torch.int64, self.device)
        self.exponent = read_tensor(state, "exponent", (self.units,), torch.int64, self.device)
        return self
