"""Network Dissection's IoU tally: for every unit of a layer and every concept, the dataset sums
whose ratio is the unit's IoU with the concept, streamed batch by batch and mergeable.

For unit ``u`` with threshold ``T_u`` (its upper-``q`` quantile over all positions of all
images), its mask on an image is ``M_u = upsample(A_u) > T_u`` at the labels' resolution. Over
the data set::

    I[u, c] = sum_x |M_u(x) & L_c(x)|                   (intersection)
    A[u, k] = sum over images annotated for category k of |M_u(x)|
    P[c]    = sum_x |L_c(x)|                            (the concept's pixels)
    IoU[u, c] = I[u, c] / (A[u, category(c)] + P[c] - I[u, c])

The union counts a unit's mask only on some images, because a Broden image is labelled for
some categories only. Which images, ``union``:

- ``"lite"`` (default, NetDissect-Lite's ``tally_job``): those where the mask covers at least one
  pixel labelled with a concept of the category (any whole-image label of the category counts
  as covering every pixel);
- ``"annotated"``: every image annotated for the category (holding a label map or a
  whole-image label of it), whatever the mask covers. The paper's text reads this way; the
  two agree on data where every image is fully labelled for every category.

A whole-image label is a mask covering every pixel. All sums are int64 pixel counts: shards
merge by adding, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.concept_format import ConceptLabels, ConceptTable
from ..unit_stats._batch import StateDict, check_same, read_tensor
from .anchors import FieldAnchors, anchored_resize

Upsample = Literal["bilinear", "nearest", "receptive_field"]
UnionRule = Literal["lite", "annotated"]


def unit_masks(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    size: tuple[int, int],
    upsample: Upsample = "bilinear",
    anchors: FieldAnchors | None = None,
) -> torch.Tensor:
    """Binary unit masks (B, C, H', W'): activations (B, C, h, w) resized to ``size`` (bilinear
    with ``align_corners=False``, as NetDissect-Lite's float resize; nearest; or
    "receptive_field": bilinear between the positions' receptive-field centres ``anchors``, the
    paper's) and compared with each unit's threshold (C,): strictly above it."""
    maps = acts.float()
    if upsample == "receptive_field":
        if anchors is None:
            raise ValueError("upsample='receptive_field' needs the layer's anchors.")
        maps = anchored_resize(maps, anchors, size)
    elif tuple(maps.shape[-2:]) != size:
        if upsample == "bilinear":
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        else:
            maps = F.interpolate(maps, size=size, mode="nearest")
    return maps > thresholds.to(maps.device, torch.float32)[None, :, None, None]


def crossing_units(maps: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(B, C) bool: whether unit c's map (B, C, h, w) on image b may cross its threshold
    (C,) once resized. A bilinear, nearest or anchored resize takes convex combinations of the map's
    values, so its maximum is the map's maximum up to float rounding (a few ulps of the
    largest magnitude); a unit whose maximum is below its threshold by more than that margin
    has an empty mask."""
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1).float()
    peak = flat.amax(dim=2)
    margin = 1e-5 * flat.abs().amax(dim=2)
    return peak + margin >= thresholds.to(flat.device, torch.float32)[None, :]


