"""The dataset pass engine: run a model once over a data set and fold every batch's layer outputs
into a statistic (memory does not grow with the data), with progress, stop, checkpoints,
resume, and sharding under ``torchrun``. The unit atlas (:mod:`cnnvis_widget.atlas`) and
Network Dissection's IoU tally (:mod:`cnnvis_widget.dissection`) are two such statistics.

A statistic is any object with the :class:`Folded` methods. The engine gives it, batch by
batch, each chosen layer's output (B, C, h, w) or (B, C) in float32, the items' targets and
their dataset indices; it saves it every ``checkpoint_every`` batches and when the pass ends
(also on an error or KeyboardInterrupt). Under torchrun each rank folds its own shard (images
r, r + W, ...; ``DistributedSampler(shuffle=False)``'s shard without the padding, which would
count images twice) into its own copy, checkpointed in ``out/rank-<r>-of-<W>/``, and the
ranks' shard states are merged with ``all_gather_object``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .capture import capture
from .checks import check_module
from .layers import layers as layer_table
from .model_view import eval_view
from .models import AnyPreprocess, ModelBundle, Preprocess, to_model_input
from .pass_cache import Batch, OutputCache

StopCheck = Callable[[int, int], bool]
"""``should_stop(images_done, total) -> bool``, asked after every batch."""


class Folded(Protocol):
    """A statistic the pass folds batches into. ``images``: images folded so far; ``total``:
    images it is meant to see (``images == total``: complete)."""

    images: int
    total: int

    def add_batch(
        self, outputs: dict[str, torch.Tensor], targets: Any, indices: torch.Tensor
    ) -> None:
        """Fold one batch: each layer's output, the items' targets (a (B,) label tensor, -1
        = none, or a list of per-item objects) and their dataset indices (B,)."""

    def save(self, folder: str | Path) -> Path:
        """Write the state to ``folder`` (each file replaced whole, so a kill keeps the last)."""
        ...

    def shard_state(self) -> Any:
        """This shard's state, picklable (sent to every rank)."""

    def merge_shards(self, states: list[Any]) -> None:
        """Become the merge of every rank's shard state (in rank order)."""


class PreparedItems(Dataset[tuple[torch.Tensor, Any, int]]):
    """``data``'s items as (model input (C, H, W), target, dataset index): an item is an
    image, or an (image, target) pair (target: an int label, or any object the statistic
    reads, e.g. concept masks); images go through ``preprocess``; no target gives -1. Runs in
    DataLoader workers, so the model never leaves the main process."""

    def __init__(self, data: Any, preprocess: AnyPreprocess) -> None:
        self.data, self.preprocess = data, preprocess

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any, int]:
        image, target = split_item(self.data[index])
        return self.preprocess(image)[0], target, index


def split_item(item: Any) -> tuple[Any, Any]:
    """A data set item as (image, target): an item is an image (target -1), or an (image,
    target) pair; a 0-d tensor or NumPy integer target becomes an int."""
    image, target = item if isinstance(item, tuple) and len(item) == 2 else (item, -1)
    if (isinstance(target, torch.Tensor) and target.ndim == 0) or isinstance(target, np.integer):
        target = int(target)
    return image, target


def class_names(data: Any) -> list[str]:
    """The data set's class names (``data.classes``, or its base data set's for a
    ``torch.utils.data.Subset``); none when it has none."""
    classes = getattr(data, "classes", None)
    if classes is None and isinstance(data, Subset):
        classes = getattr(data.dataset, "classes", None)
    if isinstance(classes, Sequence) and all(isinstance(c, str) for c in classes):
        return list(classes)
    return []


