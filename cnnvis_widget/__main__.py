"""Command line for long runs outside a notebook (the notebook loads what it writes):

    python -m cnnvis_widget atlas --model fashion_cnn --data fashion_mnist:test \\
        --layers features.relu3 features.relu5 --k 9 --out runs/fashion
    python -m cnnvis_widget dissect --model efficientnet_lite0 --data concepts \\
        --layers _blocks.5._bn2 _conv_head --out runs/dissect
    python -m cnnvis_widget relevant --model fashion_cnn --data fashion_mnist:train \\
        --mu 10 --out runs/relevant

The same commands under ``torchrun --nproc_per_node=N -m cnnvis_widget ...`` shard the data
over N processes (gloo on CPU, NCCL on GPU) and give the same result.

Data (``--data``):
  atlas, relevant: fashion_mnist[:train|test], photos, or a folder of images (sub-folders =
           labels; relevant needs labels)
  dissect: concepts[:key=value,...]   the offline concept set, cv.datasets.concepts(); keys
                                      per_concept, whole_per_concept, size, mask_size, seed
                                      (ints) and cache_dir, e.g. concepts:per_concept=2,size=96
           broden:PATH                a Broden-format folder, cv.datasets.broden(PATH)
           labels:PATH:NAMES          a label-map folder, cv.datasets.label_folder(PATH, names):
                                      NAMES is a text file, line i names class id i (line 0:
                                      "no label"); "name,category" puts it in a category
                                      (default object)
A dissection writes DIR/atlas, DIR/tally and DIR/dissection.json (reload it with
cv.DissectionResult.load(DIR)) and DIR/report.html; it prints the unique detectors per layer
and category. ``relevant`` (Oramas et al.'s relevant filters per class; ``--layers`` defaults
to every convolution) writes DIR (reload it with cv.RelevantFeatures.load(DIR)) and prints
each class's relevant filters.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

CONCEPT_INT_KEYS = ("per_concept", "whole_per_concept", "size", "mask_size", "seed")


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
    return first_items(data, limit)


def concept_source(spec: str, limit: int | None) -> Any:
    """A concept data set from ``concepts[:key=value,...]``, ``broden:PATH`` or
    ``labels:PATH:NAMES`` (module docstring); the first ``limit`` items when given."""
    from . import datasets

    name, _, rest = spec.partition(":")
    if name == "concepts":
        options: dict[str, Any] = {}
        for pair in filter(None, rest.split(",")):
            key, equals, value = pair.partition("=")
            if not equals or key not in (*CONCEPT_INT_KEYS, "cache_dir"):
                raise SystemExit(
                    f"--data concepts: {pair!r} is not key=value with a key of "
                    f"{[*CONCEPT_INT_KEYS, 'cache_dir']}."
                )
            options[key] = value if key == "cache_dir" else int(value)
        data: Any = datasets.concepts(**options)
    elif name == "broden" and rest:
        data = datasets.broden(rest)
    elif name == "labels" and ":" in rest:
        folder, _, names_file = rest.rpartition(":")
        names, categories = read_names(Path(names_file))
        data = datasets.label_folder(folder, names, category=categories or "object")
    else:
        raise SystemExit(
            f"--data {spec!r}: a dissection needs concept data: concepts[:key=value,...], "
            "broden:PATH or labels:PATH:NAMES (python -m cnnvis_widget --help)."
        )
    return first_items(data, limit)


def read_names(path: Path) -> tuple[list[str], dict[str, str]]:
    """Class names, one a line (line i: id i), and ``{name: category}`` for ``name,category``
    lines (the others are left to the default category)."""
    names, categories = [], {}
    for line in path.read_text().splitlines():
        name, comma, category = (part.strip() for part in line.partition(","))
        names.append(name)
        if comma and category:
            categories[name] = category
    return names, categories


def first_items(data: Any, limit: int | None) -> Any:
    """``data``, or its first ``limit`` items keeping ``paths`` and ``concepts``."""
    if limit is None:
        return data
    subset: Any = torch.utils.data.Subset(data, range(min(limit, len(data))))
    subset.paths = getattr(data, "paths", None)
    if hasattr(data, "concepts"):
        subset.concepts = data.concepts
    return subset


@contextmanager
def process_group() -> Iterator[bool]:
    """Under torchrun (WORLD_SIZE > 1) a process group (NCCL on GPU, else gloo) for the block;
    yields whether this is rank 0 (the one that prints)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield not distributed or dist.get_rank() == 0
    finally:
        if distributed:
            dist.destroy_process_group()


def load_bundle(args: argparse.Namespace) -> Any:
    """``--model`` (``--random-weights``), on this rank's GPU when there is one."""
    from .models import load_model

    bundle = load_model(args.model, pretrained=not args.random_weights)
    if torch.cuda.is_available():
        bundle.module.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return bundle


def atlas_command(args: argparse.Namespace) -> int:
    from .atlas import unit_atlas

    with process_group() as main_rank:
        atlas = unit_atlas(
            load_bundle(args), data_source(args.data, args.limit), args.layers, k=args.k,
            batch_size=args.batch_size, num_workers=args.workers, out=args.out,
        )  # fmt: skip
        if main_rank:
            print(f"{atlas.images} images, layers {atlas.layers}: saved in {args.out}")
    return 0


