"""Per unit, the k dataset images whose map has the largest maximum, with where that maximum is.

The order is total, so the result does not depend on how the dataset was split or ordered:
a larger maximum first; between equal maxima the LOWER dataset index first; inside one map
the argmax is the first position in row-major order (smallest y, then smallest x).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ._batch import (
    LayerBatch,
    StateDict,
    check_same,
    layer_batch,
    read_int,
    read_tensor,
    scalar,
)

_LAST = torch.iinfo(torch.int64).max  # sorts an empty slot after every real index


class TopK:
    """The top-k images of every unit (channel) of one layer, updated batch by batch.

    State, all (C, k): ``values`` (float64; -inf in empty slots), ``indices`` (int64 dataset
    index; -1 in empty slots), ``ys`` and ``xs`` (int64 argmax row and column; -1 when empty).
    Slots are sorted: largest maximum first, lower dataset index first among equal maxima.

    Each update takes the per-image spatial maxima (B, C) of the batch, sorts them together
    with the running top-k (C, k + B) by (maximum descending, index ascending) with two
    stable sorts over all channels at once, and keeps the first k. ``torch.topk`` is not
    used for the selection because its order among equal values is unspecified; the two
    sorts cost the same at these sizes. Argmax locations are computed only for the images
    that enter the top-k, from their maps alone.
    """

    def __init__(self, units: int, k: int = 16, *, device: str | torch.device = "cpu") -> None:
        if units < 1 or k < 1:
            raise ValueError(f"units and k must be >= 1; got units={units}, k={k}.")
        self.units, self.k, self.device = int(units), int(k), torch.device(device)
        shape = (self.units, self.k)
        self.values = torch.full(shape, float("-inf"), dtype=torch.float64, device=self.device)
        self.indices = torch.full(shape, -1, dtype=torch.int64, device=self.device)
        self.ys = torch.full(shape, -1, dtype=torch.int64, device=self.device)
        self.xs = torch.full(shape, -1, dtype=torch.int64, device=self.device)

    # --- updates

    def update(self, acts: torch.Tensor, indices: torch.Tensor) -> None:
        """Add a batch: ``acts`` (B, C, h, w) or (B, C), ``indices`` (B,) dataset indices."""
        self.update_batch(layer_batch(acts, indices, units=self.units, device=self.device))

    def update_batch(self, batch: LayerBatch) -> None:
        if batch.size == 0:
            return
        units, size = self.units, batch.size
        new_values = batch.maxima.to(torch.float64).T  # (C, B)
        source = torch.arange(size, device=self.device).expand(units, size)
        values = torch.cat([self.values, new_values], dim=1)
        indices = torch.cat([self.indices, batch.indices.expand(units, size)], dim=1)
        sources = torch.cat([torch.full_like(self.indices, -1), source], dim=1)
        ys = torch.cat([self.ys, torch.full_like(source, -1)], dim=1)
        xs = torch.cat([self.xs, torch.full_like(source, -1)], dim=1)
        order = _order(values, indices)[:, : self.k]
        self.values, self.indices = values.gather(1, order), indices.gather(1, order)
        self.ys, self.xs = ys.gather(1, order), xs.gather(1, order)
        # argmax (first in row-major order) of the maps that entered, and only of those
        sources = sources.gather(1, order)
        unit, slot = torch.nonzero(sources >= 0, as_tuple=True)
        if unit.numel():
            flat = batch.maps[sources[unit, slot], unit].argmax(dim=1)  # first maximum
            self.ys[unit, slot] = flat // batch.width
            self.xs[unit, slot] = flat % batch.width

    def merge(self, other: TopK) -> TopK:
        """Combine with another shard's top-k (in place; returns self)."""
        check_same("unit counts", self.units, other.units)
        check_same("k", self.k, other.k)
        values = torch.cat([self.values, other.values.to(self.device)], dim=1)
        indices = torch.cat([self.indices, other.indices.to(self.device)], dim=1)
        ys = torch.cat([self.ys, other.ys.to(self.device)], dim=1)
        xs = torch.cat([self.xs, other.xs.to(self.device)], dim=1)
        order = _order(values, indices)[:, : self.k]
        self.values, self.indices = values.gather(1, order), indices.gather(1, order)
        self.ys, self.xs = ys.gather(1, order), xs.gather(1, order)
        return self

    # --- reading

    def filled(self) -> int:
        """How many slots hold an image (min(k, images seen))."""
        return int((self.indices[0] >= 0).sum()) if self.units else 0

    def examples(self, unit: int) -> list[tuple[float, int, int, int]]:
        """The unit's top images as (maximum, dataset index, y, x), best first."""
        n = self.filled()
        rows = zip(
            self.values[unit, :n].tolist(),
            self.indices[unit, :n].tolist(),
            self.ys[unit, :n].tolist(),
            self.xs[unit, :n].tolist(),
            strict=True,
        )
        return [(float(v), int(i), int(y), int(x)) for v, i, y, x in rows]

    # --- state

    def state_dict(self) -> StateDict:
        return {
            "k": scalar(self.k),
            "values": self.values.clone(),
            "indices": self.indices.clone(),
            "ys": self.ys.clone(),
            "xs": self.xs.clone(),
        }

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, object], *, device: str | torch.device = "cpu"
    ) -> TopK:
        k = read_int(state, "k")
        values = state.get("values")
        if not isinstance(values, torch.Tensor) or values.ndim != 2:
            raise ValueError("state entry 'values' should be a (units, k) tensor.")
        self = cls(int(values.shape[0]), k, device=device)
        shape = (self.units, self.k)
        self.values = read_tensor(state, "values", shape, torch.float64, self.device)
        self.indices = read_tensor(state, "indices", shape, torch.int64, self.device)
        self.ys = read_tensor(state, "ys", shape, torch.int64, self.device)
        self.xs = read_tensor(state, "xs", shape, torch.int64, self.device)
        return self


def _order(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Column order of each row by (value descending, dataset index ascending), empty slots
    (index -1) after all images with the same value: two stable sorts."""
    key = torch.where(indices < 0, torch.full_like(indices, _LAST), indices)
    by_index = torch.sort(key, dim=1, stable=True).indices
    by_value = torch.sort(values.gather(1, by_index), dim=1, descending=True, stable=True).indices
    return by_index.gather(1, by_value)