def collate(batch: list[tuple[torch.Tensor, Any, int]]) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Stack the inputs; int targets become a (B,) tensor, other targets stay a list."""
    inputs = torch.stack([x for x, _, _ in batch])
    targets = [target for _, target, _ in batch]
    indices = torch.tensor([index for _, _, index in batch], dtype=torch.int64)
    if all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
        return inputs, torch.tensor(targets, dtype=torch.int64), indices
    return inputs, targets, indices


@dataclass(frozen=True)
class PassSetup:
    """What every batch of a pass needs: the model's eval view, the layers (and how often
    each runs), the loader settings."""

    view: nn.Module
    module: nn.Module
    names: list[str]
    calls: dict[str, int]
    batch_size: int
    num_workers: int
    checkpoint_every: int
    desc: str = "pass"

    @classmethod
    def of(
        cls, module: nn.Module, names: list[str], first: torch.Tensor, batch_size: int,
        num_workers: int, checkpoint_every: int, desc: str,
    ) -> PassSetup:  # fmt: skip
        """Probe the layers' call counts with one input ``first`` (C, H, W)."""
        calls = {info.name: info.calls for info in layer_table(module, first[None])}
        view = eval_view(module)
        return cls(view, module, names, calls, batch_size, num_workers, checkpoint_every, desc)


def model_and_preprocess(
    model: ModelBundle | nn.Module, preprocess: AnyPreprocess | None
) -> tuple[nn.Module, AnyPreprocess]:
    """The module and the preprocess to use: the bundle's, or ``Preprocess.for_model``."""
    check_module(model, bundle=True)
    if isinstance(model, ModelBundle):
        return model.module, preprocess or model.preprocess
    return model, preprocess or Preprocess.for_model(model)


def process_group() -> tuple[int, int]:
    """(rank, world size) of the initialized torch.distributed process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fold(
    result: Folded,
    items: Dataset[tuple[torch.Tensor, Any, int]],
    setup: PassSetup,
    folder: str | Path | None,
    progress: bool,
    should_stop: StopCheck | None,
    *,
    keep: OutputCache | None = None,
    reuse: OutputCache | None = None,
) -> bool:
    """Fold ``items`` (those ``result`` has yet to see) into ``result`` batch by batch, saved
    in ``folder`` every ``checkpoint_every`` batches and when it ends (also on an error or a
    KeyboardInterrupt: what was done is kept). True when ``should_stop`` stopped it.

    ``keep``: a cache that also receives every batch's outputs (a later pass over the same
    items may ``reuse`` it). ``reuse``: a cache holding exactly these items' batches (a
    ``Subset`` of :class:`PreparedItems`), read instead of running the model; any other
    cache is ignored and the model runs."""
    bar = tqdm(
        total=result.total, initial=result.images, unit="img", disable=not progress,
        desc=setup.desc,
    )  # fmt: skip
    started = result.images
    if keep is not None:
        keep.setup = setup
    try:
        for batch_number, (outputs, targets, indices) in enumerate(
            _batches(items, setup, reuse), start=1
        ):
            if keep is not None:
                keep.keep(outputs, targets, indices)
            with one_thread():
                result.add_batch(outputs, targets, indices)
            bar.update(int(indices.numel()))
            if folder is not None and batch_number % setup.checkpoint_every == 0:
                result.save(folder)
            if should_stop is not None and should_stop(result.images, result.total):
                return True
        return False
    finally:
        bar.close()
        if folder is not None and result.images > started:
            result.save(folder)


def _batches(
    items: Dataset[tuple[torch.Tensor, Any, int]], setup: PassSetup, reuse: OutputCache | None
) -> Iterable[Batch]:
    """The batches of ``items``: from ``reuse`` when it holds exactly them, else computed."""
    if reuse is not None and isinstance(items, Subset) and reuse.covers(items.indices):
        return reuse
    return _computed_batches(items, setup)


def _computed_batches(
    items: Dataset[tuple[torch.Tensor, Any, int]], setup: PassSetup
) -> Iterator[Batch]:
    loader = DataLoader(
        items, batch_size=setup.batch_size, num_workers=setup.num_workers, shuffle=False,
        collate_fn=collate,
    )  # fmt: skip
    for x, targets, indices in loader:
        yield layer_outputs(setup, x), targets, indices


def fold_distributed(
    result: Folded,
    items: PreparedItems,
    setup: PassSetup,
    out: str | Path | None,
    progress: bool,
    should_stop: StopCheck | None,
    shard_of: Callable[[Path | None, int], Folded],
    *,
    keep: OutputCache | None = None,
    reuse: OutputCache | None = None,
) -> bool:
    """This rank's shard, resumed from ``out/rank-<r>-of-<W>/`` (``shard_of(folder, n)``
    loads it or starts a new one of ``n`` images), then every rank's shard merged into
    ``result``. True when some rank stopped (the merge so far is then incomplete; each rank
    resumes from its own checkpoint next time); else rank 0 saves the whole result in ``out``
    and the shard checkpoints are deleted. ``keep`` / ``reuse``: as :func:`fold`, for this
    rank's shard."""
    rank, world = process_group()
    indices = range(rank, len(items), world)
    folder = None if out is None else Path(out) / rank_folder(rank, world)
    shard = shard_of(folder, len(indices))
    if shard.total != len(indices):
        raise ValueError(
            f"{folder} holds a shard of {shard.total} images; this pass gives rank {rank} of "
            f"{world} {len(indices)}. Pass another out= folder, or delete {folder}."
        )
    stopped = False
    if shard.images < shard.total:
        remaining = Subset(items, indices[shard.images :])
        setup = PassSetup(**{**vars(setup), "desc": f"{setup.desc} (rank {rank})"})
        stopped = fold(
            shard, remaining, setup, folder, progress and rank == 0, should_stop,
            keep=keep, reuse=reuse,
        )  # fmt: skip
    states: list[Any] = [None] * world
    dist.all_gather_object(states, (shard.shard_state(), stopped))
    result.merge_shards([state for state, _ in states])
    if any(rank_stopped for _, rank_stopped in states):
        return True
    if out is not None:
        if rank == 0:
            result.save(out)
        dist.barrier()  # the whole result is saved: the shard checkpoints are not needed
        if folder is not None and folder.is_dir():
            shutil.rmtree(folder)
    return False


