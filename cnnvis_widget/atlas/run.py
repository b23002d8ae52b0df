"""The dataset pass of the unit atlas: :func:`unit_atlas` runs the model once over the data
(through :mod:`cnnvis_widget.dataset_pass`) and keeps per-unit statistics of the chosen
layers, with progress, stop, checkpoints, resume and torchrun."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..capture import resolve_layer
from ..checks import check_int, check_names, check_number
from ..dataset_pass import (
    PassSetup,
    PreparedItems,
    StopCheck,
    check_out_folder,
    check_unchanged,
    model_and_preprocess,
    run_pass,
)
from ..models import AnyPreprocess, ModelBundle
from ..pass_cache import OutputCache
from .fingerprint import data_fingerprint, model_fingerprint
from .result import MANIFEST_FILE, UnitAtlas


def unit_atlas(
    model: ModelBundle | nn.Module,
    data: Any,
    layers: Sequence[str],
    k: int = 9,
    *,
    q: float = 0.005,
    batch_size: int = 32,
    num_workers: int = 0,
    out: str | Path | None = None,
    checkpoint_every: int = 20,
    progress: bool = True,
    should_stop: StopCheck | None = None,
    preprocess: AnyPreprocess | None = None,
    keep: OutputCache | None = None,
) -> UnitAtlas:
    """Per-unit statistics of ``layers`` over ``data`` (a map-style dataset of images or
    (image, label) pairs, e.g. ``cv.datasets.photos()``): for every channel, its top-``k``
    dataset examples (index, maximum, argmax location), moments of its per-image mean and
    maximum, its mean response per class, and its upper-``q`` quantile over all positions
    (see :class:`~cnnvis_widget.unit_stats.UnitStats` and docs/unit_stats.md).

    One forward pass per batch on an eval-mode view of the model, stopped after the deepest
    chosen layer, no autograd; the model is left as found. Images are preprocessed in
    ``num_workers`` DataLoader workers with the bundle's preprocess (or ``preprocess``).

    With ``out`` (a folder), the statistics are saved there every ``checkpoint_every``
    batches and at the end; a call with the same model, data, layers, ``k`` and ``q`` resumes
    a stopped pass from its last checkpoint (and gives the result of an uninterrupted one) or
    returns a finished one without recomputing. ``should_stop(done, total)`` is asked after
    each batch; a stopped pass returns an atlas with ``complete == False``.

    Under ``torchrun`` (a ``torch.distributed`` process group is initialized), rank r of W
    takes images r, r + W, r + 2W, ... (``DistributedSampler(shuffle=False)``'s shard without
    its padding, which would count images twice), and the ranks' statistics are merged with
    ``all_gather_object``: every rank returns the whole atlas, equal to the single-process one
    (top-k and quantiles exactly, float64 sums up to rounding); rank 0 saves it. With ``out``,
    each rank checkpoints its own shard in ``out/rank-<r>-of-<W>/`` (every ``checkpoint_every``
    of its batches, and when it stops); a killed pass started again with the same number of
    processes resumes every rank from its own checkpoint and gives the uninterrupted result.
    Another number of processes is refused while such checkpoints exist (they hold other
    shards); the checkpoints are deleted once the whole result is saved. ``should_stop`` gets
    the rank's own (done, total); a rank that stops keeps its checkpoint and, once every rank
    has ended its loop, all return the merged atlas so far with ``complete == False``.

    ``keep``: an :class:`~cnnvis_widget.pass_cache.OutputCache` that also receives the layer
    outputs this call computes (nothing when the atlas is loaded complete from ``out``), for a
    second pass over the same images (``cv.dissect`` uses it).
    """
    module, prepare = model_and_preprocess(model, preprocess)
    names = check_names("layers", layers)
    for name in names:
        resolve_layer(module, name)
    check_int("k", k, low=1)
    check_number("q", q, low=0, high=1, low_open=True, high_open=True)
    check_int("batch_size", batch_size, low=1)
    check_int("checkpoint_every", checkpoint_every, low=1)
    items = PreparedItems(data, prepare)
    total = len(items)
    if total == 0:
        raise ValueError("the data set is empty; pass a data set with at least one image.")
    first = items[0][0]
    fingerprints = (model_fingerprint(module), data_fingerprint(data, items))
    atlas = _resumable(out, names, k, q, fingerprints) or UnitAtlas(
        {}, k, q, 0, total, *fingerprints, {}
    )
    if atlas.complete:
        return atlas
    setup = PassSetup.of(module, names, first, batch_size, num_workers, checkpoint_every, "atlas")

    def shard_of(folder: Path | None, images: int) -> UnitAtlas:
        saved = _resumable(folder, names, k, q, fingerprints)
        return saved or UnitAtlas({}, k, q, 0, images, *fingerprints, {})

    run_pass(atlas, items, setup, out, progress, should_stop, shard_of, keep=keep)
    check_unchanged(module, fingerprints[0], out)
    return atlas


def _resumable(
    out: str | Path | None, names: list[str], k: int, q: float, fingerprints: tuple[str, str]
) -> UnitAtlas | None:
    """The atlas saved in ``out`` for this very pass (same model, data, layers, k, q), to
    resume or return; None when there is none. A saved atlas of another model or data is
    refused with a message (it is never overwritten silently)."""
    check_out_folder(out)
    if out is None or not (Path(out) / MANIFEST_FILE).is_file():
        return None
    atlas = UnitAtlas.load(out, model_fingerprint=fingerprints[0], data_fingerprint=fingerprints[1])
    if atlas.layers != names or atlas.k != k or atlas.q != q:
        raise ValueError(
            f"{out} holds an atlas of layers {atlas.layers} with k={atlas.k}, q={atlas.q}; this "
            f"call asks for {names}, k={k}, q={q}. Pass another out= folder, or the same settings "
            "to resume it."
        )
    return atlas
