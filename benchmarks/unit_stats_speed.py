"""Cost of UnitStats.update per batch against a plain torch.amax over the same activations.

    .venv/bin/python benchmarks/unit_stats_speed.py [--batch 64] [--units 256] [--size 14]
        [--batches 800] [--threads N] [--rank-cap 1024]

A realistic layer (default: B=64, C=256, 14x14, ReLU'd activations with a per-channel scale)
streamed for --batches batches (800 x 64 = 51,200 images: an ImageNet-validation-sized pass)
with fresh dataset indices and labels. Each batch times, interleaved, the update (every
statistic: top-k, moments, class means, upper quantile) and ``acts.amax(dim=(2, 3))`` (the
floor: one read of the activations). It prints, per window of batches, the mean and median
time of each and their ratio; the quantile's rate level shows where its cost stands (it
falls as the rate halves). The activations come from a pool of 8 random tensors (making
them is not timed); their indices are all distinct, so every batch is new to the hashes.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from cnnvis_widget.unit_stats import UnitStats, state_nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--size", type=int, default=14)
    parser.add_argument("--batches", type=int, default=800)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rank-cap", type=int, default=1024)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.units, args.size, args.size)
    scale = torch.rand(1, args.units, 1, 1, generator=g) * 2 + 0.1
    pool = [torch.relu(torch.randn(shape, generator=g) * scale - 0.3) for _ in range(8)]
    stats = UnitStats(args.units, rank_cap=args.rank_cap)
    update_s, amax_s, levels = [], [], []
    for step in range(args.batches):
        acts = pool[step % len(pool)]
        indices = torch.arange(step * args.batch, (step + 1) * args.batch)
        labels = torch.randint(0, 1000, (args.batch,), generator=g)
        start = time.perf_counter()
        stats.update(acts, indices, labels)
        middle = time.perf_counter()
        acts.amax(dim=(2, 3))
        end = time.perf_counter()
        update_s.append(middle - start)
        amax_s.append(end - middle)
        levels.append(stats.quantile.level)
    start = time.perf_counter()
    stats.thresholds()
    read_s = time.perf_counter() - start

    print(
        f"layer B={args.batch} C={args.units} {args.size}x{args.size}, "
        f"{torch.get_num_threads()} threads, rank_cap={args.rank_cap}"
    )
    print(f"{'batches':>13} {'update ms':>17} {'amax ms':>15} {'ratio':>13} {'rate level':>10}")
    print(f"{'':>13} {'mean':>8} {'median':>8} {'mean':>7} {'median':>7} {'mean':>6} {'median':>6}")
    bounds = [0, 20, 100, 300, args.batches - 100, args.batches]
    windows = sorted({(a, b) for a, b in itertools.pairwise(bounds) if 0 <= a < b})
    for a, b in [*windows, (0, args.batches)]:
        u, m = update_s[a:b], amax_s[a:b]
        if not u:
            continue
        mean_u, mean_m = statistics.mean(u) * 1e3, statistics.mean(m) * 1e3
        med_u, med_m = statistics.median(u) * 1e3, statistics.median(m) * 1e3
        lv = f"{levels[a]}-{levels[b - 1]}"
        print(
            f"{f'{a}-{b}':>13} {mean_u:8.2f} {med_u:8.2f} {mean_m:7.2f} {med_m:7.2f} "
            f"{mean_u / mean_m:6.1f} {med_u / med_m:6.1f} {lv:>10}"
        )
    print(f"thresholds() at the end: {read_s * 1e3:.1f} ms")
    print(f"state: {state_nbytes(stats.state_dict()) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
