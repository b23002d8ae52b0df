"""The dataset pass: the model runs once over the data and every chosen layer's activations are
reduced to per-unit statistics batch by batch (memory does not grow with the data), with
progress, stop, checkpoints and resume."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..capture import capture, resolve_layer
from ..checks import check_int, check_module, check_names, check_number
from ..layers import layers as layer_table
from ..model_view import eval_view
from ..models import AnyPreprocess, ModelBundle, Preprocess, to_model_input
from ..unit_stats import UnitStats
from .fingerprint import data_fingerprint, model_fingerprint
from .result import MANIFEST_FILE, UnitAtlas

StopCheck = Callable[[int, int], bool]
"""``should_stop(images_done, total) -> bool``, asked after every batch."""


class PreparedItems(Dataset[tuple[torch.Tensor, int, int]]):
    """``data``'s items as (model input (C, H, W), label (-1: none), dataset index): an item is
    an image, or an (image, label) pair; images go through ``preprocess``. Runs in DataLoader
    workers, so the model never leaves the main process."""

    def __init__(self, data: Any, preprocess: AnyPreprocess) -> None:
        self.data, self.preprocess = data, preprocess

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        item = self.data[index]
        image, label = item if isinstance(item, tuple) and len(item) == 2 else (item, -1)
        return self.preprocess(image)[0], int(label), index


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
    """
    module, prepare = _model_and_preprocess(model, preprocess)
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
    fingerprints = (model_fingerprint(module), data_fingerprint(data, first, items[total - 1][0]))
    world = _process_group()[1]
    atlas = _resumable(out, names, k, q, fingerprints) or UnitAtlas(
        {}, k, q, 0, total, *fingerprints, {}
    )
    if atlas.complete:
        return atlas
    _refuse_other_world(out, world)
    calls = {info.name: info.calls for info in layer_table(module, first[None])}
    view = eval_view(module)
    step = _Step(view, module, names, calls, batch_size, num_workers, checkpoint_every)
    if world > 1:
        if atlas.images:
            raise ValueError(f"{out} holds a stopped pass; resume it in one process.")
        return _distributed(atlas, items, step, out, progress, should_stop)
    _fold(atlas, Subset(items, range(atlas.images, total)), step, out, progress, should_stop)
    return atlas


@dataclass(frozen=True)
class _Step:
    """What every batch of a pass needs: the eval view, the layers, the loader settings."""

    view: nn.Module
    module: nn.Module
    names: list[str]
    calls: dict[str, int]
    batch_size: int
    num_workers: int
    checkpoint_every: int


def _fold(
    atlas: UnitAtlas,
    data: Dataset[tuple[torch.Tensor, int, int]],
    step: _Step,
    folder: str | Path | None,
    progress: bool,
    should_stop: StopCheck | None,
    desc: str = "atlas",
) -> bool:
    """Fold ``data`` (the images ``atlas`` has yet to see) into ``atlas`` batch by batch,
    saved in ``folder`` every ``checkpoint_every`` batches and when it ends (also on an
    error or KeyboardInterrupt: what was done is kept). True when ``should_stop`` stopped
    it."""
    loader = DataLoader(
        data, batch_size=step.batch_size, num_workers=step.num_workers, shuffle=False
    )
    bar = tqdm(total=atlas.total, initial=atlas.images, unit="img", disable=not progress, desc=desc)
    try:
        for batch_number, (x, labels, indices) in enumerate(loader, start=1):
            _add_batch(atlas, step.view, step.module, step.names, step.calls, x, labels, indices)
            bar.update(int(x.shape[0]))
            if folder is not None and batch_number % step.checkpoint_every == 0:
                atlas.save(folder)
            if should_stop is not None and should_stop(atlas.images, atlas.total):
                return True
        return False
    finally:
        bar.close()
        if folder is not None and atlas.stats:
            atlas.save(folder)


def _add_batch(
    atlas: UnitAtlas,
    view: nn.Module,
    module: nn.Module,
    names: list[str],
    calls: dict[str, int],
    x: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
) -> None:
    """Run one batch (B, C, H, W) and fold each layer's activations into the atlas."""
    outputs = _layer_outputs(view, module, names, calls, x)
    with _one_thread():
        for name, acts in outputs.items():
            if name not in atlas.stats:
                atlas.stats[name] = UnitStats(int(acts.shape[1]), k=atlas.k, q=atlas.q)
                size = (int(acts.shape[2]), int(acts.shape[3])) if acts.ndim == 4 else (1, 1)
                atlas.map_sizes[name] = size
            atlas.stats[name].update(acts, indices, labels)
    atlas.images += int(x.shape[0])


