"""Empirical receptive fields (cv empirical_receptive_field) on EfficientNet-Lite0, offline, CPU:

1. time for one unit of a mid layer over k atlas images, against a bare no-grad forward of
   the same k images (whole model, and stopped after the layer), printed as ratios, with the
   number of occluded copies run (restricted to the theoretical field, on crops) and the
   number the paper's procedure runs (every grid position on the whole image);
2. theoretical against empirical field size per layer, a few units per layer, over their top
   atlas images among the first ``--images`` photos (cv.datasets.photos()); the Markdown table
   replaces the block between the benchmark markers of docs/empirical_receptive_field.md.

    .venv/bin/python benchmarks/empirical_field.py                  # a few minutes of CPU
    .venv/bin/python benchmarks/empirical_field.py --no-write       # print only

Times are printed, never asserted: on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

import cnnvis_widget as cv
from cnnvis_widget.capture import capture
from cnnvis_widget.empirical_field import empirical_fields, empirical_receptive_field
from cnnvis_widget.model_view import eval_view

HERE = Path(__file__).resolve()
DOC = HERE.parent.parent / "docs" / "empirical_receptive_field.md"
PLOT = DOC.parent / "empirical_fields.png"
BEGIN, END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"


def bare(bundle: cv.ModelBundle, x: torch.Tensor, layer: str | None) -> float:
    """Seconds of one no-grad forward of ``x`` (whole model, or stopped after ``layer``)."""
    view = eval_view(bundle.module)
    start = time.perf_counter()
    with torch.no_grad():
        if layer is None:
            view(x)
        else:
            with capture(view, [layer], calls={layer: 1}, stop_early=True):
                view(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="photos the atlas sees")
    parser.add_argument("--k", type=int, default=3, help="top images per unit")
    parser.add_argument("--timed-layer", default="_blocks.5")
    parser.add_argument("--layers", nargs="+", default=["_blocks.1", "_blocks.3", "_blocks.5"])
    parser.add_argument("--units", type=int, default=3, help="units sampled per layer")
    parser.add_argument("--table-k", type=int, default=2, help="top images per unit, table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = cv.load_model("efficientnet_lite0")
    photos = cv.datasets.photos()
    data = Subset(photos, range(min(args.images, len(photos))))
    layers = list(dict.fromkeys([*args.layers, args.timed_layer]))
    start = time.perf_counter()
    atlas = cv.unit_atlas(bundle, data, layers, k=max(args.k, args.table_k), progress=False)
    print(f"atlas of {len(data)} photos, {layers}: {time.perf_counter() - start:.1f} s")

    # 1. one unit of the timed layer over k images
    layer = args.timed_layer
    unit = next(u for u in range(atlas.stats[layer].units) if atlas.top(layer, u)[0].value > 0)
    start = time.perf_counter()
    field = empirical_receptive_field(
        bundle, layer, unit, atlas=atlas, data=data, k=args.k, progress=False
    )
    seconds = time.perf_counter() - start
    x = torch.cat([bundle.preprocess(data[e.index][0]) for e in atlas.top(layer, unit)[: args.k]])
    bare(bundle, x, None)  # warm-up
    whole, truncated = bare(bundle, x, None), bare(bundle, x, layer)
    paper_copies = field.positions * field.images
    timing = [
        f"`{layer}` unit {unit}, k = {field.images} photos, occluder {field.patch} px stride "
        f"{field.stride}, {args.threads} CPU threads:",
        "",
        f"- empirical field: {seconds:.1f} s; {field.copies} occluded copies run (restricted "
        f"to the theoretical field {field.theoretical_size[0]} px, on crops: {field.cropped}); "
        f"the paper's procedure runs {paper_copies} ({field.positions} per image) on the whole "
        "image",
        f"- bare forward of the same {field.images} images: {whole:.3f} s (whole model), "
        f"{truncated:.3f} s (stopped after the layer)",
        f"- ratio: {seconds / whole:.0f}x the whole forward, {seconds / truncated:.0f}x the "
        f"truncated one; per occluded copy {seconds / max(field.copies, 1) * 1e3:.1f} ms "
        f"against {truncated / field.images * 1e3:.1f} ms per whole image stopped after the "
        "layer",
        f"- empirical size {field.size[0]} x {field.size[1]} px against theoretical "
        f"{field.theoretical_size[0]} x {field.theoretical_size[1]} px",
    ]
    print("\n".join(timing))

    # 2. per layer
    start = time.perf_counter()
    table = empirical_fields(
        bundle, atlas, data, args.layers, sample=args.units, k=args.table_k, progress=False
    )
    table_seconds = time.perf_counter() - start
    text = table.to_markdown()
    print(text)
    print(f"table: {table_seconds:.1f} s")
    command = "    .venv/bin/python benchmarks/empirical_field.py " + " ".join(sys.argv[1:])
    block = "\n".join([
        BEGIN, "", "Produced by", "", command.rstrip(), "",
        f"Atlas: the first {len(data)} photos of `cv.datasets.photos()` at 224 px. "
        f"Timing ({args.threads} CPU threads, shared machine: noisy):", "", *timing, "",
        f"Per layer ({args.units} units drawn per layer among those that fire, their top "
        f"{args.table_k} photos; {table_seconds:.0f} s):", "", text.rstrip(), "",
        f"![theoretical and empirical field side per layer]({PLOT.name})", "", END,
    ])  # fmt: skip
    if not args.no_write:
        doc = DOC.read_text()
        if BEGIN not in doc or END not in doc:
            raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block to replace")
        head, rest = doc.split(BEGIN, 1)
        DOC.write_text(head + block + rest.split(END, 1)[1])
        table.plot().savefig(PLOT, dpi=100)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
