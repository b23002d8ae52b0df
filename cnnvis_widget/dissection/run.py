"""``cv.dissect``: Network Dissection of chosen layers over a concept data set, as two dataset
passes (:mod:`cnnvis_widget.dataset_pass`): the unit atlas gives each unit's threshold (its
upper-q quantile over all positions of all images) and top images; the second pass tallies
each unit's thresholded, upsampled map against the concept masks (:mod:`.tally`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from ..atlas import UnitAtlas, unit_atlas
from ..checks import check_names, check_number
from ..dataset_pass import (
    PassSetup,
    PreparedItems,
    StopCheck,
    check_out_folder,
    load_states,
    model_and_preprocess,
    process_group,
    run_pass,
    save_state,
)
from ..datasets.concept_format import ConceptLabels, ConceptTable
from ..models import AnyPreprocess, ModelBundle
from ..pass_cache import OutputCache
from ..preprocess import WholeImage
from ..receptive_field import receptive_field
from .anchors import FieldAnchors
from .report import IOU_THRESHOLD, DissectionResult, LayerDissection
from .saved import save_manifest, thresholds_digest
from .tally import IoUTally, UnionRule, Upsample

UPSAMPLES = ("bilinear", "nearest", "receptive_field")

MASK_SIZE = (112, 112)
"""Resolution of the unit masks on images that have only whole-image labels (Broden's)."""
STATE_FILE, MANIFEST_FILE = "tally.pt", "tally.json"


class DissectionTally:
    """The second pass's statistic (a :class:`~cnnvis_widget.dataset_pass.Folded`): one
    :class:`IoUTally` per layer, for the units' ``thresholds`` (C,) of each layer (and, for
    ``upsample="receptive_field"``, each layer's receptive-field ``anchors``)."""

    def __init__(
        self,
        thresholds: dict[str, torch.Tensor],
        table: ConceptTable,
        total: int,
        provenance: dict[str, Any],
        upsample: Upsample = "bilinear",
        union: UnionRule = "lite",
        anchors: dict[str, FieldAnchors] | None = None,
    ) -> None:
        self.thresholds, self.table, self.total = thresholds, table, total
        self.provenance, self.upsample, self.union = provenance, upsample, union
        self.anchors = anchors or {}  # per layer, for upsample="receptive_field"
        self.tallies = {name: IoUTally(len(t), table, union) for name, t in thresholds.items()}
        self.images = 0

    def add_batch(
        self, outputs: dict[str, torch.Tensor], targets: Any, indices: torch.Tensor
    ) -> None:
        labels = _concept_labels(targets, len(indices))
        sizes = [item.mask_size() or MASK_SIZE for item in labels]
        for name, acts in outputs.items():
            maps = acts if acts.ndim == 4 else acts[:, :, None, None]
            for size in dict.fromkeys(sizes):
                rows = [i for i, s in enumerate(sizes) if s == size]
                self.tallies[name].update_maps(
                    maps[rows], self.thresholds[name], size, [labels[i] for i in rows],
                    self.upsample, self.anchors.get(name),
                )  # fmt: skip
        self.images += len(labels)

    def save(self, folder: str | Path) -> Path:
        states = {name: tally.state_dict() for name, tally in self.tallies.items()}
        manifest = {**self.provenance, "images": self.images, "total": self.total}
        return save_state(folder, states, manifest, STATE_FILE, MANIFEST_FILE)

    def resume(self, folder: str | Path | None) -> DissectionTally:
        """Load the state saved in ``folder`` by this very pass (same provenance); a state of
        another pass is refused. Returns self (unchanged when nothing is saved)."""
        if folder is None or not (Path(folder) / MANIFEST_FILE).is_file():
            return self
        manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text())
        saved = {key: manifest.get(key) for key in self.provenance}
        if saved != self.provenance:
            raise ValueError(
                f"{folder} holds the tally of another dissection (other model, data, layers or "
                "thresholds); pass another out= folder, or delete it to start over."
            )
        states = load_states(Path(folder) / STATE_FILE, list(self.tallies))
        for name, state in states.items():
            self.tallies[name] = IoUTally.from_state_dict(state, self.table, self.union)
        # the count inside the states: a state saved after its manifest still resumes right
        self.images = next(iter(self.tallies.values())).images if self.tallies else 0
        return self

    def shard_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: tally.state_dict() for name, tally in self.tallies.items()}

    def merge_shards(self, states: list[Any]) -> None:
        merged = {
            name: IoUTally(len(t), self.table, self.union) for name, t in self.thresholds.items()
        }
        for state in states:
            for name, part in state.items():
                merged[name].merge(IoUTally.from_state_dict(part, self.table, self.union))
        self.tallies = merged
        self.images = next(iter(merged.values())).images if merged else 0


