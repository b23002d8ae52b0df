"""Per-unit upper quantile over all positions of all images, in bounded memory, mergeable.

Network Dissection thresholds unit k at T_k with P(a_k > T_k) = q (q = 0.005) over every
position of every image. This module estimates T_k in one pass with memory fixed up front.

Method: exact top values of a hash-coordinated sample (docs/unit_stats.md has the proof)
------------------------------------------------------------------------------------------
Every position (dataset index i, y, x) gets a 32-bit hash of (i, y, x, seed) and from it a
*level* l = number of leading zero bits (P(l >= j) = 2^-j). The sample at rate 2^-j, S(j), is
the set of positions with level >= j: the same positions whatever the batching, order or
sharding, and nested (S(j+1) is inside S(j)). The state keeps, per unit:

- ``counts``: how many positions have each level (exact; shared by all units);
- the retained values: every value whose rank (largest first) inside S(its own level) is
  < R (``rank_cap``). So for every level l >= j, the top R values of S(l) are retained,
  whatever order the data came in (a value that falls to rank >= R in S(its level) can never
  climb back, so dropping it is final and safe).

The rate level j is the smallest level (never decreasing) with
  (a) q * (|S(j)| - 1) + 2 <= R            (the quantile of S(j) is among its top R values)
  (b) sum over l >= j of min(R, count[l]) <= capacity   (a hard bound on what is retained).
Both depend only on ``counts``, are monotone in the data, so j is a function of the multiset
of positions. The answer is numpy.quantile(values of S(j), 1 - q) (linear interpolation),
read off the retained values: identical for any split into shards and any order.

Guarantee (n = positions seen per unit, R = ``rank_cap``, q = 0.005 unless said otherwise):

- Exact regime: while q * (n - 1) + 2 <= R, j = 0 and the result EQUALS numpy.quantile(all
  values, 1 - q), bit for bit (rank error 0). R = 1024: the first 204,401 positions (1,042
  images of 14x14, 16 of 112x112). (Rule (b) holds there too unless the hash levels are
  wildly skewed: levels 8 to 10 at 2.5 to 10 times their expected counts; ``exact`` says.)
- Sampled regime: the exact sample quantile of S(j), whose expected tail count
  mu = q * n * 2^-j is about (R - 2) / 2 .. R - 2 (the rate halves when it would pass
  R - 2). Modelling the hash as a random function (data not chosen after the seed), per
  unit the returned t satisfies
      #{a > t} <= (1 + delta) q n + 1   and   #{a >= t} >= (1 - delta) q n - 1
  except with probability <= 2 exp(-(delta mu - 1)^2 / (2 mu (1 + delta + q)
  + 2 delta mu / 3 + 4)) at a given rate (Bernstein; the rule picks one of two adjacent
  rates with overwhelming probability, so at most twice that in all). R = 1024 (mu >= 511):
  delta = 0.28 at probability 1e-6, typical |error| ~ 1 / sqrt(mu) = 3-4.5% of q n.
  ``rank_error_bound(p)`` gives delta for the current state (0 while exact).

Memory per unit, fixed at construction: capacity = R * (ceil(log2(1/q)) + 3) float32 values
with int8 levels (R = 1024, q = 0.005: 11,264 values, 55 KiB) in the state, and a staging
area of STAGE * R values (10 KiB) outside it. The rule (b) makes the capacity a hard bound.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import torch

from ._batch import (
    LayerBatch,
    StateDict,
    check_same,
    layer_batch,
    read_float,
    read_int,
    read_tensor,
    scalar,
)

LEVELS = 33  # hash levels 0..32 (32: hash == 0)
STAGE = 2  # staging area: STAGE * rank_cap values per unit, outside the state
_M32 = 0xFFFFFFFF


def _mul32(a: torch.Tensor, c: int) -> torch.Tensor:
    """(a * c) mod 2^32 for int64 ``a`` in [0, 2^32), without int64 overflow."""
    low = a * (c & 0xFFFF)
    high = ((a * (c >> 16)) & 0xFFFF) << 16
    return (low + high) & _M32


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """lowbias32 (C. Wellons' 32-bit integer hash) on int64 tensors holding uint32 values."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7FEB352D)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846CA68B)
    return h ^ (h >> 16)


def position_levels(indices: torch.Tensor, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(B, height * width) int8 hash levels of the positions (index, y, x), row-major.

    A function of (index, y, x, seed) only: the map's size enters only through the (y, x)
    it enumerates."""
    i = indices.to(torch.int64)
    s = seed & _M32
    per_image = _mix32(_mix32((i & _M32) ^ s) ^ ((i >> 32) & _M32))  # (B,)
    per_position = _position_hashes(height, width, s, indices.device)  # (hw,)
    h = _mix32(per_image[:, None] ^ per_position[None, :])
    bits = torch.frexp(h.to(torch.float64)).exponent  # bit length; 0 for h == 0
    return (32 - bits).to(torch.int8)


@functools.lru_cache(maxsize=64)
def _position_hashes(height: int, width: int, seed: int, device: torch.device) -> torch.Tensor:
    ys = torch.arange(height, device=device, dtype=torch.int64).repeat_interleave(width)
    xs = torch.arange(width, device=device, dtype=torch.int64).repeat(height)
    salt = _mix32(torch.tensor(seed ^ 0x9E3779B9, device=device))
    return _mix32(_mix32(ys ^ salt) ^ xs)


class UpperQuantile:
    """Per unit, the upper-q quantile (numpy.quantile(values, 1 - q), linear) over every
    position of every image, in fixed memory; exact while q * (n - 1) + 2 <= ``rank_cap``,
    then the exact quantile of a hash-coordinated sample with a stated rank error. The module
    docstring and docs/unit_stats.md state the guarantee and its proof.

    Memory per unit: ``capacity`` = rank_cap * (ceil(log2(1 / q)) + 3) retained float32
    values with their int8 levels (R = 1024, q = 0.005: 11,264 values, 55 KiB), plus a staging
    area of STAGE * rank_cap values between compactions (not part of the state). Values are
    kept as float32 (float64 activations are rounded to float32 first).
    """

    def __init__(
        self,
        units: int,
        q: float = 0.005,
        *,
        rank_cap: int = 1024,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), the upper tail's fraction; got {q}.")
        if rank_cap < 8:
            raise ValueError(f"rank_cap must be >= 8; got {rank_cap}.")
        self.units, self.q, self.rank_cap = int(units), float(q), int(rank_cap)
        self.seed, self.device = int(seed) & _M32, torch.device(device)
        self.capacity = self.rank_cap * (math.ceil(math.log2(1.0 / self.q)) + 3)
        self.level = 0  # j: the sample is S(j), positions with level >= j
        self.counts = torch.zeros(LEVELS, dtype=torch.int64, device=self.device)
        self.values, self.levels = self._empty(self.capacity)
        # new values wait in a staging area until it is full (fewer compactions)
        self.stage_size = STAGE * self.rank_cap
        self.staged_values, self.staged_levels = self._empty(self.stage_size)
        self.staged = torch.zeros(self.units, dtype=torch.int64, device=self.device)
        # a new value of level l can enter only if it beats floors[:, l] (the R-th largest
        # retained value of S(l) at the last compaction; -inf when S(l) held < R values)
        self.floors = torch.full(
            (self.units, LEVELS + 1), float("-inf"), dtype=torch.float32, device=self.device
        )
        self.floors[:, LEVELS] = float("inf")  # the padding's level
        self.compacted_at = 0  # the rate level of the last compaction
        self.filled = torch.zeros(self.units, dtype=torch.int64, device=self.device)

    def _settle(self) -> None:
        """Compact when values are staged or the rate moved since the last compaction, so
        the retained values are exactly the rule's set, sorted largest first."""
        if self.compacted_at != self.level or int(self.staged.max()) > 0:
            self._compact()

    def _empty(self, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.units, columns)
        return (
            torch.full(shape, float("-inf"), dtype=torch.float32, device=self.device),
            torch.full(shape, -1, dtype=torch.int8, device=self.device),
        )

    # --- sizes of the samples, from the exact level counts

    def _suffix(self) -> list[int]:
        """|S(l)| for l = 0..LEVELS (the last one: 0)."""
        counts = self.counts.tolist()
        out = [0] * (LEVELS + 1)
        for level in range(LEVELS - 1, -1, -1):
            out[level] = out[level + 1] + counts[level]
        return out

    def _choose_level(self) -> None:
        counts, sizes = self.counts.tolist(), self._suffix()
        bounded = [0] * (LEVELS + 1)  # sum over l' >= l of min(R, count[l'])
        for level in range(LEVELS - 1, -1, -1):
            bounded[level] = bounded[level + 1] + min(self.rank_cap, counts[level])
        j = self.level
        while j < LEVELS and not (
            self.q * (sizes[j] - 1) + 2 <= self.rank_cap and bounded[j] <= self.capacity
        ):
            j += 1
        self.level = j

    @property
    def positions(self) -> int:
        """n: positions seen (per unit)."""
        return int(self.counts.sum())

    @property
    def sample_size(self) -> int:
        """|S(j)|: positions in the current sample."""
        return self._suffix()[self.level]

    @property
    def rate(self) -> float:
        return 2.0**-self.level

    @property
    def exact(self) -> bool:
        """True while the sample is every position (the answer equals numpy.quantile's)."""
        return self.level == 0

    # --- updates

    def update(self, acts: torch.Tensor, indices: torch.Tensor) -> None:
        """Add a batch: ``acts`` (B, C, h, w) or (B, C), ``indices`` (B,) dataset indices."""
        self.update_batch(layer_batch(acts, indices, units=self.units, device=self.device))

    def update_batch(self, batch: LayerBatch) -> None:
        if batch.size == 0:
            return
        levels = position_levels(batch.indices, batch.height, batch.width, self.seed)
        self.counts += torch.bincount(levels.flatten().long(), minlength=LEVELS)
        self._choose_level()
        self.floors[:, : self.level] = float("inf")
        values, value_levels = self._sample(batch, levels)  # (B, C, K), (B, K)
        size, width = value_levels.shape
        by_unit = values.permute(1, 0, 2)  # (C, B, K): a view, each unit's values in order
        if int(self.filled.max()) == 0 and int(self.staged.max()) == 0:
            # nothing kept yet (the first batch): every sampled value enters, so skip the
            # floors and hand the whole batch to the compaction (the padding as empty slots)
            pad = value_levels == LEVELS
            self._compact(
                by_unit.masked_fill(pad, float("-inf")).reshape(self.units, size * width),
                value_levels.masked_fill(pad, -1).flatten().expand(self.units, -1),
            )
            return
        # only a value above its level's floor can be among the top R of S(level)
        floors = self.floors.index_select(1, value_levels.flatten().long())
        passed = by_unit > floors.view(self.units, size, width)
        # unit-major: entering values come grouped by unit, in (image, position) order
        unit, image, column = torch.nonzero(passed, as_tuple=True)
        if unit.numel() == 0:
            return
        entering_values = by_unit[unit, image, column]
        entering_levels = value_levels[image, column]
        entering = torch.bincount(unit, minlength=self.units)
        first = torch.cumsum(entering, 0) - entering
        slot = torch.arange(unit.numel(), device=self.device) - first[unit]
        if int((self.staged + entering).max()) <= self.stage_size:
            slot = self.staged[unit] + slot
            self.staged_values[unit, slot] = entering_values
            self.staged_levels[unit, slot] = entering_levels
            self.staged += entering
            return
        extra_values, extra_levels = self._empty(int(entering.max()))
        extra_values[unit, slot] = entering_values
        extra_levels[unit, slot] = entering_levels
        self._compact(extra_values, extra_levels)

    def _sample(self, batch: LayerBatch, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's values in the current sample: (B, C, K) float32 with their levels
        (B, K), K = the most sampled positions in one image; the shorter images' lists are
        padded with level LEVELS (whose floor is +inf: never entering)."""
        maps = batch.maps.to(torch.float32)
        if self.level == 0:  # every position
            return maps, levels
        sampled = levels >= self.level
        width = int(sampled.sum(dim=1).max())
        # positions of each image, sampled ones first (in row-major order)
        order = torch.sort(sampled.to(torch.int8), dim=1, descending=True, stable=True)
        position = order.indices[:, :width]
        values = maps.gather(2, position[:, None, :].expand(-1, self.units, -1))
        chosen = levels.gather(1, position)
        chosen = torch.where(sampled.gather(1, position), chosen, LEVELS)
        return values, chosen

    def _compact(
        self, extra_values: torch.Tensor | None = None, extra_levels: torch.Tensor | None = None
    ) -> None:
        """Apply the retention rule to the retained, staged (and ``extra``) values: keep each
        value whose rank inside S(its level) is < R, sorted largest first; refresh floors.

        One stable sort of everything (torch's stable sort of floats beats merging the
        already-sorted retained values by binary search), then each level's cut by a
        cumulative count and a binary search: no loop over units, one pass per level that
        holds more than R values."""
        j, cap, sizes = self.level, self.rank_cap, self._suffix()
        staged, width = int(self.staged.max()), int(self.filled.max())
        values = [self.values[:, :width], self.staged_values[:, :staged]]
        levels = [self.levels[:, :width], self.staged_levels[:, :staged]]
        if extra_values is not None and extra_levels is not None:
            values.append(extra_values.to(torch.float32))
            levels.append(extra_levels.to(torch.int8))
        every_level = torch.cat(levels, dim=1)
        valid = every_level >= j  # values of levels below the rate leave
        every_value = torch.where(valid, torch.cat(values, dim=1), float("-inf"))
        value, order = torch.sort(every_value, dim=1, descending=True, stable=True)
        level = torch.where(valid, every_level, -1).gather(1, order)
        n = value.shape[1]
        floors = torch.full_like(self.floors, float("-inf"))
        floors[:, :j] = float("inf")
        floors[:, LEVELS] = float("inf")
        self.floors, self.compacted_at = floors, j
        if staged:
            self.staged_values.fill_(float("-inf"))
            self.staged_levels.fill_(-1)
            self.staged.zero_()
        if n == 0:
            return
        # the cut of each level l: the position of the R-th member of S(l) (n if none)
        full = next(lev for lev in range(j, LEVELS + 1) if sizes[lev] <= cap)
        cut = torch.full((self.units, LEVELS), n, dtype=torch.int64, device=self.device)
        cut[:, :j] = -1
        target = torch.full((self.units, 1), cap, dtype=torch.int32, device=self.device)
        for lev in range(j, full):
            rank = (level >= lev).cumsum(dim=1, dtype=torch.int32)  # 1-based rank in S(lev)
            at = torch.searchsorted(rank, target)[:, 0]  # first position with rank == R
            cut[:, lev] = at
            floor = value.gather(1, at.clamp_max(n - 1)[:, None])[:, 0]
            floors[:, lev] = torch.where(at < n, floor, float("-inf"))
        position = torch.arange(n, device=self.device)
        keep = (level >= 0) & (position <= cut.gather(1, level.long().clamp_min(0)))
        kept = keep.sum(dim=1)
        if int(kept.max()) > self.capacity:  # (b) makes this impossible
            raise RuntimeError("unit_stats quantile: retained values exceed the capacity")
        slot = torch.where(keep, keep.cumsum(dim=1) - 1, self.capacity)
        out_values, out_levels = self._empty(self.capacity + 1)  # + a dump slot
        out_values.scatter_(1, slot, value)
        out_levels.scatter_(1, slot, level)
        self.values = out_values[:, :-1].contiguous()
        self.levels = out_levels[:, :-1].contiguous()
        self.filled = kept

    def merge(self, other: UpperQuantile) -> UpperQuantile:
        """Combine with another shard's state (in place; returns self)."""
        for name, mine, theirs in (
            ("unit counts", self.units, other.units),
            ("q", self.q, other.q),
            ("rank_cap", self.rank_cap, other.rank_cap),
            ("seed", self.seed, other.seed),
        ):
            check_same(name, mine, theirs)
        self.counts += other.counts.to(self.device)
        self.level = max(self.level, other.level)
        self._choose_level()
        staged = int(other.staged.max())
        width = int(other.filled.max())
        extra_values = torch.cat([other.values[:, :width], other.staged_values[:, :staged]], 1)
        extra_levels = torch.cat([other.levels[:, :width], other.staged_levels[:, :staged]], 1)
        self._compact(extra_values.to(self.device), extra_levels.to(self.device))
        return self

    # --- reading

    def thresholds(self) -> torch.Tensor:
        """(C,) float64: per unit, numpy.quantile(values of the sample, 1 - q) with numpy's
        default linear interpolation; NaN before any position."""
        self._settle()
        n = self.sample_size
        if n == 0:
            return torch.full((self.units,), float("nan"), dtype=torch.float64, device=self.device)
        quantile = 1.0 - self.q
        virtual = (n - 1) * quantile  # numpy's "linear" method, operation for operation
        previous = math.floor(virtual)
        if virtual >= n - 1:
            previous = following = n - 1
        else:
            following = previous + 1
        gamma = virtual - previous
        # the retained values of S(j) are sorted largest first: ascending rank r is column n-1-r
        a = self.values[:, n - 1 - previous].to(torch.float64)
        b = self.values[:, n - 1 - following].to(torch.float64)
        diff = b - a
        return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma

    def rank_error_bound(self, failure: float = 1e-6) -> float:
        """delta such that, per unit, the returned threshold's population upper rank is
        within (1 +- delta) q n (+-1) except with probability <= ``failure`` (over the hash);
        0.0 while exact, inf when the sample is too small to bound."""
        if self.exact:
            return 0.0
        mu = self.q * self.positions * self.rate
        return _bernstein_delta(mu, self.q, failure)

    # --- state

    def state_dict(self) -> StateDict:
        self._settle()
        return {
            "q": scalar(self.q, torch.float64),
            "rank_cap": scalar(self.rank_cap),
            "seed": scalar(self.seed),
            "level": scalar(self.level),
            "counts": self.counts.clone(),
            "values": self.values.clone(),
            "levels": self.levels.clone(),
        }

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, object], *, device: str | torch.device = "cpu"
    ) -> UpperQuantile:
        values = state.get("values")
        if not isinstance(values, torch.Tensor) or values.ndim != 2:
            raise ValueError("state entry 'values' should be a (units, capacity) tensor.")
        self = cls(
            int(values.shape[0]),
            read_float(state, "q"),
            rank_cap=read_int(state, "rank_cap"),
            seed=read_int(state, "seed"),
            device=device,
        )
        shape = (self.units, self.capacity)
        self.level = read_int(state, "level")
        self.counts = read_tensor(state, "counts", (LEVELS,), torch.int64, self.device)
        self.values = read_tensor(state, "values", shape, torch.float32, self.device)
        self.levels = read_tensor(state, "levels", shape, torch.int8, self.device)
        self.filled = (self.levels >= 0).sum(dim=1)
        self._compact()  # refreshes the floors (derived, not stored)
        return self


def _bernstein_delta(mu: float, q: float, failure: float) -> float:
    """Smallest delta (bisection) with 2 exp(-(d mu - 1)^2 / (2 mu (1 + d + q) + 2 d mu / 3 + 4))
    <= failure; inf if even delta = 100 does not reach it."""
    target = math.log(2.0 / failure)

    def exponent(delta: float) -> float:
        gap = delta * mu - 1.0
        if gap <= 0:
            return 0.0
        return gap * gap / (2 * mu * (1 + delta + q) + 2 * delta * mu / 3 + 4)

    low, high = 0.0, 100.0
    if exponent(high) < target:
        return math.inf
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if exponent(mid) < target else (low, mid)
    return high
