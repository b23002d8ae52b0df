"""A finished dissection's saved form, reloaded without the model and without recomputing.

``cv.dissect(..., out=folder)`` leaves ``folder/atlas`` (the first pass: thresholds and top
images), ``folder/tally`` (the IoU sums) and, once both passes are complete, a small
manifest ``folder/dissection.json``: layers, q, iou_threshold, top_k, union, upsample, the
model and data fingerprints, a digest of the thresholds, and the concept table (names and
categories), so the labels are known without the data. :func:`load_dissection` (as
``cv.DissectionResult.load``) reads the three back; a folder whose passes are incomplete is
refused, saying how to finish it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..atlas import UnitAtlas
from ..datasets.concept_format import Concept, ConceptTable
from .report import DissectionResult, LayerDissection
from .tally import IoUTally

MANIFEST_FILE = "dissection.json"
FORMAT = 1


def save_manifest(
    folder: str | Path, result: DissectionResult, provenance: dict[str, Any], top_k: int
) -> Path:
    """Write ``folder/dissection.json`` for a complete ``result`` (``provenance``: the tally
    pass's, with layers, fingerprints, thresholds digest, union and upsample)."""
    path = Path(folder) / MANIFEST_FILE
    manifest = {
        "format": FORMAT,
        "layers": list(result.layers),
        "q": result.q,
        "iou_threshold": result.iou_threshold,
        "top_k": top_k,
        "images": result.images,
        "total": result.total,
        "categories": list(result.table.categories),
        "concepts": [[c.name, c.category] for c in result.table.concepts],
        "provenance": provenance,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(manifest, indent=1))
    os.replace(path.with_suffix(".tmp"), path)
    return path


def thresholds_digest(layers: list[str], thresholds: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the layers' thresholds: the tally a dissection saved is of these."""
    digest = hashlib.sha256()
    for name in layers:
        digest.update(thresholds[name].double().numpy().tobytes())
    return digest.hexdigest()


def load_dissection(folder: str | Path, concepts: Any = None) -> DissectionResult:
    """The dissection saved in ``folder`` by ``cv.dissect(..., out=folder)`` (or ``python -m
    cnnvis_widget dissect --out folder``), complete, with its atlas. ``concepts``: the concept
    data set it ran on (optional; attached as ``result.data`` so the units' segmentations can
    be drawn), refused when its concept table or length differ."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the out= folder of cv.dissect.")
    atlas = _complete_atlas(root)
    _check_tally_finished(root)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{root} holds no finished dissection ({MANIFEST_FILE}): {_incomplete(root)}"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path} has format {manifest.get('format')}; expected {FORMAT}.")
    table = ConceptTable(
        tuple(Concept(i, name, category) for i, (name, category) in enumerate(manifest["concepts"], 1)),
        tuple(manifest["categories"]),
    )  # fmt: skip
    provenance = manifest["provenance"]
    layers: list[str] = manifest["layers"]
    thresholds = {name: atlas.summary(name)["quantile"].float() for name in layers}
    tallies = _complete_tallies(root, table, provenance, layers, atlas.total)
    if thresholds_digest(layers, thresholds) != provenance["thresholds"]:
        raise ValueError(
            f"{root}: the tally was computed with other thresholds than those of "
            f"{root / 'atlas'}; run cv.dissect(..., out=...) again in a new folder."
        )
    if concepts is not None:
        _check_concepts(concepts, table, atlas.total)
    parts = {name: LayerDissection(tallies[name], thresholds[name]) for name in layers}
    return DissectionResult(
        parts, table, q=float(manifest["q"]), iou_threshold=float(manifest["iou_threshold"]),
        images=atlas.total, total=atlas.total, atlas=atlas, data=concepts,
    )  # fmt: skip


def _incomplete(root: Path) -> str:
    return (
        "its passes are incomplete. Finish it with cv.dissect(model, concepts, layers, "
        f"out={str(root)!r}) (or the same python -m cnnvis_widget dissect command): it resumes "
        "from the checkpoints."
    )


def _complete_atlas(root: Path) -> UnitAtlas:
    try:
        atlas = UnitAtlas.load(root / "atlas")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{root} holds no saved first pass (atlas/atlas.json): {_incomplete(root)}"
        ) from None
    if not atlas.complete:
        raise ValueError(
            f"{root}: the first pass (atlas) has seen {atlas.images} of {atlas.total} images; "
            + _incomplete(root)
        )
    return atlas


def _check_tally_finished(root: Path) -> None:
    from .run import MANIFEST_FILE as TALLY_MANIFEST

    path = root / "tally" / TALLY_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{root} holds no saved IoU tally (tally/{TALLY_MANIFEST}): {_incomplete(root)}"
        )
    saved = json.loads(path.read_text())
    if saved.get("images") != saved.get("total"):
        raise ValueError(
            f"{root}: the second pass (IoU tally) has seen {saved.get('images')} of "
            f"{saved.get('total')} images; " + _incomplete(root)
        )


def _complete_tallies(
    root: Path, table: ConceptTable, provenance: dict[str, Any], layers: list[str], total: int
) -> dict[str, IoUTally]:
    from .run import MANIFEST_FILE as TALLY_MANIFEST
    from .run import STATE_FILE as TALLY_STATE

    folder = root / "tally"
    if not (folder / TALLY_MANIFEST).is_file() or not (folder / TALLY_STATE).is_file():
        raise FileNotFoundError(
            f"{root} holds no saved IoU tally (tally/{TALLY_MANIFEST}): {_incomplete(root)}"
        )
    saved = json.loads((folder / TALLY_MANIFEST).read_text())
    if {key: saved.get(key) for key in provenance} != provenance:
        raise ValueError(
            f"{folder} holds the tally of another dissection than {root / MANIFEST_FILE}; run "
            "cv.dissect(..., out=...) again in a new folder."
        )
    tensors = torch.load(folder / TALLY_STATE, weights_only=True)
    tallies = {}
    for name in layers:
        prefix = f"{name}/"
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        tallies[name] = IoUTally.from_state_dict(part, table, provenance["union"])
        if tallies[name].images != total:
            raise ValueError(
                f"{root}: the IoU tally of {name} has seen {tallies[name].images} of {total} "
                "images; " + _incomplete(root)
            )
    return tallies


def _check_concepts(concepts: Any, table: ConceptTable, total: int) -> None:
    if getattr(concepts, "concepts", None) != table:
        raise ValueError(
            "concepts= has another concept table than the saved dissection; pass the data set "
            "it ran on (or none)."
        )
    if len(concepts) != total:
        raise ValueError(
            f"concepts= has {len(concepts)} items; the dissection ran on {total}. Pass the "
            "data set it ran on (or none)."
        )
