"""Network Dissection (cv.dissect: two dataset passes) of EfficientNet-Lite0 against a bare
no-grad forward pass over the same images and DataLoader settings (same preprocess, batch size
and workers), against the store-everything way (hooks keep every activation, as
NetDissect-Lite does, then a NumPy quantile per unit and the IoU tally over the stored maps),
for one layer and four layers, and under torchrun with 2 processes (gloo, CPU). Each
measurement runs in a fresh process (peak RSS is its own), the cells interleaved and the
fastest of ``--repeats`` kept, as benchmarks/atlas_pass.py does; every ratio comes from the
same invocation. Times are printed, never asserted: on a shared machine they are noisy. The target
for one layer is dissect / forward <= 2 (two passes over the data). "dissect" keeps the first
pass's maps for the tally (the default, ``cache_mb=1024``); "rerun" (``cache_mb=0``) runs the
model again in the tally pass, as a data set too large for the cache does.

    .venv/bin/python benchmarks/dissection_pass.py                      # 160 images
    .venv/bin/python benchmarks/dissection_pass.py --images 480 --repeats 3
    .venv/bin/python benchmarks/dissection_pass.py --images 64 --repeats 1 --no-torchrun
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

MODEL = "efficientnet_lite0"
LAYERS = {
    "1": ["_conv_head"],
    "4": ["_blocks.2._bn2", "_blocks.5._bn2", "_blocks.10._bn2", "_conv_head"],
}
Q = 0.005
HERE = Path(__file__).resolve()


def concept_data(images: int) -> tuple[Any, str]:
    """``images`` items spread over the offline concept set (every kind: object, texture,
    whole-image texture), else, when it cannot be built, the photos with colour labels."""
    from torch.utils.data import Subset

    import cnnvis_widget as cv

    try:
        data: Any = cv.datasets.concepts(progress=False)
        source = "cv.datasets.concepts() (offline concept set, 224 px, 112 px label maps)"
    except Exception as error:  # the fallback says why
        data = colour_labelled_photos()
        source = f"cv.datasets.photos() with colour labels (concepts() failed: {error})"
    step = max(1, len(data) // images)
    subset: Any = Subset(data, range(0, step * min(images, len(data)), step))
    subset.concepts = data.concepts
    return subset, source


def colour_labelled_photos() -> Any:
    """The 273 photos with per-pixel colour-term label maps (112 x 112): concept data."""
    import numpy as np

    import cnnvis_widget as cv
    from cnnvis_widget.datasets.concept_colors import COLOR_TERMS, name_colors
    from cnnvis_widget.datasets.concept_format import ConceptLabels, concept_table

    photos = cv.datasets.photos()

    class Coloured:
        concepts = concept_table({"color": list(COLOR_TERMS)})

        def __len__(self) -> int:
            return len(photos)

        def __getitem__(self, index: int) -> Any:
            image = photos[index][0].convert("RGB")
            small = np.asarray(image.resize((112, 112)))
            return image, ConceptLabels({"color": [name_colors(small).astype(np.int32) + 1]})

    return Coloured()


def preprocess_of(bundle: Any) -> Any:
    """The preprocess cv.dissect gives its passes (the whole image when it has WholeImage)."""
    from cnnvis_widget import preprocess
    from cnnvis_widget.dataset_pass import model_and_preprocess

    prepare = model_and_preprocess(bundle, None)[1]
    whole = getattr(preprocess, "WholeImage", None)
    return prepare if whole is None else whole(prepare)


def measure(mode: str, layers: str, images: int, batch_size: int) -> dict[str, Any]:
    """Run one measurement in this process: seconds, peak RSS (MB), the data's source."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    import cnnvis_widget as cv
    from cnnvis_widget.dataset_pass import PreparedItems, collate
    from cnnvis_widget.dissection.tally import IoUTally, unit_masks

    torch.manual_seed(0)
    bundle = cv.load_model(MODEL)
    data, source = concept_data(images)
    names = LAYERS[layers]
    start = time.perf_counter()
    if mode in ("dissect", "dissect_rerun"):  # the tally reads the kept maps / reruns the model
        cache_mb = 1024 if mode == "dissect" else 0
        cv.dissect(bundle, data, names, q=Q, batch_size=batch_size, progress=False,
                   cache_mb=cache_mb)  # fmt: skip
    else:
        loader = DataLoader(PreparedItems(data, preprocess_of(bundle)), batch_size=batch_size,
                            collate_fn=collate)  # fmt: skip
        with torch.no_grad():
            if mode == "forward":
                for x, _, _ in loader:
                    bundle.module(x)
            else:  # "store": keep every activation (NetDissect-Lite writes them to disk)
                kept: dict[str, list[torch.Tensor]] = {name: [] for name in names}
                labels: list[Any] = []
                with cv.capture.capture(bundle.module, names) as taps:
                    for x, targets, _ in loader:
                        bundle.module(x)
                        labels.extend(targets)
                        for name in names:
                            kept[name].append(taps.tensor(name).float().clone())
                for name in names:
                    acts = torch.cat(kept[name])
                    units = acts.shape[1]
                    flat = acts.transpose(0, 1).reshape(units, -1).numpy()
                    thresholds = torch.from_numpy(np.quantile(flat, 1 - Q, axis=1)).float()
                    tally = IoUTally(units, data.concepts)
                    for first in range(0, len(labels), batch_size):
                        part = labels[first : first + batch_size]
                        size = part[0].mask_size() or (112, 112)
                        maps = acts[first : first + batch_size]
                        tally.update(unit_masks(maps, thresholds, size, "bilinear"), part)
                    tally.iou()
    return {
        "seconds": time.perf_counter() - start,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "source": source,
    }