class IoUTally:
    """The sums of the module docstring for ``units`` units and the concepts of ``table``:
    ``intersection`` (C, L), ``unit_area`` (C, K categories), ``label_area`` (L,), int64."""

    def __init__(self, units: int, table: ConceptTable, union: UnionRule = "lite") -> None:
        if union not in ("lite", "annotated"):
            raise ValueError(f"union must be 'lite' or 'annotated'; got {union!r}.")
        self.units, self.table, self.union = int(units), table, union
        self.categories = list(table.categories)
        self._category_of = torch.from_numpy(table.category_of())
        self.intersection = torch.zeros(self.units, table.size, dtype=torch.int64)
        self.unit_area = torch.zeros(self.units, len(self.categories), dtype=torch.int64)
        self.label_area = torch.zeros(table.size, dtype=torch.int64)
        self.images = 0

    def update(self, masks: torch.Tensor, labels: Sequence[ConceptLabels]) -> None:
        """Add one batch: unit masks (B, C, H', W') (from :func:`unit_masks`, at the size of
        each image's label maps) and each image's labels."""
        if masks.ndim != 4 or masks.shape[1] != self.units or masks.shape[0] != len(labels):
            raise ValueError(
                f"expected masks (B, {self.units}, H, W) for {len(labels)} images; got "
                f"{tuple(masks.shape)}."
            )
        every_unit = torch.arange(self.units)
        for mask, image_labels in zip(masks, labels, strict=True):
            self._add_image(every_unit, mask.reshape(self.units, -1), image_labels)
        self.images += len(labels)

    def update_maps(
        self,
        maps: torch.Tensor,
        thresholds: torch.Tensor,
        size: tuple[int, int],
        labels: Sequence[ConceptLabels],
        upsample: Upsample = "bilinear",
        anchors: FieldAnchors | None = None,
    ) -> None:
        """Add one batch from the units' activation maps (B, C, h, w): the same counts as
        :meth:`update` of :func:`unit_masks` (maps, thresholds (C,), size), but only the units
        whose map can cross their threshold on an image are resized and counted there (see
        :func:`crossing_units`): at q = 0.005 most are not, and resizing every unit of a wide
        layer to the label size took 2 GB and most of the pass's time."""
        if maps.ndim != 4 or maps.shape[1] != self.units or maps.shape[0] != len(labels):
            raise ValueError(
                f"expected maps (B, {self.units}, h, w) for {len(labels)} images; got "
                f"{tuple(maps.shape)}."
            )
        crossing = crossing_units(maps, thresholds)
        for image_maps, image_crossing, image_labels in zip(maps, crossing, labels, strict=True):
            units = image_crossing.nonzero().reshape(-1)
            if len(units) == 0:  # no unit crosses here (resizing 0 channels is an error)
                mask = torch.zeros(0, size[0] * size[1], dtype=torch.bool)
            else:
                mask = unit_masks(
                    image_maps[units][None], thresholds[units], size, upsample, anchors
                )[0].reshape(len(units), size[0] * size[1])
            self._add_image(units, mask, image_labels)
        self.images += len(labels)

    def _add_image(self, units: torch.Tensor, mask: torch.Tensor, labels: ConceptLabels) -> None:
        """The masks (n, P) bool on one image of the units ``units`` (n,) (distinct indices);
        every other unit's mask is empty there."""
        pixels = mask.shape[1]
        area = torch.zeros(self.units, dtype=torch.int64)
        area[units] = mask.sum(dim=1).cpu().to(torch.int64)
        covers: dict[str, torch.Tensor] = {}  # per category: the mask covers one of its labels
        for category in labels.whole:
            covers[category] = area > 0
        flat = mask.to(torch.float32)
        for category, maps in labels.pixels.items():
            covers.setdefault(category, torch.zeros(self.units, dtype=torch.bool))
            for label_map in maps:
                values = torch.from_numpy(np.ascontiguousarray(label_map, dtype=np.int64))
                values = values.reshape(-1)
                if values.numel() != pixels and len(units):
                    raise ValueError(
                        f"a label map has {values.numel()} pixels; the unit masks were made "
                        f"at {pixels}. Resize the masks to the label maps' size."
                    )
                present = values.unique()
                present = present[present > 0]
                if present.numel() == 0:
                    continue
                onehot = (values[:, None] == present[None, :]).to(torch.float32)  # (P, K)
                self.label_area[present] += onehot.sum(dim=0).to(torch.int64)
                if len(units) == 0:
                    continue
                # float32 sums of 0/1 are exact up to 2**24 pixels per image
                counts = (flat @ onehot.to(flat.device)).round().to(torch.int64).cpu()
                self.intersection[units[:, None].cpu(), present[None, :]] += counts
                covers[category][units.cpu()] |= counts.sum(dim=1) > 0
        for category, covered in covers.items():
            counted = area if self.union == "annotated" else area * covered
            self.unit_area[:, self.categories.index(category)] += counted
        for indices in labels.whole.values():
            for index in indices:
                self.intersection[:, index] += area
                self.label_area[index] += pixels

    def iou(self) -> torch.Tensor:
        """(C, L) float64 dataset IoU of each unit with each label index (column 0, "no
        label", and concepts never seen are 0)."""
        union_area = self.unit_area[:, self._category_of.clamp(min=0)]  # (C, L)
        union = union_area + self.label_area[None, :] - self.intersection
        iou = self.intersection.double() / union.clamp(min=1).double()
        iou[:, 0] = 0.0
        return iou

    def merge(self, other: IoUTally) -> IoUTally:
        check_same("unit counts", self.units, other.units)
        check_same("concept tables", self.table, other.table)
        check_same("union rules", self.union, other.union)
        self.intersection += other.intersection
        self.unit_area += other.unit_area
        self.label_area += other.label_area
        self.images += other.images
        return self

    def state_dict(self) -> StateDict:
        return {
            "intersection": self.intersection.clone(),
            "unit_area": self.unit_area.clone(),
            "label_area": self.label_area.clone(),
            "images": torch.tensor(self.images, dtype=torch.int64),
        }

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, object], table: ConceptTable, union: UnionRule = "lite"
    ) -> IoUTally:
        intersection = state.get("intersection")
        if not isinstance(intersection, torch.Tensor) or intersection.ndim != 2:
            raise ValueError("state entry 'intersection' should be a (units, labels) tensor.")
        self = cls(int(intersection.shape[0]), table, union)
        cpu, i64 = torch.device("cpu"), torch.int64
        self.intersection = read_tensor(state, "intersection", (self.units, table.size), i64, cpu)
        shape = (self.units, len(self.categories))
        self.unit_area = read_tensor(state, "unit_area", shape, i64, cpu)
        self.label_area = read_tensor(state, "label_area", (table.size,), i64, cpu)
        images = state.get("images")
        self.images = int(images.item()) if isinstance(images, torch.Tensor) else 0
        return self