def run_pass(
    result: Folded,
    items: PreparedItems,
    setup: PassSetup,
    out: str | Path | None,
    progress: bool,
    should_stop: StopCheck | None,
    shard_of: Callable[[Path | None, int], Folded],
    *,
    keep: OutputCache | None = None,
    reuse: OutputCache | None = None,
) -> None:
    """Fold into ``result`` the items it has yet to see: in one process from ``result.images``
    on (:func:`fold`, checkpoints in ``out``); under torchrun by shards (:func:`fold_distributed`,
    ``shard_of`` making or resuming each rank's). A stopped multi-process pass resumes only
    with its own number of processes, and a pass stopped in one process resumes in one."""
    world = process_group()[1]
    refuse_other_world(out, world)
    if world > 1:
        if result.images:
            raise ValueError(f"{out} holds a stopped pass; resume it in one process.")
        fold_distributed(
            result, items, setup, out, progress, should_stop, shard_of, keep=keep, reuse=reuse
        )
        return
    remaining = Subset(items, range(result.images, result.total))
    fold(result, remaining, setup, out, progress, should_stop, keep=keep, reuse=reuse)


def check_unchanged(
    module: nn.Module, fingerprint: str, out: str | Path | None, what: str = "statistics"
) -> None:
    """Refuse a pass during which the model's weights changed (a training step in another
    thread, an in-place edit): its ``what`` would mix two models. ``fingerprint``: the
    model's :func:`~cnnvis_widget.atlas.fingerprint.model_fingerprint` before the pass."""
    from .atlas.fingerprint import model_fingerprint  # the atlas package imports this module

    if model_fingerprint(module) == fingerprint:
        return
    where = f" The {what} saved in {out} mix them too: delete that folder." if out else ""
    raise ValueError(
        f"the model's parameters or buffers changed during the pass, so its {what} mix two "
        f"models; run it again on a model nothing changes meanwhile.{where}"
    )


