"""The dataset pass (cv.unit_atlas) against a bare no-grad forward pass over the same DataLoader
(same batch size and workers), against the usual way (hooks that keep every activation, as
NetDissect-Lite does, then the statistics), and under torchrun with 1 and 2 processes (gloo,
CPU), for time and peak memory. Each measurement runs in a fresh process (peak RSS is its
own), each cell takes the fastest of ``--repeats`` runs, and every ratio comes from the same
invocation. Times are printed, never asserted: on a shared machine they are noisy.

    .venv/bin/python benchmarks/atlas_pass.py                 # fashion_cnn, 1,000 and 10,000
    .venv/bin/python benchmarks/atlas_pass.py --model efficientnet_lite0   # all 273 photos
    .venv/bin/python benchmarks/atlas_pass.py --sizes 1000 --repeats 1 --no-torchrun
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LAYERS = {
    "fashion_cnn": ["features.relu3", "features.relu5"],
    "efficientnet_lite0": ["_blocks.5._bn2", "_conv_head"],
}
DATA = {"fashion_cnn": "Fashion-MNIST training images", "efficientnet_lite0": "photos, 224 px"}
HERE = Path(__file__).resolve()


def dataset(model: str, size: int) -> Any:
    from torch.utils.data import Subset

    import cnnvis_widget as cv

    if model == "fashion_cnn":
        return Subset(cv.datasets.fashion_mnist(split="train"), range(size))
    photos = cv.datasets.photos()
    return Subset(photos, range(min(size, len(photos))))


def measure(mode: str, model: str, size: int, batch_size: int) -> dict[str, float]:
    """Run one measurement in this process and return seconds and peak RSS (MB)."""
    import torch
    from torch.utils.data import DataLoader

    import cnnvis_widget as cv
    from cnnvis_widget.dataset_pass import PreparedItems

    torch.manual_seed(0)
    bundle = cv.load_model(model)
    data = dataset(model, size)
    layers = LAYERS[model]
    start = time.perf_counter()
    if mode == "atlas":
        cv.unit_atlas(bundle, data, layers, k=9, batch_size=batch_size, progress=False)
    else:
        loader = DataLoader(PreparedItems(data, bundle.preprocess), batch_size=batch_size)
        kept: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        with torch.no_grad():
            if mode == "forward":
                for x, _, _ in loader:
                    bundle.module(x)
            else:  # "store": keep every activation (NetDissect-Lite writes them to disk)
                with cv.capture.capture(bundle.module, layers) as taps:
                    for x, _, _ in loader:
                        bundle.module(x)
                        for name in layers:
                            kept[name].append(taps.tensor(name).clone())
                for name in layers:
                    acts = torch.cat(kept[name])  # then the statistics, the plain way
                    acts.amax(dim=(2, 3)).topk(9, dim=0)
                    acts.mean(dim=(2, 3)).mean(0)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def distributed_worker(model: str, size: int, batch_size: int) -> None:
    """One torchrun rank: the atlas pass on its shard; rank 0 prints the slowest rank's
    seconds and the largest peak RSS of a rank."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    result = measure("atlas", model, size, batch_size)
    results: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(results, result)
    if dist.get_rank() == 0:
        print(json.dumps({key: max(r[key] for r in results) for key in result}))
    dist.destroy_process_group()


def in_fresh_process(mode: str, model: str, size: int, batch_size: int) -> dict[str, float]:
    if mode.startswith("torchrun"):
        nproc = mode.removeprefix("torchrun")
        command = [
            "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(HERE), "--worker", "--model", model, "--sizes", str(size),
            "--batch-size", str(batch_size),
        ]  # fmt: skip
    else:
        code = (
            f"import json, sys; sys.path.insert(0, {str(HERE.parent)!r}); "
            "from atlas_pass import measure; "
            f"print(json.dumps(measure({mode!r}, {model!r}, {size}, {batch_size})))"
        )
        command = ["-c", code]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fashion_cnn", choices=sorted(LAYERS))
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torchrun", action="store_true", help="skip the torchrun columns")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lite = args.model == "efficientnet_lite0"
    sizes = args.sizes or ([273] if lite else [1000, 10000])
    batch_size = args.batch_size or (32 if lite else 100)
    if args.worker:
        distributed_worker(args.model, sizes[0], batch_size)
        return
    modes = ["forward", "atlas", "store"] + ([] if args.no_torchrun else ["torchrun1", "torchrun2"])
    print(
        f"{args.model} on {DATA[args.model]}, layers {LAYERS[args.model]}, batch {batch_size}, "
        f"workers 0, {os.cpu_count()} CPUs, fastest of {args.repeats} runs"
    )
    print(
        "images | forward s | atlas s | atlas/forward | atlas img/s | store s | "
        "torchrun 1 s | torchrun 2 s | forward MB | atlas MB | store MB | torchrun 2 MB/rank"
    )
    for size in sizes:
        # the modes interleaved within each repeat, so load changes hit all of them
        got: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:
                got[mode].append(in_fresh_process(mode, args.model, size, batch_size))
        r = {
            mode: {
                "seconds": min(run["seconds"] for run in runs),
                "peak_mb": max(run["peak_mb"] for run in runs),
            }
            for mode, runs in got.items()
        }
        images = min(size, 273) if lite else size
        cell = {mode: f"{r[mode]['seconds']:.2f}" if mode in r else "-" for mode in modes}
        mb = {mode: f"{r[mode]['peak_mb']:.0f}" if mode in r else "-" for mode in modes}
        print(
            f"{images} | {cell['forward']} | {cell['atlas']} | "
            f"{r['atlas']['seconds'] / r['forward']['seconds']:.2f}x | "
            f"{images / r['atlas']['seconds']:.0f} | {cell['store']} | "
            f"{cell.get('torchrun1', '-')} | {cell.get('torchrun2', '-')} | {mb['forward']} | "
            f"{mb['atlas']} | {mb['store']} | {mb.get('torchrun2', '-')}"
        )


if __name__ == "__main__":
    main()