def distributed_worker(layers: str, images: int, batch_size: int) -> None:
    """One torchrun rank: the dissection on its shard; rank 0 prints the slowest rank's
    seconds and the largest peak RSS of a rank."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    result = measure("dissect", layers, images, batch_size)
    results: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(results, result)
    if dist.get_rank() == 0:
        slowest = {key: max(r[key] for r in results) for key in ("seconds", "peak_mb")}
        print(json.dumps({**result, **slowest}))
    dist.destroy_process_group()


def in_fresh_process(mode: str, layers: str, images: int, batch_size: int) -> dict[str, Any]:
    if mode == "torchrun2":
        command = [
            "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(HERE),
            "--worker", "--layers", layers, "--images", str(images),
            "--batch-size", str(batch_size),
        ]  # fmt: skip
    else:
        code = (
            f"import json, sys; sys.path.insert(0, {str(HERE.parent)!r}); "
            "from dissection_pass import measure; "
            f"print(json.dumps(measure({mode!r}, {layers!r}, {images}, {batch_size})))"
        )
        command = ["-c", code]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--layers", default=None, choices=sorted(LAYERS), help=argparse.SUPPRESS)
    parser.add_argument("--no-torchrun", action="store_true", help="skip the torchrun column")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        distributed_worker(args.layers, args.images, args.batch_size)
        return
    cells = [("forward", "1"), ("dissect", "1"), ("dissect_rerun", "1"), ("store", "1")]
    cells += [("dissect", "4"), ("dissect_rerun", "4"), ("store", "4")]
    if not args.no_torchrun:
        cells += [("torchrun2", "1")]
    got: dict[tuple[str, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
    for _ in range(args.repeats):  # the cells interleaved within each repeat
        for mode, layers in cells:
            got[(mode, layers)].append(in_fresh_process(mode, layers, args.images, args.batch_size))
    r = {
        cell: {
            "seconds": min(run["seconds"] for run in runs),
            "peak_mb": max(run["peak_mb"] for run in runs),
        }
        for cell, runs in got.items()
    }
    source = got[cells[0]][0]["source"]
    print(
        f"{MODEL}, {args.images} images of {source}; q {Q}; batch {args.batch_size}, "
        f"workers 0, {os.cpu_count()} CPUs, fastest of {args.repeats} runs, fresh processes"
    )
    forward = r[("forward", "1")]
    print(f"forward (no grad): {forward['seconds']:.1f} s, {forward['peak_mb']:.0f} MB peak RSS")
    print(
        "layers | dissect s | dissect/forward | rerun s | rerun/forward | store s | "
        "store/dissect | dissect MB | rerun MB | store MB"
    )
    for layers in LAYERS:
        d, e, s = (r[(mode, layers)] for mode in ("dissect", "dissect_rerun", "store"))
        print(
            f"{layers}: {', '.join(LAYERS[layers])} | {d['seconds']:.1f} | "
            f"{d['seconds'] / forward['seconds']:.2f}x | {e['seconds']:.1f} | "
            f"{e['seconds'] / forward['seconds']:.2f}x | {s['seconds']:.1f} | "
            f"{s['seconds'] / d['seconds']:.2f}x | {d['peak_mb']:.0f} | {e['peak_mb']:.0f} | "
            f"{s['peak_mb']:.0f}"
        )
    if ("torchrun2", "1") in r:
        t, d = r[("torchrun2", "1")], r[("dissect", "1")]
        print(
            f"torchrun 2 processes (gloo), 1 layer: {t['seconds']:.1f} s (slowest rank), "
            f"{d['seconds'] / t['seconds']:.2f}x the 1-process speed, {t['peak_mb']:.0f} MB "
            "peak RSS per rank"
        )


if __name__ == "__main__":
    main()