def _concept_labels(targets: Any, count: int) -> list[ConceptLabels]:
    if not isinstance(targets, list) or not all(isinstance(t, ConceptLabels) for t in targets):
        raise TypeError(
            "dissection needs concept data: items (image, ConceptLabels), as "
            "cv.datasets.concepts(), cv.datasets.broden(path) or cv.datasets.label_folder() give."
        )
    if len(targets) != count:
        raise ValueError(f"{len(targets)} labels for {count} images.")
    return targets


def dissect(
    model: ModelBundle | nn.Module,
    concepts: Any,
    layers: Sequence[str],
    *,
    q: float = 0.005,
    iou_threshold: float = IOU_THRESHOLD,
    top_k: int = 10,
    upsample: Upsample = "bilinear",
    union: UnionRule = "lite",
    batch_size: int = 32,
    num_workers: int = 0,
    out: str | Path | None = None,
    checkpoint_every: int = 20,
    progress: bool = True,
    should_stop: StopCheck | None = None,
    preprocess: AnyPreprocess | None = None,
    cache_mb: float = 1024,
) -> DissectionResult:
    """Network Dissection (Bau et al. 2017) of ``layers`` over ``concepts`` (a concept data set:
    items ``(image, ConceptLabels)`` and ``.concepts``, see
    :mod:`cnnvis_widget.datasets.concept_format`).

    Pass 1 (:func:`~cnnvis_widget.unit_atlas`): each unit's threshold T_u, its upper-``q``
    quantile over all positions of all images (``q`` = 0.005, the paper's), and its
    ``top_k`` images. Pass 2: each unit's map resized to the labels' resolution (``upsample``
    "bilinear" without corner alignment, NetDissect-Lite's float resize; "nearest"; or
    "receptive_field", the paper's: bilinear between the map positions' receptive-field centres,
    :mod:`cnnvis_widget.dissection.anchors`),
    thresholded (> T_u), and tallied against every concept's masks: the dataset IoU is a ratio
    of sums. On partially labelled data the union counts the unit's mask only on some images
    (``union``: "lite", where the mask covers a pixel labelled in the concept's category, as
    NetDissect-Lite; or "annotated", every image labelled for the category; see
    :mod:`cnnvis_widget.dissection.tally`). A unit detects its best concept when
    their IoU is above ``iou_threshold`` (0.04).

    The model sees each image whole, resized to its input size without cropping (a bundle's
    preprocess otherwise resizes and center-crops), so the concept masks line up with its
    input. Both passes run on an eval view of the model, show progress, stop (``should_stop``), and
    with ``out`` checkpoint and resume (``out/atlas``, ``out/tally``); under ``torchrun`` they
    shard the images and merge (the same result as one process: the sums are integers).

    The first pass's layer outputs (and the labels) are kept in memory up to ``cache_mb``
    megabytes, so the second pass reads them instead of running the model again (about one
    forward pass instead of two); past that size, or when the first pass was resumed from
    ``out``, the second pass runs the model (the same result, slower). 0 never keeps them.
    """
    module, given = model_and_preprocess(model, preprocess)
    prepare = WholeImage(given)  # label maps are made for the whole image: never crop it
    names = check_names("layers", layers)
    check_number("iou_threshold", iou_threshold, low=0, high=1)
    if union not in ("lite", "annotated"):
        raise ValueError(f"union must be 'lite' or 'annotated'; got {union!r}.")
    if upsample not in UPSAMPLES:
        raise ValueError(f"upsample must be one of {UPSAMPLES}; got {upsample!r}.")
    table = getattr(concepts, "concepts", None)
    if table is None and isinstance(concepts, Subset):  # a part of a concept data set
        table = getattr(concepts.dataset, "concepts", None)
    if not isinstance(table, ConceptTable):
        raise TypeError(
            "concepts must be a concept data set with a .concepts ConceptTable: "
            "cv.datasets.concepts(), cv.datasets.broden(path) or cv.datasets.label_folder()."
        )
    check_number("cache_mb", cache_mb, low=0)
    check_out_folder(out)
    folder = None if out is None else Path(out)
    cache = OutputCache(int(cache_mb * 2**20))
    atlas = unit_atlas(
        (model if isinstance(model, ModelBundle) else module), concepts, names, top_k, q=q,
        batch_size=batch_size, num_workers=num_workers,
        out=None if folder is None else folder / "atlas", checkpoint_every=checkpoint_every,
        progress=progress, should_stop=should_stop, preprocess=prepare, keep=cache,
    )  # fmt: skip
    thresholds = {name: atlas.summary(name)["quantile"].float() for name in names}
    anchors = None
    if upsample == "receptive_field":
        first = PreparedItems(concepts, prepare)[0][0][None]
        anchors = {name: FieldAnchors.of(receptive_field(module, name, first)) for name in names}
    tally = DissectionTally(
        thresholds, table, atlas.total, _provenance(atlas, names, thresholds, upsample, union),
        upsample, union, anchors,
    )  # fmt: skip
    if atlas.complete:
        _tally_pass(tally, module, prepare, concepts, names, batch_size, num_workers,
                    checkpoint_every, folder, progress, should_stop, cache)  # fmt: skip
    del cache  # the maps are freed before the result is built
    layers_found = {name: LayerDissection(tally.tallies[name], thresholds[name]) for name in names}
    result = DissectionResult(
        layers_found, table, q=q, iou_threshold=iou_threshold, images=tally.images,
        total=atlas.total, atlas=atlas, data=concepts,
    )  # fmt: skip
    if folder is not None and result.complete and process_group()[0] == 0:
        save_manifest(folder, result, tally.provenance, top_k)  # DissectionResult.load reads it
    return result


