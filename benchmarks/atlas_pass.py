"""The dataset pass (cv.unit_atlas) against a bare no-grad forward pass over the same DataLoader
(same batch size and workers), and against the usual way (hooks that keep every activation,
then the statistics), for time and peak memory. Each measurement runs in a fresh process, so
peak RSS is its own.

    .venv/bin/python benchmarks/atlas_pass.py                 # fashion_cnn on Fashion-MNIST
    .venv/bin/python benchmarks/atlas_pass.py --sizes 1000 10000 --model fashion_cnn
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

LAYERS = {"fashion_cnn": ["features.relu3", "features.relu5"]}


def measure(mode: str, model: str, size: int, batch_size: int) -> dict[str, float]:
    """Run one measurement in this process and return seconds and peak RSS (MB)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    import cnnvis_widget as cv
    from cnnvis_widget.atlas.run import PreparedItems

    torch.manual_seed(0)
    bundle = cv.load_model(model)
    data = Subset(cv.datasets.fashion_mnist(split="train"), range(size))
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
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb}


def in_fresh_process(mode: str, model: str, size: int, batch_size: int) -> dict[str, float]:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); from atlas_pass import measure; "
        f"print(json.dumps(measure({mode!r}, {model!r}, {size}, {batch_size})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fashion_cnn", choices=sorted(LAYERS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    print(f"{args.model}, layers {LAYERS[args.model]}, batch {args.batch_size}, workers 0")
    print("images | forward s | atlas s | ratio | store s | atlas MB | store MB | forward MB")
    for size in args.sizes:
        forward = in_fresh_process("forward", args.model, size, args.batch_size)
        atlas = in_fresh_process("atlas", args.model, size, args.batch_size)
        store = in_fresh_process("store", args.model, size, args.batch_size)
        print(
            f"{size} | {forward['seconds']:.2f} | {atlas['seconds']:.2f} | "
            f"{atlas['seconds'] / forward['seconds']:.2f}x | {store['seconds']:.2f} | "
            f"{atlas['peak_mb']:.0f} | {store['peak_mb']:.0f} | {forward['peak_mb']:.0f}"
        )


if __name__ == "__main__":
    main()
