"""UnitAtlas: the per-unit statistics of one dataset pass, what a reader asks of them, and their
saved form.

Saved as a folder: ``atlas.pt`` holds only tensors (torch's zip format, read back with
``torch.load(..., weights_only=True)``: no code runs on load, and torch is already a
dependency) and ``atlas.json`` the manifest (layers, k, q, images seen, whether the pass
finished, and the model and data fingerprints). A load with a model or data whose fingerprint
differs is refused, never silently reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..dataset_pass import load_states, read_manifest, save_state
from ..unit_stats import UnitStats
from .fingerprint import model_fingerprint, same_data

STATE_FILE = "atlas.pt"
MANIFEST_FILE = "atlas.json"


@dataclass(frozen=True)
class Example:
    """One of a unit's top dataset examples: the image's dataset ``index``, the unit's
    maximum ``value`` over the map and where it is, (``y``, ``x``) in the layer's map."""

    index: int
    value: float
    y: int
    x: int


@dataclass
class UnitAtlas:
    """Per-layer :class:`~cnnvis_widget.unit_stats.UnitStats` of one pass, with its provenance.
    ``images``: how many images the pass has seen; ``complete``: whether it saw all of them
    (False for a stopped pass, which resumes from its checkpoint)."""

    stats: dict[str, UnitStats]
    k: int
    q: float
    images: int
    total: int
    model_fingerprint: str
    data_fingerprint: str
    map_sizes: dict[str, tuple[int, int]]

    @property
    def complete(self) -> bool:
        return self.images == self.total

    @property
    def layers(self) -> list[str]:
        return list(self.stats)

    def check_source(self, module: nn.Module, data: Any, preprocess: Any) -> None:
        """Refuse, with the fix, a ``module`` or a ``data`` set (prepared with ``preprocess``)
        other than the ones this atlas was computed on (fingerprints)."""
        if self.model_fingerprint != model_fingerprint(module):
            raise ValueError(
                "this atlas was computed on another model (or other weights); recompute it "
                "with cv.unit_atlas(model, data, layers=...)."
            )
        if not same_data(self.data_fingerprint, data, preprocess):
            raise ValueError(
                "data= is not the data set this atlas was computed on (fingerprints differ); "
                "pass that data set, or recompute the atlas on this one."
            )

    def top(self, layer: str, unit: int) -> list[Example]:
        """The unit's top-k dataset examples, best first (ties: the lower dataset index)."""
        stats = self._layer(layer)
        if not 0 <= unit < stats.units:
            raise ValueError(f"{layer} has units 0..{stats.units - 1}; got {unit}.")
        return [Example(i, v, y, x) for v, i, y, x in stats.topk.examples(unit)]

    def summary(self, layer: str) -> dict[str, torch.Tensor]:
        """Per unit of ``layer`` (tensors (C,), float64): ``mean`` and ``std`` of the
        per-image spatial mean, ``max`` of the spatial maximum over all images, ``quantile``
        the upper-q quantile over all positions (:meth:`UnitStats.thresholds`), and
        ``class_means`` (K, C) the mean pooled response per class (NaN for a class with no
        image; K = 0 for unlabelled data)."""
        stats = self._layer(layer)
        return {
            "mean": stats.pooled.mean(),
            "std": stats.pooled.std(),
            "max": stats.peak.max(),
            "quantile": stats.thresholds(),
            "class_means": stats.classes.means(),
        }

    # --- the dataset pass folds batches into it (dataset_pass.Folded) ------------------------

    def add_batch(
        self, outputs: dict[str, torch.Tensor], targets: Any, indices: torch.Tensor
    ) -> None:
        """Fold one batch: each layer's output (B, C, h, w) or (B, C), the labels (B,) (-1:
        none) and the dataset indices (B,)."""
        labels = targets if isinstance(targets, torch.Tensor) else None
        for name, acts in outputs.items():
            if name not in self.stats:
                self.stats[name] = UnitStats(int(acts.shape[1]), k=self.k, q=self.q)
                size = (int(acts.shape[2]), int(acts.shape[3])) if acts.ndim == 4 else (1, 1)
                self.map_sizes[name] = size
            self.stats[name].update(acts, indices, labels)
        self.images += int(indices.shape[0])

    def shard_state(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, tuple[int, int]]]:
        return {name: stats.state_dict() for name, stats in self.stats.items()}, self.map_sizes

    def merge_shards(self, states: list[Any]) -> None:
        """Become the merge of the shards' states (from :meth:`shard_state`, rank order)."""
        order = list(self.stats) or [name for state, _ in states for name in state]
        merged: dict[str, UnitStats] = {}
        for shard_states, sizes in states:
            for name, state in shard_states.items():
                part = UnitStats.from_state_dict(state)
                merged[name] = merged[name].merge(part) if name in merged else part
                self.map_sizes.setdefault(name, tuple(sizes[name]))
        self.stats = {name: merged[name] for name in dict.fromkeys(order) if name in merged}
        self.images = next(iter(self.stats.values())).images if self.stats else 0

    def _layer(self, layer: str) -> UnitStats:
        if layer not in self.stats:
            raise ValueError(f"the atlas has no layer {layer!r}; it has {self.layers}.")
        return self.stats[layer]

    # --- saved form ---------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "format": 1, "layers": self.layers, "k": self.k, "q": self.q,
            "images": self.images, "total": self.total,
            "model_fingerprint": self.model_fingerprint,
            "data_fingerprint": self.data_fingerprint,
            "map_sizes": {name: list(size) for name, size in self.map_sizes.items()},
        }  # fmt: skip

    def save(self, folder: str | Path, state_file: str = STATE_FILE) -> Path:
        """Write ``atlas.pt`` + ``atlas.json`` into ``folder`` (created); returns it."""
        states = {layer: stats.state_dict() for layer, stats in self.stats.items()}
        return save_state(folder, states, self.manifest(), state_file, MANIFEST_FILE)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        model_fingerprint: str | None = None,
        data_fingerprint: str | None = None,
        state_file: str = STATE_FILE,
    ) -> UnitAtlas:
        """Read a saved atlas; with fingerprints given, refuse one computed on another model or
        other data (use :func:`~cnnvis_widget.atlas.load_atlas` to check against a model and
        data set directly)."""
        path = Path(folder)
        manifest = read_manifest(
            path, state_file, MANIFEST_FILE, what="atlas", run_first="cv.unit_atlas(..., out=folder)",
            model_fingerprint=model_fingerprint, data_fingerprint=data_fingerprint,
        )  # fmt: skip
        states = load_states(path / state_file, manifest["layers"])
        stats = {layer: UnitStats.from_state_dict(state) for layer, state in states.items()}
        images = {part.images for part in stats.values()}
        if len(images) > 1:
            raise ValueError(f"{path}: the layers' statistics saw different image counts {images}.")
        return cls(
            stats, int(manifest["k"]), float(manifest["q"]), images.pop() if images else 0,
            int(manifest["total"]), manifest["model_fingerprint"], manifest["data_fingerprint"],
            {name: (int(s[0]), int(s[1])) for name, s in manifest["map_sizes"].items()},
        )  # fmt: skip