def _tally_pass(
    tally: DissectionTally,
    module: nn.Module,
    prepare: AnyPreprocess,
    concepts: Any,
    names: list[str],
    batch_size: int,
    num_workers: int,
    checkpoint_every: int,
    folder: Path | None,
    progress: bool,
    should_stop: StopCheck | None,
    cache: OutputCache,
) -> None:
    items = PreparedItems(concepts, prepare)
    tally_folder = None if folder is None else folder / "tally"
    tally.resume(tally_folder)
    if tally.images == tally.total:
        return
    if isinstance(cache.setup, PassSetup):  # the first pass ran here: same view and layers
        setup = PassSetup(**{**vars(cache.setup), "desc": "tally"})
    else:
        first = items[0][0]
        setup = PassSetup.of(
            module, names, first, batch_size, num_workers, checkpoint_every, "tally"
        )

    def shard_of(shard_folder: Path | None, images: int) -> DissectionTally:
        shard = DissectionTally(
            tally.thresholds, tally.table, images, tally.provenance, tally.upsample,
            tally.union, tally.anchors,
        )  # fmt: skip
        return shard.resume(shard_folder)

    run_pass(tally, items, setup, tally_folder, progress, should_stop, shard_of, reuse=cache)


def _provenance(
    atlas: UnitAtlas,
    names: list[str],
    thresholds: dict[str, torch.Tensor],
    upsample: str,
    union: str,
) -> dict[str, Any]:
    """What a saved tally must match to be resumed: model, data, layers, thresholds."""
    return {
        "format": 1, "layers": names, "model_fingerprint": atlas.model_fingerprint,
        "data_fingerprint": atlas.data_fingerprint,
        "thresholds": thresholds_digest(names, thresholds),
        "upsample": upsample, "union": union,
    }  # fmt: skip