@contextmanager
def _one_thread() -> Iterator[None]:
    """The statistics' updates on one intra-op CPU thread (the forward keeps them all): they
    are many small operations, which split over threads wait on each other; on a busy 2-core
    machine a tiny index_add_ took 30 ms on 2 threads and 10 us on one (docs/benchmarks.md).
    The results do not depend on the thread count."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the initialized torch.distributed process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _distributed(
    atlas: UnitAtlas,
    items: PreparedItems,
    step: _Step,
    out: str | Path | None,
    progress: bool,
    should_stop: StopCheck | None,
) -> UnitAtlas:
    """This rank's shard (resumed from its own checkpoint in ``out/rank-<r>-of-<W>/``), then
    every rank's statistics merged in rank order (see :func:`unit_atlas`)."""
    rank, world = _process_group()
    indices = range(rank, len(items), world)
    folder = None if out is None else Path(out) / _rank_folder(rank, world)
    shard = _resumable(folder, step.names, atlas.k, atlas.q, _fingerprints(atlas))
    if shard is None:
        shard = UnitAtlas({}, atlas.k, atlas.q, 0, len(indices), *_fingerprints(atlas), {})
    elif shard.total != len(indices):
        raise ValueError(
            f"{folder} holds a shard of {shard.total} images; this pass gives rank {rank} of "
            f"{world} {len(indices)}. Pass another out= folder, or delete {folder}."
        )
    stopped = False
    if not shard.complete:
        data = Subset(items, indices[shard.images :])
        stopped = _fold(shard, data, step, folder, progress and rank == 0, should_stop,
                        desc=f"atlas (rank {rank})")  # fmt: skip
    states: list[Any] = [None] * world
    mine = {name: stats.state_dict() for name, stats in shard.stats.items()}
    dist.all_gather_object(states, (mine, shard.map_sizes, stopped))
    merged: dict[str, UnitStats] = {}
    for shard_states, sizes, _ in states:  # rank order: the merge does not depend on it anyway
        for name, state in shard_states.items():
            part = UnitStats.from_state_dict(state)
            merged[name] = merged[name].merge(part) if name in merged else part
            atlas.map_sizes.setdefault(name, sizes[name])
    atlas.stats = {name: merged[name] for name in step.names if name in merged}
    atlas.images = next(iter(atlas.stats.values())).images if atlas.stats else 0
    if any(rank_stopped for _, _, rank_stopped in states):
        return atlas  # incomplete; every rank resumes from its own checkpoint next time
    if out is not None:
        if rank == 0:
            atlas.save(out)
        dist.barrier()  # the whole result is saved: the shard checkpoints are not needed
        if folder is not None and folder.is_dir():
            shutil.rmtree(folder)
    return atlas


def _fingerprints(atlas: UnitAtlas) -> tuple[str, str]:
    return atlas.model_fingerprint, atlas.data_fingerprint


def _rank_folder(rank: int, world: int) -> str:
    return f"rank-{rank}-of-{world}"


def _refuse_other_world(out: str | Path | None, world: int) -> None:
    """A stopped torchrun pass resumes only with its own number of processes: each rank's
    checkpoint holds its own shard (images r, r + W, ...), which another W splits otherwise."""
    if out is None or not Path(out).is_dir():
        return
    for path in sorted(Path(out).glob("rank-*-of-*")):
        other = path.name.rpartition("-of-")[2]
        if path.is_dir() and other.isdigit() and int(other) != world:
            raise ValueError(
                f"{out} holds the checkpoints of a stopped {other}-process pass ({path.name}); "
                f"this one has {world}. Resume it with torchrun --nproc_per_node={other}, or "
                f"delete the rank-*-of-{other} folders to start over, or pass another out= folder."
            )


def _model_and_preprocess(
    model: ModelBundle | nn.Module, preprocess: AnyPreprocess | None
) -> tuple[nn.Module, AnyPreprocess]:
    check_module(model, bundle=True)
    if isinstance(model, ModelBundle):
        return model.module, preprocess or model.preprocess
    return model, preprocess or Preprocess.for_model(model)


def _layer_outputs(
    view: nn.Module, module: nn.Module, names: list[str], calls: dict[str, int], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Each layer's output for the batch ``x`` (B, C, H, W): (B, C, h, w) or (B, C)."""
    known = {name: calls[name] for name in names if name in calls}
    with torch.inference_mode(), capture(view, names, calls=known, stop_early=True) as taps:
        view(to_model_input(x, module))
    outputs = {}
    for name in names:
        acts = taps.tensor(name)
        if acts.ndim not in (2, 4):
            raise ValueError(
                f"{name} gives {tuple(acts.shape)}: the atlas keeps units of channel maps "
                "(N, C, h, w) or vectors (N, C); pick a convolutional layer."
            )
        outputs[name] = acts.float()
    # The Capture and its taps reference each other (tap -> pass -> owner -> taps): left to
    # the cyclic garbage collector, every batch's recorded outputs stayed alive until a rare
    # full collection (+119 MB of peak RSS at 10,000 Fashion-MNIST images). Emptying the
    # table breaks the cycle, so they are freed with this batch.
    taps.taps.clear()
    return outputs


def _resumable(
    out: str | Path | None, names: list[str], k: int, q: float, fingerprints: tuple[str, str]
) -> UnitAtlas | None:
    """The atlas saved in ``out`` for this very pass (same model, data, layers, k, q), to
    resume or return; None when there is none. A saved atlas of another model or data is
    refused with a message (it is never overwritten silently)."""
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