def dissect_command(args: argparse.Namespace) -> int:
    from .dissection import dissect

    with process_group() as main_rank:
        bundle = load_bundle(args)
        # rank 0 first: a concept set not yet in the cache is built once, then read by all
        data = concept_source(args.data, args.limit) if main_rank else None
        if dist.is_initialized():
            dist.barrier()
        result = dissect(
            bundle, concept_source(args.data, args.limit) if data is None else data, args.layers,
            q=args.q, iou_threshold=args.iou_threshold, top_k=args.top_k, upsample=args.upsample,
            union=args.union, batch_size=args.batch_size, num_workers=args.workers,
            out=args.out, progress=main_rank, cache_mb=args.cache_mb,
        )  # fmt: skip
        if main_rank:
            print(summary_text(result))
            report = write_report(result, Path(args.out), bundle)
            print(f"saved in {args.out}" + (f"; report {report}" if report else ""))
    return 0


def relevant_command(args: argparse.Namespace) -> int:
    from .interpretation import relevant_features

    with process_group() as main_rank:
        data = data_source(args.data, args.limit)
        result = relevant_features(
            load_bundle(args), data, args.layers or None, mu=args.mu, pool=args.pool,
            per_class=args.per_class, batch_size=args.batch_size, num_workers=args.workers,
            out=args.out, progress=main_rank,
        )  # fmt: skip
        if main_rank:
            print(relevant_text(result, result.class_names))
            print(f"saved in {args.out}")
    return 0


def relevant_text(result: Any, names: list[str] | None, top: int = 5) -> str:
    """Each class's count of relevant filters and its ``top`` strongest, one line a class."""
    lines = [f"{result.responses.images} images; mu {result.mu}; relevant filters per class:"]
    for label in result.classes:
        found = result.relevant(label)
        name = names[label] if names and 0 <= label < len(names) else str(label)
        strongest = ", ".join(f"{f.layer}:{f.channel} ({f.weight:.2f})" for f in found[:top])
        lines.append(f"{name}: {len(found)} | {strongest}")
    return "\n".join(lines)


def summary_text(result: Any) -> str:
    """The unique detectors per layer and category, as a table."""
    categories = list(result.table.categories)
    lines = [
        f"{result.images} of {result.total} images; unique detectors (IoU > "
        f"{result.iou_threshold}) per category:",
        "layer | units | detectors | " + " | ".join(categories),
    ]
    for layer, counts in result.summary().items():
        units = len(result.layers[layer].thresholds)
        detectors = len(result.detectors(layer))
        cells = " | ".join(str(counts[category]) for category in categories)
        lines.append(f"{layer} | {units} | {detectors} | {cells}")
    return "\n".join(lines)


def write_report(result: Any, folder: Path, bundle: Any) -> Path | None:
    """``folder/report.html`` (the units' segmentations drawn with ``bundle``) when the result
    has ``to_html``; None otherwise."""
    to_html: Callable[..., Any] | None = getattr(result, "to_html", None)
    if to_html is None or not result.complete:
        return None
    return Path(to_html(folder / "report.html", bundle))


def pass_arguments(
    command: argparse.ArgumentParser, data_help: str, required_layers: bool = True
) -> None:
    """The arguments every dataset-pass command shares: model, data, layers, out, loader."""
    command.add_argument("--model", default="efficientnet_lite0", help="a cv.load_model name")
    command.add_argument("--random-weights", action="store_true", help="pretrained=False")
    command.add_argument("--data", required=True, help=data_help)
    command.add_argument("--layers", nargs="+", required=required_layers)
    command.add_argument("--out", required=True, help="folder for the result (and checkpoints)")
    command.add_argument("--batch-size", type=positive_int, default=32)
    command.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    command.add_argument("--limit", type=positive_int, default=None, help="only the first N items")


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more; got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnvis_widget", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    atlas = commands.add_parser("atlas", help="per-unit statistics of a pass over a data set")
    pass_arguments(atlas, "fashion_mnist[:split], photos, or a folder")
    atlas.add_argument("--k", type=int, default=9)
    dissect = commands.add_parser("dissect", help="Network Dissection over concept data")
    pass_arguments(dissect, "concepts[:key=value,...], broden:PATH or labels:PATH:NAMES")
    dissect.add_argument("--q", type=float, default=0.005, help="top quantile (threshold)")
    dissect.add_argument("--iou-threshold", type=float, default=0.04)
    dissect.add_argument("--top-k", type=int, default=10, help="top images kept per unit")
    dissect.add_argument("--union", choices=("lite", "annotated"), default="lite")
    dissect.add_argument(
        "--upsample", choices=("bilinear", "nearest", "receptive_field"), default="bilinear"
    )
    dissect.add_argument(
        "--cache-mb", type=float, default=1024,
        help="memory for the first pass's maps, read again by the tally (0: run the model again)",
    )  # fmt: skip
    relevant = commands.add_parser("relevant", help="relevant filters per class (Oramas et al.)")
    pass_arguments(relevant, "fashion_mnist[:split], photos, or a folder", required_layers=False)
    relevant.add_argument("--mu", type=float, default=10.0, help="L1 budget of each class")
    relevant.add_argument("--pool", choices=("l2sq", "l2", "mean", "max"), default="l2sq")
    relevant.add_argument("--per-class", type=int, default=None, help="balanced sample size")
    args = parser.parse_args(argv)
    commands_run = {"atlas": atlas_command, "dissect": dissect_command}
    try:
        return commands_run.get(args.command, relevant_command)(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError) as error:
        # Bad input, already explained by the message: no traceback.
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
