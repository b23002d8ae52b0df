"""Command line for long runs outside a notebook (the notebook loads what it writes):

    python -m cnnvis_widget atlas --model fashion_cnn --data fashion_mnist:test \\
        --layers features.relu3 features.relu5 --k 9 --out runs/fashion

The same command under ``torchrun --nproc_per_node=N -m cnnvis_widget atlas ...`` shards the
data over N processes (gloo on CPU, NCCL on GPU) and gives the same result.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


def data_source(spec: str, limit: int | None) -> Any:
    """``fashion_mnist[:train|test]``, ``photos``, or a folder of images (sub-folders are
    labels); the first ``limit`` items when given."""
    from . import datasets

    name, _, split = spec.partition(":")
    if name == "fashion_mnist":
        data: Any = datasets.fashion_mnist(split=split or "test")
    elif name == "photos":
        data = datasets.photos()
    else:
        data = datasets.image_folder(spec)
    if limit is not None:
        data = torch.utils.data.Subset(data, range(min(limit, len(data))))
        data.paths = getattr(data.dataset, "paths", None)
    return data


def atlas_command(args: argparse.Namespace) -> int:
    from .atlas import unit_atlas
    from .models import load_model

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        bundle = load_model(args.model, pretrained=not args.random_weights)
        if torch.cuda.is_available():
            bundle.module.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        atlas = unit_atlas(
            bundle, data_source(args.data, args.limit), args.layers, k=args.k,
            batch_size=args.batch_size, num_workers=args.workers, out=args.out,
        )  # fmt: skip
        if not distributed or dist.get_rank() == 0:
            print(f"{atlas.images} images, layers {atlas.layers}: saved in {args.out}")
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnvis_widget", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    atlas = commands.add_parser("atlas", help="per-unit statistics of a pass over a data set")
    atlas.add_argument("--model", default="efficientnet_lite0", help="a cv.load_model name")
    atlas.add_argument("--random-weights", action="store_true", help="pretrained=False")
    atlas.add_argument("--data", required=True, help="fashion_mnist[:split], photos, or a folder")
    atlas.add_argument("--layers", nargs="+", required=True)
    atlas.add_argument("--k", type=int, default=9)
    atlas.add_argument("--out", required=True, help="folder for the result (and checkpoints)")
    atlas.add_argument("--batch-size", type=int, default=32)
    atlas.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    atlas.add_argument("--limit", type=int, default=None, help="only the first N items")
    args = parser.parse_args(argv)
    return atlas_command(args)


if __name__ == "__main__":
    sys.exit(main())
