"""What a dissection found: each unit's best concept and IoU, the detectors, and the unique
detectors per layer and category (Bau et al. 2017's measure of a layer's interpretability)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..atlas import UnitAtlas
from ..datasets.concept_format import ConceptTable
from .tally import IoUTally

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

    from ..models import AnyPreprocess, ModelBundle

IOU_THRESHOLD = 0.04
"""A unit is a detector of its best concept when their IoU is above this (the paper's and
NetDissect-Lite's value)."""


@dataclass(frozen=True)
class UnitLabel:
    """Unit ``unit`` of ``layer``: its best ``concept`` (of ``category``; label index
    ``label``) by dataset IoU, that ``iou``, whether it is a ``detector`` (iou above the
    threshold), its ``threshold`` (activation level of its top-q positions) and the
    concept's positive pixels over the data set (IoU is unreliable for tiny concepts)."""

    layer: str
    unit: int
    concept: str
    category: str
    label: int
    iou: float
    detector: bool
    threshold: float
    concept_pixels: int


@dataclass
class LayerDissection:
    """One layer's tally and thresholds (C,)."""

    tally: IoUTally
    thresholds: torch.Tensor


class DissectionResult:
    """Per-layer IoU tallies over a concept data set, read as unit labels. ``images``: images
    tallied; ``total``: in the data set."""

    def __init__(
        self,
        layers: dict[str, LayerDissection],
        table: ConceptTable,
        *,
        q: float,
        iou_threshold: float = IOU_THRESHOLD,
        images: int = 0,
        total: int = 0,
        atlas: UnitAtlas | None = None,
        data: Any = None,
    ) -> None:
        self.layers, self.table = layers, table
        self.q, self.iou_threshold = q, iou_threshold
        self.images, self.total = images, total
        self.atlas = atlas  # the first pass: thresholds and each unit's top images
        self.data = data  # the concept data set (its images show the units' segmentations)

    @property
    def complete(self) -> bool:
        return self.images == self.total

    @classmethod
    def load(cls, folder: str | Path, concepts: Any = None) -> DissectionResult:
        """A finished dissection saved by ``cv.dissect(..., out=folder)``, without the model
        and without recomputing; ``concepts``: its data set, for the units' segmentations
        (:func:`cnnvis_widget.dissection.saved.load_dissection`)."""
        from .saved import load_dissection  # saved builds on this module

        return load_dissection(folder, concepts)

    def iou(self, layer: str) -> torch.Tensor:
        """(C, L) float64 dataset IoU of every unit of ``layer`` with every label index."""
        return self._layer(layer).tally.iou()

    def units(self, layer: str) -> list[UnitLabel]:
        """Every unit of ``layer`` with its best concept, in unit order."""
        part = self._layer(layer)
        iou = part.tally.iou()
        best = iou.argmax(dim=1)
        rows = []
        for unit in range(iou.shape[0]):
            label = int(best[unit])
            value = float(iou[unit, label])
            concept = self.table[label] if label > 0 else None
            rows.append(
                UnitLabel(
                    layer,
                    unit,
                    concept.name if concept else "",
                    concept.category if concept else "",
                    label,
                    value,
                    bool(concept and value > self.iou_threshold),
                    float(part.thresholds[unit]),
                    int(part.tally.label_area[label]),
                )
            )
        return rows

    def detectors(self, layer: str) -> list[UnitLabel]:
        """The units of ``layer`` whose best IoU is above the threshold, best first."""
        found = [row for row in self.units(layer) if row.detector]
        return sorted(found, key=lambda row: (-row.iou, row.unit))

    def summary(self) -> dict[str, dict[str, int]]:
        """Per layer, per category: the number of unique concepts with at least one detector
        (the paper's count of unique detectors)."""
        out: dict[str, dict[str, int]] = {}
        for layer in self.layers:
            unique = {(row.category, row.concept) for row in self.detectors(layer)}
            out[layer] = {
                category: sum(1 for c, _ in unique if c == category)
                for category in self.table.categories
            }
        return out

    def find(self, text: str) -> list[UnitLabel]:
        """Detectors, of every layer, whose concept has a word starting with ``text`` ("red"
        finds "red", not "checkered"; "stone" finds "stone wall"), or whose category is
        ``text``."""
        needle = text.strip().lower()
        return [
            row
            for layer in self.layers
            for row in self.detectors(layer)
            if any(word.startswith(needle) for word in row.concept.lower().split())
            or needle == row.category.lower()
        ]

    def to_html(
        self,
        path: str | Path,
        model: ModelBundle | nn.Module | None = None,
        *,
        preprocess: AnyPreprocess | None = None,
        units_per_layer: int | None = None,
        top: int = 5,
        min_pixels: int = 1000,
    ) -> Path:
        """Write the report as one self-contained HTML file (see
        :mod:`cnnvis_widget.dissection.html`): per layer the unique detectors by category, per
        unit (detectors first, by IoU; the first ``units_per_layer``, None: all) its concept,
        IoU and concept pixels (flagged below ``min_pixels``), and with ``model`` (the one
        dissected; a bare module with the ``preprocess`` given to cv.dissect) its ``top``
        images with its segmentation. Returns the path."""
        from .html import write_html

        return write_html(
            self, path, model, preprocess=preprocess, units_per_layer=units_per_layer, top=top,
            min_pixels=min_pixels,
        )  # fmt: skip

    def plot(self) -> Figure:
        """A matplotlib Figure of the unique detectors per category per layer (ImportError
        when matplotlib is not installed; it is optional)."""
        from .html import plot_summary

        return plot_summary(self)

    def _layer(self, layer: str) -> LayerDissection:
        if layer not in self.layers:
            raise ValueError(f"the dissection has no layer {layer!r}; it has {list(self.layers)}.")
        return self.layers[layer]