def layer_outputs(setup: PassSetup, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's output for the batch ``x`` (B, C, H, W): (B, C, h, w) or (B, C), float32."""
    names, calls = setup.names, setup.calls
    known = {name: calls[name] for name in names if name in calls}
    with torch.inference_mode(), capture(setup.view, names, calls=known, stop_early=True) as taps:
        setup.view(to_model_input(x, setup.module))
    outputs = {}
    for name in names:
        acts = taps.tensor(name)
        if acts.ndim not in (2, 4):
            raise ValueError(
                f"{name} gives {tuple(acts.shape)}: a dataset pass keeps units of channel maps "
                "(N, C, h, w) or vectors (N, C); pick a convolutional layer."
            )
        outputs[name] = acts.float()
    # The Capture and its taps reference each other (tap -> pass -> owner -> taps): left to
    # the cyclic garbage collector, every batch's recorded outputs stayed alive until a rare
    # full collection (+119 MB of peak RSS at 10,000 Fashion-MNIST images). Emptying the
    # table breaks the cycle, so they are freed with this batch.
    taps.taps.clear()
    return outputs


@contextmanager
def one_thread() -> Iterator[None]:
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


def rank_folder(rank: int, world: int) -> str:
    return f"rank-{rank}-of-{world}"


def refuse_other_world(out: str | Path | None, world: int) -> None:
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


def save_state(
    folder: str | Path,
    states: dict[str, dict[str, torch.Tensor]],
    manifest: dict[str, Any],
    state_file: str,
    manifest_file: str,
) -> Path:
    """Write per-layer state dicts (saved as ``"<layer>/<key>"`` tensors with ``torch.save``)
    and a JSON manifest into ``folder`` (created). Each file is replaced whole (write, then
    rename): a pass killed while saving leaves the previous checkpoint readable. Keep the
    image count that matters inside the states, so a state newer than its manifest still
    resumes correctly."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{layer}/{key}": value for layer, state in states.items() for key, value in state.items()
    }
    torch.save(tensors, path / f"{state_file}.tmp")
    os.replace(path / f"{state_file}.tmp", path / state_file)
    (path / f"{manifest_file}.tmp").write_text(json.dumps(manifest, indent=1))
    os.replace(path / f"{manifest_file}.tmp", path / manifest_file)
    return path


def load_states(path: Path, layers: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """The per-layer state dicts :func:`save_state` wrote to ``path`` (the state file),
    read with ``weights_only=True``."""
    tensors = torch.load(path, weights_only=True)
    return {
        layer: {k[len(layer) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{layer}/")}
        for layer in layers
    }


def check_out_folder(out: str | Path | None) -> None:
    """Refuse an ``out=`` that exists and is not a folder, before any pass runs (it would
    fail at the first checkpoint, after the work)."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out={str(out)!r} is a file; pass a folder (created when missing).")


def read_manifest(
    folder: str | Path,
    state_file: str,
    manifest_file: str,
    *,
    what: str,
    run_first: str,
    model_fingerprint: str | None = None,
    data_fingerprint: str | None = None,
) -> dict[str, Any]:
    """The JSON manifest a pass saved in ``folder`` (with its state file next to it), refused
    with a message when either is missing (``run_first`` says what writes them) or, given
    fingerprints, when the saved ``what`` ("atlas", "responses") was computed on another model
    or other data."""
    path = Path(folder)
    if not (path / manifest_file).is_file() or not (path / state_file).is_file():
        raise FileNotFoundError(
            f"{path} holds no saved {what} ({manifest_file} + {state_file}); run {run_first} first."
        )
    manifest: dict[str, Any] = json.loads((path / manifest_file).read_text())
    sources = (("model", "model", model_fingerprint), ("data", "data set", data_fingerprint))
    for source, name, expected in sources:
        saved = manifest[f"{source}_fingerprint"]
        if expected is not None and expected != saved:
            were = "were" if what.endswith("s") else "was"
            raise ValueError(
                f"the {what} in {path} {were} computed on another {name} (fingerprint "
                f"{saved[:12]}, this one {expected[:12]}); compute it again with {run_first} "
                "(another out= folder, or delete this one)."
            )
    return manifest
