"""RelevantFeatures: per class the filters the lasso picked (layer, channel, weight), the
responses they were picked from, what it takes to score a new image with them, and their saved
form (``relevant.pt`` tensors read with ``weights_only=True`` + ``relevant.json``, beside the
pass's ``responses.pt`` / ``responses.json``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .fit import features_of
from .responses import ResponseTable

STATE_FILE = "relevant.pt"
MANIFEST_FILE = "relevant.json"


@dataclass(frozen=True)
class RelevantFilter:
    """One relevant filter of a class: ``layer`` / ``channel``, its lasso ``weight`` (> 0) and
    its ``column`` in the response table."""

    layer: str
    channel: int
    weight: float
    column: int


@dataclass
class RelevantFeatures:
    """The result of :func:`~cnnvis_widget.interpretation.relevant_features`.

    ``responses``: the pass's table (N x m pooled responses, labels); ``classes`` (K,) the
    class indices seen; ``weights`` (K, m) float64 >= 0, each row with L1 norm <= ``mu``
    (empty (0, m) while the pass is incomplete); ``mean`` / ``scale`` (m,) the standardization
    of the features (0 / 1 without it); ``sample`` the dataset indices of the balanced sample
    the lasso saw; ``settings`` the options (mu, layer_norm, standardize, per_class, seed);
    ``class_names`` the data set's names of its class indices (its ``classes`` attribute, or
    its ``dataset``'s for a ``Subset``), None when it has none."""

    responses: ResponseTable
    classes: list[int]
    weights: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    sample: torch.Tensor
    settings: dict[str, Any]
    class_names: list[str] | None = None

    @property
    def complete(self) -> bool:
        return self.responses.complete and self.weights.shape[0] == len(self.classes) > 0

    @property
    def mu(self) -> float:
        return float(self.settings["mu"])

    def relevant(self, label: int) -> list[RelevantFilter]:
        """Class ``label``'s relevant filters, largest weight first (ties: table order)."""
        row = self._row(label)
        columns = self.responses.columns
        order = sorted(
            (int(j) for j in torch.nonzero(self.weights[row] > 0).flatten()),
            key=lambda j: (-float(self.weights[row, j]), j),
        )
        return [
            RelevantFilter(columns[j][0], columns[j][1], float(self.weights[row, j]), j)
            for j in order
        ]

    def features(self, responses: torch.Tensor) -> torch.Tensor:
        """Pooled responses (n, m) of new images -> the standardized features the lasso used
        (n, m) float64."""
        channels = [self.responses.channels[name] for name in self.responses.layers]
        values = features_of(responses, channels, str(self.settings["layer_norm"]))
        return (values - self.mean) / self.scale

    def _row(self, label: int) -> int:
        if not self.complete:
            raise ValueError(
                "the responses pass was stopped before the end, so no filters are selected yet; "
                "call cv.relevant_features again with the same out= folder to resume it."
            )
        if label not in self.classes:
            raise ValueError(
                f"class {label} had no images in the data set the features were selected on "
                f"(classes {self.classes}); pick one of those, or select on data with it."
            )
        return self.classes.index(label)

    # --- saved form ---------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the responses and the selection into ``folder`` (created); returns it."""
        path = self.responses.save(folder)
        tensors = {
            "weights": self.weights, "mean": self.mean, "scale": self.scale,
            "sample": self.sample,
        }  # fmt: skip
        torch.save(tensors, path / f"{STATE_FILE}.tmp")
        os.replace(path / f"{STATE_FILE}.tmp", path / STATE_FILE)
        manifest = {
            "format": 1, "classes": self.classes, "settings": self.settings,
            "class_names": self.class_names,
        }  # fmt: skip
        (path / f"{MANIFEST_FILE}.tmp").write_text(json.dumps(manifest, indent=1))
        os.replace(path / f"{MANIFEST_FILE}.tmp", path / MANIFEST_FILE)
        return path

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        model_fingerprint: str | None = None,
        data_fingerprint: str | None = None,
    ) -> RelevantFeatures:
        """Read a saved selection; with fingerprints given, refuse one of another model or data
        (:func:`~cnnvis_widget.atlas.model_fingerprint` / ``data_fingerprint``)."""
        path = Path(folder)
        table = ResponseTable.load(
            path, model_fingerprint=model_fingerprint, data_fingerprint=data_fingerprint
        )
        if not (path / MANIFEST_FILE).is_file() or not (path / STATE_FILE).is_file():
            raise FileNotFoundError(
                f"{path} holds responses but no selection ({MANIFEST_FILE} + {STATE_FILE}): the "
                "pass was stopped; call cv.relevant_features(..., out=folder) to finish it."
            )
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        tensors = torch.load(path / STATE_FILE, weights_only=True)
        return cls(
            table, [int(c) for c in manifest["classes"]], tensors["weights"], tensors["mean"],
            tensors["scale"], tensors["sample"], dict(manifest["settings"]),
            manifest.get("class_names"),
        )  # fmt: skip
