"""The responses of Oramas et al.'s interpretation: one pooled value per filter of the chosen
layers for every image of a labelled data set, collected as a statistic of the dataset pass
(:mod:`cnnvis_widget.dataset_pass`: progress, stop, checkpoints, resume, torchrun shards).

Saved as ``responses.pt`` (tensors only, read with ``weights_only=True``) + ``responses.json``
(layers, channels, pooling, image counts, model and data fingerprints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..dataset_pass import load_states, read_manifest, save_state

Pool = Literal["l2sq", "l2", "mean", "max"]
POOLS: tuple[str, ...] = ("l2sq", "l2", "mean", "max")
STATE_FILE = "responses.pt"
MANIFEST_FILE = "responses.json"


def pooled(acts: torch.Tensor, pool: str) -> torch.Tensor:
    """One value per channel and image: ``acts`` (B, C, h, w) or (B, C) -> (B, C) float32.
    ``"l2sq"``: sum of squares over the map (the authors' released code, "filterL2L1", before
    its per-layer L1 normalization); ``"l2"``: its square root; ``"mean"``, ``"max"``."""
    flat = acts.float().flatten(2) if acts.ndim == 4 else acts.float()[:, :, None]
    if pool == "l2sq":
        return flat.square().sum(2)
    if pool == "l2":
        return flat.square().sum(2).sqrt()
    if pool == "mean":
        return flat.mean(2)
    if pool == "max":
        return flat.amax(2)
    raise ValueError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}.")


@dataclass
class ResponseTable:
    """Pooled responses (``images`` x m, float32, m = the channels of every layer in order)
    with each image's label and dataset index; rows in dataset order once merged.
    ``complete``: the pass saw all ``total`` images."""

    layers: list[str]
    pool: str
    total: int
    model_fingerprint: str
    data_fingerprint: str
    channels: dict[str, int] = field(default_factory=dict)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    """(indices (B,), responses (B, m), labels (B,)) per folded batch."""
    images: int = 0

    @property
    def complete(self) -> bool:
        return self.images == self.total

    @property
    def columns(self) -> list[tuple[str, int]]:
        """(layer, channel) of each response column."""
        return [(name, c) for name in self.layers for c in range(self.channels.get(name, 0))]

    def table(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices (n,) int64, responses (n, m) float32, labels (n,) int64), by index."""
        if not self.parts:
            m = sum(self.channels.values())
            empty = torch.zeros(0, dtype=torch.int64)
            return empty, torch.zeros(0, m), empty.clone()
        indices, responses, labels = (torch.cat(part) for part in zip(*self.parts, strict=True))
        order = indices.argsort()
        self.parts = [(indices[order], responses[order], labels[order])]  # one part from now on
        return self.parts[0]

    # --- dataset_pass.Folded -----------------------------------------------------------------

    def add_batch(
        self, outputs: dict[str, torch.Tensor], targets: Any, indices: torch.Tensor
    ) -> None:
        """Fold one batch: pool each layer's output, keep it with the labels (B,)."""
        if not isinstance(targets, torch.Tensor):
            raise ValueError(
                "the data set's items carry no int class labels (got "
                f"{type(targets[0]).__name__} targets); relevant features need (image, label) "
                "pairs with int labels, e.g. cv.datasets.fashion_mnist() or a label folder."
            )
        if bool((targets < 0).any()):
            raise ValueError(
                "some items have no label (an image alone, or label -1); relevant features need "
                "(image, label) pairs: pass a labelled data set."
            )
        columns = []
        for name in self.layers:
            values = pooled(outputs[name], self.pool)
            self.channels.setdefault(name, int(values.shape[1]))
            columns.append(values)
        responses = torch.cat(columns, 1).cpu()
        bad = ~torch.isfinite(responses)
        if bool(bad.any()):
            row, col = (int(v) for v in bad.nonzero()[0])
            layer, channel = self.columns[col]
            raise ValueError(
                f"the response of {layer} channel {channel} is {responses[row, col].item()} on "
                f"data set item {int(indices[row])}: the model gives NaN or inf there. Check "
                "that image and the model's weights (a float16 overflow?), or leave the layer out."
            )
        self.parts.append((indices.cpu().clone(), responses, targets.cpu().clone()))
        self.images += int(indices.shape[0])

    def shard_state(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        indices, responses, labels = self.table()
        return {"indices": indices, "responses": responses, "labels": labels}, self.channels

    def merge_shards(self, states: list[Any]) -> None:
        """Become the union of the ranks' rows (from :meth:`shard_state`), by dataset index."""
        self.parts = []
        for state, channels in states:
            for name, count in channels.items():
                self.channels.setdefault(name, int(count))
            self.parts.append((state["indices"], state["responses"], state["labels"]))
        self.images = sum(int(part[0].shape[0]) for part in self.parts)
        self.table()

    # --- saved form ---------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "format": 1, "layers": self.layers, "channels": self.channels, "pool": self.pool,
            "images": self.images, "total": self.total,
            "model_fingerprint": self.model_fingerprint,
            "data_fingerprint": self.data_fingerprint,
        }  # fmt: skip

    def save(self, folder: str | Path) -> Path:
        """Write ``responses.pt`` + ``responses.json`` into ``folder`` (created)."""
        indices, responses, labels = self.table()
        state = {"indices": indices, "responses": responses, "labels": labels}
        return save_state(folder, {"table": state}, self.manifest(), STATE_FILE, MANIFEST_FILE)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        model_fingerprint: str | None = None,
        data_fingerprint: str | None = None,
    ) -> ResponseTable:
        """Read saved responses; with fingerprints given, refuse those of another model or
        other data."""
        path = Path(folder)
        manifest = read_manifest(
            path, STATE_FILE, MANIFEST_FILE, what="responses",
            run_first="cv.relevant_features(..., out=folder)",
            model_fingerprint=model_fingerprint, data_fingerprint=data_fingerprint,
        )  # fmt: skip
        state = load_states(path / STATE_FILE, ["table"])["table"]
        table = cls(
            list(manifest["layers"]), str(manifest["pool"]), int(manifest["total"]),
            manifest["model_fingerprint"], manifest["data_fingerprint"],
            {name: int(n) for name, n in manifest["channels"].items()},
        )  # fmt: skip
        if state:
            table.parts = [(state["indices"], state["responses"], state["labels"])]
            table.images = int(state["indices"].shape[0])
        return table
