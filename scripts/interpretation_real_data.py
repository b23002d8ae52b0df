"""Oramas et al.'s "Visual Explanation by Interpretation" (ICLR 2019) on real data: the relevant
filters per class of the Fashion-MNIST CNN and of EfficientNet-Lite0 on the photo collection,
the average visualizations of each class's strongest filters, and explanations of held-out
images; writes docs/interpretation_real_data.md and its image sheets in docs/interpretation/.

    .venv/bin/python scripts/interpretation_real_data.py            # defaults below

Fashion-MNIST: ``cv.load_model("fashion_cnn")`` on the whole train split (60,000 images, 6,000
per class: balanced already), every conv (the default layers); held-out images are the first
test image of each class.

Photos: ``cv.load_model("efficientnet_lite0")`` on ``cv.datasets.photos()``. Its labels are the
collection's 23 coarse classes, not ImageNet's. Classes with fewer than ``--min-images`` photos
are dropped; ``--holdout`` photos of each kept class (seeded) are held out for the explanations
and the rest select the filters. Layers: the stem conv, the 16 block outputs and the head conv
(see LITE_LAYERS); the run on every conv (the default) is done too, for the counts only.

Every pass is saved in ``--cache/<run>`` (``out=``), so a rerun reads the responses back and
only the lasso (seconds) and the projections run again. The wall-clock times of the passes are
kept in ``--cache/times.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw
from torch.utils.data import Subset

import cnnvis_widget as cv
from cnnvis_widget.dataset_pass import PassSetup, layer_outputs
from cnnvis_widget.interpretation import (
    RelevantFeatures,
    average_visualizations,
    explain,
    relevant_features,
)
from cnnvis_widget.interpretation.responses import pooled
from cnnvis_widget.interpretation.run import conv_layers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "interpretation_real_data.md"
SHEETS = ROOT / "docs" / "interpretation"
LITE_LAYERS = ["_conv_stem"] + [f"_blocks.{i}" for i in range(16)] + ["_conv_head"]
"""The stem conv (32 filters, 112 x 112), the output of every MBConv block (16 linear
bottlenecks, 16 to 320 channels: the features each block hands on, from 112 x 112 down to
7 x 7) and the head conv (1280 filters, 7 x 7, the layer the classifier pools): 1,904 filters
at every depth, one layer per block. Every conv (49 layers, 21,008 filters, including the
expansion and depthwise convs inside the blocks) would give the lasso 11 times the columns for
81 balanced images; that run is done too and its counts are reported."""
MAX_SHEET_BYTES = 300_000
CLIP = 0.99
"""Display scale of projections and heatmaps: this quantile of the values, clipped above."""


# --- data -----------------------------------------------------------------------------------


def photo_split(
    photos: Any, min_images: int, holdout: int, seed: int
) -> tuple[list[int], list[int], list[int], dict[int, int]]:
    """(kept classes, indices that select, held-out indices, images per class of the whole
    collection). Each kept class has at least ``min_images`` photos; ``holdout`` of them are
    drawn (seeded) for the explanations."""
    labels = [int(photos[i][1]) for i in range(len(photos))]
    counts = Counter(labels)
    kept = sorted(c for c, n in counts.items() if n >= min_images)
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in kept:
        members = [i for i, label in enumerate(labels) if label == c]
        out = set(rng.choice(members, holdout, replace=False).tolist())
        held += sorted(out)
        train += [i for i in members if i not in out]
    return kept, sorted(train), held, dict(counts)


# --- runs -----------------------------------------------------------------------------------


def timed_fit(
    name: str, cache: Path, times: dict[str, float], model: Any, data: Any, **options: Any
) -> RelevantFeatures:
    """``relevant_features`` saved in ``cache/name``; the pass's time is recorded when it
    runs (a finished pass read back keeps the time it took; one that ran in an interrupted
    run of the script has none)."""
    folder = cache / name
    fresh = not (folder / "responses.json").is_file()
    start = time.perf_counter()
    features = relevant_features(model, data, out=folder, progress=False, **options)
    if fresh:
        times[name] = round(time.perf_counter() - start, 1)
        (cache / "times.json").write_text(json.dumps(times, indent=1))
    return features


def pass_time(times: dict[str, float], name: str) -> str:
    return f"{times[name]:.0f} s" if name in times else "a time not recorded"


def counts_by_layer(features: RelevantFeatures) -> dict[int, Counter]:
    return {c: Counter(f.layer for f in features.relevant(c)) for c in features.classes}


def l1_of(features: RelevantFeatures) -> dict[int, float]:
    return {c: float(features.weights[i].sum()) for i, c in enumerate(features.classes)}


def top_only(
    features: RelevantFeatures, keep: dict[int, list[tuple[str, int]]]
) -> RelevantFeatures:
    """The same selection with every weight zeroed but the filters ``keep[class]`` (so that
    ``average_visualizations`` projects only those; it has no top-n option)."""
    weights = torch.zeros_like(features.weights)
    index = {key: j for j, key in enumerate(features.responses.columns)}
    for row, c in enumerate(features.classes):
        for key in keep.get(c, []):
            j = index[key]
            weights[row, j] = features.weights[row, j]
    return dataclasses.replace(features, weights=weights)


def responses_of(model: Any, features: RelevantFeatures, x: torch.Tensor) -> torch.Tensor:
    """Pooled responses (n, m) of model inputs ``x`` on the features' layers (as ``explain``
    computes them), in batches of 64."""
    table = features.responses
    setup = PassSetup.of(model.module, table.layers, x[0], 64, 0, 1, "responses")
    rows = []
    for start in range(0, len(x), 64):
        outputs = layer_outputs(setup, x[start : start + 64])
        rows.append(torch.cat([pooled(outputs[n], table.pool) for n in table.layers], 1).cpu())
    return torch.cat(rows)


def class_scores(features: RelevantFeatures, responses: torch.Tensor) -> torch.Tensor:
    """The lasso's score of every class (n, K): sum_j w_cj z_j on the standardized features."""
    z = features.features(responses)
    return z @ features.weights.T


# --- pictures -------------------------------------------------------------------------------


def to_display(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Model input (C, H, W) -> [0, 1] RGB (3, H, W)."""
    mean = torch.tensor(model.preprocess.mean).view(-1, 1, 1)
    std = torch.tensor(model.preprocess.std).view(-1, 1, 1)
    pixels = (x * std + mean).clamp(0, 1)
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels


def signed_display(average: torch.Tensor) -> torch.Tensor:
    """An average projection (C, H, W) in [-1, 1] -> RGB [0, 1]: 0.5 + 0.5 v / s clipped (grey is
    zero), as Zeiler & Fergus show projections, s the 99th percentile of |v| (not the max:
    Lite0's deep projections have a few isolated peaks far above the rest, which would leave
    the tile flat grey)."""
    peak = torch.quantile(average.abs().flatten(), CLIP).clamp(min=1e-12)
    pixels = (0.5 + 0.5 * average / peak).clamp(0, 1)
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels


def overlay(image: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """Heatmap (H, W) in [0, 1] in jet over a dimmed ``image`` (3, H, W), rescaled to its
    99th percentile (clipped) for the same reason as :func:`signed_display`."""
    heat = (heat / torch.quantile(heat.flatten(), CLIP).clamp(min=1e-12)).clamp(0, 1)
    colours = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3]).permute(2, 0, 1).float()
    alpha = 0.35 + 0.5 * heat[None]
    return (1 - alpha) * image * 0.8 + alpha * colours


def tile(pixels: torch.Tensor, size: int) -> Image.Image:
    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array).resize(
        (size, size), Image.NEAREST if size >= 4 * 28 else Image.BILINEAR
    )


def grid(
    rows: list[tuple[str, list[tuple[Image.Image | None, str]]]], size: int, label_width: int
) -> Image.Image:
    """Rows of (row label, [(tile or None, caption)]) -> one white sheet with captions under
    the tiles."""
    columns = max(len(cells) for _, cells in rows)
    caption, pad = 12, 4
    height = len(rows) * (size + caption + pad) + pad
    width = label_width + columns * (size + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, cells) in enumerate(rows):
        top = pad + r * (size + caption + pad)
        for i, line in enumerate(label.split("\n")):
            draw.text((4, top + size // 2 - 12 + 11 * i), line, fill="black")
        for c, (image, text) in enumerate(cells):
            left = label_width + pad + c * (size + pad)
            if image is not None:
                sheet.paste(image, (left, top))
            draw.text((left, top + size + 1), text, fill="black")
    return sheet


def save_sheet(image: Image.Image, name: str) -> str:
    """PNG in docs/interpretation/, palette-quantized when over MAX_SHEET_BYTES; returns the
    path relative to docs/."""
    SHEETS.mkdir(parents=True, exist_ok=True)
    path = SHEETS / name
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_SHEET_BYTES:
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return f"interpretation/{name}"


def short(layer: str) -> str:
    return layer.replace("features.", "").replace("_blocks.", "b").replace("_conv_", "")


# --- one model ------------------------------------------------------------------------------


def study(
    model: Any,
    data: Any,
    features: RelevantFeatures,
    class_names: list[str],
    held: list[tuple[torch.Tensor, int]],
    args: argparse.Namespace,
    tag: str,
    lite: bool,
) -> dict[str, Any]:
    """Top filters, their average visualizations, the sheets and the explanations of one
    model; returns what the markdown needs."""
    top = {c: features.relevant(c)[: args.top] for c in features.classes}
    keep = {c: [(f.layer, f.channel) for f in fs] for c, fs in top.items()}
    start = time.perf_counter()
    averages = average_visualizations(model, top_only(features, keep), data, k=args.k)
    average_time = time.perf_counter() - start
    size = 96 if lite else 56
    rows = []
    for c in features.classes:
        cells: list[tuple[Image.Image | None, str]] = []
        for f in top[c]:
            key = (c, f.layer, f.channel)
            best = averages.images[key][0]
            x = model.preprocess(split_image(data[best]))[0]
            cells.append((tile(to_display(model, x), size), "top image"))
            cells.append(
                (tile(signed_display(averages.maps[key]), size), f"{short(f.layer)}:{f.channel}")
            )
        rows.append((wrap(class_names[c]), cells))
    sheet = save_sheet(grid(rows, size, 120), f"{tag}_relevant.png")
    deconvnet_sheet = ""
    if lite:  # what rule="deconvnet" gives on a network without max-pooling
        plain = average_visualizations(
            model, top_only(features, keep), data, k=args.k, rule="deconvnet"
        )
        rows = [
            (wrap(class_names[c]), [
                (tile(signed_display(plain.maps[(c, f.layer, f.channel)]), size),
                 f"{short(f.layer)}:{f.channel}")
                for f in top[c]
            ])
            for c in features.classes
        ]  # fmt: skip
        deconvnet_sheet = save_sheet(grid(rows, size, 120), f"{tag}_relevant_deconvnet.png")

    # explanations of held-out images
    x_held = torch.stack([x for x, _ in held])
    scores = class_scores(features, responses_of(model, features, x_held))
    lasso_predicted = [features.classes[int(i)] for i in scores.argmax(1)]
    with torch.no_grad():
        model_predicted = [p[0][0] for p in model.predict(x_held, k=1)]
    explained = []
    for i, (x, label) in enumerate(held):
        if lite:
            target = lasso_predicted[i]
            e = explain(model, features, x, top=args.explain_top, label=target)
        else:
            e = explain(model, features, x, top=args.explain_top, rule="guided")
            target = e.predicted
        explained.append((x, label, target, e))
    missing = {}
    for _, _, target, e in explained:
        for f in e.filters:
            if (target, f.filter.layer, f.filter.channel) not in averages.maps:
                missing.setdefault(target, []).append((f.filter.layer, f.filter.channel))
    if missing:
        extra = average_visualizations(model, top_only(features, missing), data, k=args.k)
        averages.maps.update(extra.maps)
        averages.images.update(extra.images)
    rows, records = [], []
    for i, (x, label, target, e) in enumerate(explained):
        image = to_display(model, x)
        cells = [(tile(image, size), "image"), (tile(overlay(image, e.heatmap), size), "combined")]
        for f in e.filters:
            key = (target, f.filter.layer, f.filter.channel)
            name = f"{short(f.filter.layer)}:{f.filter.channel}"
            cells.append((tile(overlay(image, f.heatmap), size), name))
            cells.append((tile(signed_display(averages.maps[key]), size), "average"))
        truth = class_names[label]
        rows.append((wrap(f"true {truth}") + "\n" + wrap(f"expl. {class_names[target]}"), cells))
        records.append(
            {
                "truth": truth,
                "explained": class_names[target],
                "model": model.label(model_predicted[i]),
                "lasso": class_names[lasso_predicted[i]],
                "filters": [
                    (f.filter.layer, f.filter.channel, f.filter.weight, f.score) for f in e.filters
                ],
            }
        )
    explain_sheet = save_sheet(grid(rows, size, 120), f"{tag}_explanations.png")
    return {
        "top": top,
        "sheet": sheet,
        "deconvnet_sheet": deconvnet_sheet,
        "explain_sheet": explain_sheet,
        "explained": records,
        "average_time": average_time,
        "lasso_accuracy": float(
            np.mean([p == y for p, (_, y) in zip(lasso_predicted, held, strict=True)])
        ),
    }


def split_image(item: Any) -> Any:
    return item[0] if isinstance(item, tuple | list) else item


def wrap(text: str, width: int = 18) -> str:
    words, lines, line = text.split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


# --- main -----------------------------------------------------------------------------------


def fashion(args: argparse.Namespace, times: dict[str, float]) -> dict[str, Any]:
    model = cv.load_model("fashion_cnn")
    train = cv.datasets.fashion_mnist("train")
    test = cv.datasets.fashion_mnist("test")
    names = list(train.classes)
    print("fashion: responses of 60,000 train images", file=sys.stderr)
    folder = args.cache / "fashion_cnn-train"
    features = timed_fit(
        "fashion_cnn-train", args.cache, times, model, train, batch_size=256,
        per_class=args.fashion_per_class, standardize=False,
    )  # fmt: skip
    start = time.perf_counter()
    dense = relevant_features(
        model, train, out=folder, progress=False, per_class=args.fashion_per_class,
        standardize=True,
    )  # fmt: skip
    lasso_time = time.perf_counter() - start
    targets = (
        test.targets.tolist()
        if hasattr(test, "targets")
        else [test[i][1] for i in range(len(test))]
    )
    firsts = [targets.index(c) for c in range(10)]
    held = [(model.preprocess(test[i][0])[0], int(test[i][1])) for i in firsts]
    # the lasso as a classifier on the first 2,000 test images
    x = torch.stack([model.preprocess(test[i][0])[0] for i in range(args.test_images)])
    y = torch.tensor(targets[: args.test_images])
    scores = class_scores(features, responses_of(model, features, x))
    dense_scores = class_scores(dense, responses_of(model, dense, x))
    with torch.no_grad():
        logits = model.module(x)
    result = study(model, train, features, names, held, args, "fashion", lite=False)
    result.update(
        model=model, features=features, dense=dense, names=names, lasso_time=lasso_time,
        accuracy={
            "model": float((logits.argmax(1) == y).float().mean()),
            "lasso": float((scores.argmax(1) == y).float().mean()),
            "lasso_dense": float((dense_scores.argmax(1) == y).float().mean()),
        },
    )  # fmt: skip
    return result


def photos(args: argparse.Namespace, times: dict[str, float]) -> dict[str, Any]:
    model = cv.load_model("efficientnet_lite0")
    data = cv.datasets.photos()
    kept, train, held_out, counts = photo_split(data, args.min_images, args.holdout, args.seed)
    names = list(data.classes)
    subset = Subset(data, train)
    print(f"photos: responses of {len(train)} photos", file=sys.stderr)
    features = timed_fit(
        "lite0-photos-blocks", args.cache, times, model, subset, layers=LITE_LAYERS,
        batch_size=16, standardize=False,
    )  # fmt: skip
    dense = relevant_features(
        model, subset, LITE_LAYERS, out=args.cache / "lite0-photos-blocks", progress=False,
        standardize=True,
    )  # fmt: skip
    print("photos: responses on every conv", file=sys.stderr)
    every = timed_fit(
        "lite0-photos-convs", args.cache, times, model, subset, batch_size=16, standardize=False
    )
    every_dense = relevant_features(
        model, subset, out=args.cache / "lite0-photos-convs", progress=False, standardize=True
    )
    held = [(model.preprocess(data[i][0])[0], int(data[i][1])) for i in held_out]
    chosen = held[:: max(1, len(held) // args.photo_explanations)][: args.photo_explanations]
    result = study(model, subset, features, names, chosen, args, "lite0_photos", lite=True)
    x = torch.stack([x for x, _ in held])
    y = torch.tensor([label for _, label in held])
    cls = torch.tensor(features.classes)

    def accuracy(f: RelevantFeatures) -> float:
        return float(
            (cls[class_scores(f, responses_of(model, f, x)).argmax(1)] == y).float().mean()
        )

    result.update(
        model=model, features=features, dense=dense, every=every, every_dense=every_dense,
        names=names, counts=counts, kept=kept, train=len(train), held=len(held),
        accuracy={"lasso": accuracy(features), "lasso_dense": accuracy(dense),
                  "lasso_every": accuracy(every), "lasso_every_dense": accuracy(every_dense)},
    )  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache/cnnvis_widget/interpretation"
    )
    parser.add_argument("--top", type=int, default=4, help="filters per class in the sheets")
    parser.add_argument("--k", type=int, default=20, help="images per average visualization")
    parser.add_argument("--explain-top", type=int, default=3)
    parser.add_argument(
        "--fashion-per-class", type=int, default=1000, help="Fashion-MNIST lasso sample per class"
    )
    parser.add_argument("--min-images", type=int, default=10)
    parser.add_argument("--holdout", type=int, default=2)
    parser.add_argument("--photo-explanations", type=int, default=6)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.cache.mkdir(parents=True, exist_ok=True)
    times_file = args.cache / "times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    start = time.perf_counter()
    fm = fashion(args, times)
    times_file.write_text(json.dumps(times, indent=1))
    ph = photos(args, times)
    times_file.write_text(json.dumps(times, indent=1))
    total = time.perf_counter() - start
    DOC.write_text(markdown(fm, ph, args, times, total))
    print(f"wrote {DOC.relative_to(ROOT)} ({total:.0f} s)", file=sys.stderr)


# --- markdown -------------------------------------------------------------------------------


def layer_table(features: RelevantFeatures, names: list[str], layers: list[str]) -> list[str]:
    """Class x layer counts of relevant filters (layers with none left out)."""
    by = counts_by_layer(features)
    used = [n for n in layers if any(by[c][n] for c in features.classes)]
    lines = [
        "| class | " + " | ".join(short(n) for n in used) + " | all | sum w |",
        "|---" * (len(used) + 3) + "|",
    ]
    sums = l1_of(features)
    for c in features.classes:
        cells = [str(by[c][n]) for n in used]
        lines.append(
            f"| {names[c]} | "
            + " | ".join(cells)
            + f" | **{sum(by[c].values())}** | {sums[c]:.2f} |"
        )
    sizes = features.responses.channels
    lines.append(
        "| *filters in layer* | "
        + " | ".join(str(sizes[n]) for n in used)
        + f" | {sum(sizes.values())} | |"
    )
    return lines


def overlap(features: RelevantFeatures, top: int | None = None) -> float:
    """Mean Jaccard overlap of the relevant sets (or top-``top``) of two different classes."""
    sets = [{(f.layer, f.channel) for f in features.relevant(c)[:top]} for c in features.classes]
    pairs = [len(a & b) / max(1, len(a | b)) for i, a in enumerate(sets) for b in sets[i + 1 :]]
    return float(np.mean(pairs))


def count_line(features: RelevantFeatures) -> str:
    counts = [len(features.relevant(c)) for c in features.classes]
    return (
        f"{min(counts)}-{max(counts)} (mean {np.mean(counts):.1f}) of {features.weights.shape[1]}"
    )


def top_table(result: dict[str, Any], names: list[str]) -> list[str]:
    lines = ["| class | top filters (layer:channel, weight) |", "|---|---|"]
    for c, fs in result["top"].items():
        lines.append(
            f"| {names[c]} | "
            + ", ".join(f"{short(f.layer)}:{f.channel} ({f.weight:.3f})" for f in fs)
            + " |"
        )
    return lines


def explain_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| true class | model's top-1 | lasso's class | explained class | filters (layer:channel, weight, score w z) |",
        "|---|---|---|---|---|",
    ]
    for r in result["explained"]:
        filters = ", ".join(f"{short(a)}:{b} ({w:.3f}, {s:.3f})" for a, b, w, s in r["filters"])
        lines.append(
            f"| {r['truth']} | {r['model']} | {r['lasso']} | {r['explained']} | {filters or 'none fired'} |"
        )
    return lines


READING: dict[str, str] = {
    "fashion": """### Reading (Fashion-MNIST)

- **The relevant filters differ by class.** With `standardize=False` no filter is relevant
  to two classes (Jaccard overlap 0.00): each class gets its own 1-3 filters. With
  `standardize=True` almost every filter is relevant to every class (152-155 of 160, overlap
  0.93), so the sets say nothing per class; only the weights' order does.
- **They all sit in conv5**, the last conv (64 filters, 7 x 7, the layer the classifier
  pools). Earlier convs never enter with `standardize=False`.
- **The averages look like the class's shape, not like parts**: the sneaker and ankle-boot
  filters give a sole/heel-shaped diagonal stroke at the bottom, the trouser filter two
  vertical legs, the T-shirt and dress filters a torso outline with sleeves or a flared skirt,
  the bag filter the textured body of a bag. Shirt, coat and pullover averages are faint
  torso outlines that look alike; those are the classes the model confuses.
- The lasso's scores classify 77.6 % of 2,000 test images with 1-3 filters per class
  (91.6 % for the model); with `standardize=True`, 92.3 %, but with 150+ filters per class.
- The explanations (guided projections of conv5 filters) light up the garment's outline and
  its edges; on the shirt the lasso's own class would be T-shirt while the model says Shirt,
  and the one Shirt filter (weight 2.5, a bound not reached, see below) still fires.""",
    "lite_layers": """Why these layers: the block outputs are what each block hands to the
next, one layer per depth from 112 x 112 (16 channels) to 7 x 7 (320), so the counts per
layer read as counts per depth; the stem and head add the first and last conv. Every conv
adds each block's expansion and depthwise convs: 21,008 filters for 81 balanced images, and
their counts are given below for comparison.""",
    "lite": """### Reading (EfficientNet-Lite0, photos)

- **The relevant filters differ by class** (overlap 0.01 with `standardize=False`): 1-6
  filters per class, none shared except stem:7 (fruit and vegetable). With
  `standardize=True`, **every class gets exactly 80 filters = the 81-image balanced sample
  minus one**, with sum w 1.2-1.7, far under mu = 10: the bound is inactive and the fit
  interpolates the sample (the non-negative least squares of 81 rows); those 80 are noise.
- **Layers:** with `standardize=False` the filters sit in the last blocks (b13-b15, 192-320
  channels at 7 x 7), plus a stem filter for fruit, vegetable and flower (colour: stem:7 is
  green, stem:20 magenta in the averages) and one head filter for flower. On every conv they
  are mostly depthwise convs of blocks 11-15, again deep.
- **Averages (guided, the "auto" rule for a network without max-pooling):** the deep
  filters' averages (b13-b15, head) show the outline the class's top images share: round
  shapes for fruit, a diagonal shaft for tool (b15:130), a vertical body for musical
  instrument (b15:76), horizontal bodies for mammal, drawn as edge texture rather than clean
  parts. With DeconvNet (second sheet) every deep average is about the same smooth square:
  DeconvNet's backward pass ignores the forward ReLU masks and keeps only max-pool switches,
  and Lite0 has none, so a filter's projection is one fixed pattern wherever its map fires.
  The stem filters' averages are plain colour fields (green for fruit and vegetable, magenta
  for flower): "this class is green / magenta", not parts. The top images are of the class
  but mixed (the fruit row has an orange, rambutans and a citrus slice).
- **Strided windows:** Lite0's strided depthwise convs print a grid on plain DeconvNet
  projections; the stride fix of the authors' code ("nearest": resize to the stride-1 output
  size, send back at stride 1; the default since 2026-12-02) removes it (docs/interpretation.md,
  "The stride fix, measured": grid share 0.73 -> 0.01 for `_blocks.15` unit 287), where the
  earlier coverage division left it and piled mass on the top/left border.
- The lasso's scores classify 10-13 of the 18 held-out photos (chance 2 of 18). The
  explanations' errors are telling: a peacock is explained as a tool and a guitar as a land
  vehicle, each from a single filter with the whole budget (weight 10); the flower and tool
  explanations are right.
- 81 balanced images for 3,120 (or 21,008) columns is far too little for a stable
  selection; this is a demonstration that the pipeline runs on Lite0, not a finding about
  Lite0.""",
    "density": """## Density of the relevant sets (for the defaults question)

Counts per class: Fashion-MNIST (160 filters) **1-3** with `standardize=False` (the default
since 7a04ef6) against **152-155** with `standardize=True`; Lite0 on photos (3,120 filters)
**1-6** against **80** (= sample size - 1). Two things the `sum w` columns show:

1. With `standardize=True`, mu = 10 is a loose budget on unit-variance columns: on
   Fashion-MNIST it is reached for most classes and still spread over ~155 filters; on the
   81-image photo sample it is not reached at all (sum w <= 1.7) and the fit saturates at
   n - 1 filters.
2. With `standardize=False` the sparsity does **not** always come from mu: for Shirt (sum w
   2.52), Coat (5.31), Pullover (5.57), Bag (6.16) and Trouser (8.12) the bound is inactive,
   yet only 1-2 filters are chosen. `standardize=False` also turns off the **centering** of
   the columns (mean = 0), while the target stays centered, so the fit has no intercept: the
   responses are all positive (L1-normalized, mean 1/C per layer), any positive weight also
   raises the prediction's mean, and the non-negative least squares is itself sparse. On
   500 per class with the columns centered but not scaled, the same mu = 10 gives 1-3
   filters with the bound reached (e.g. Trouser 3 filters at sum 10.0, objective 186 against
   321 uncentered). `positive_lasso` itself says "no intercept: center both first";
   with `standardize=False`, `fit_weights` centers only the target.""",
}
"""Hand-written readings, keyed by section (filled in after looking at the sheets)."""


def markdown(fm: dict[str, Any], ph: dict[str, Any], args: argparse.Namespace,
             times: dict[str, float], total: float) -> str:  # fmt: skip
    f, s = fm["features"], fm["dense"]
    pf, ps, pe, pes = ph["features"], ph["dense"], ph["every"], ph["every_dense"]
    fashion_layers = conv_layers(fm["model"].module)
    lite_all = conv_layers(ph["model"].module)
    dropped = sorted(
        (c for c in ph["counts"] if c not in ph["kept"]), key=lambda c: -ph["counts"][c]
    )
    out = [
        "# Visual Explanation by Interpretation on real data",
        "",
        "Generated by `scripts/interpretation_real_data.py` (do not edit by hand):",
        "",
        "```",
        ".venv/bin/python scripts/interpretation_real_data.py",
        "```",
        "",
        f"Python {platform.python_version()}, torch {torch.__version__}, {args.threads} CPU threads. "
        f"Passes cached in `~/.cache/cnnvis_widget/interpretation/` (`out=`): a rerun reads "
        f"them back. Times of the passes when they ran: "
        + (", ".join(f"{k} {v:.0f} s" for k, v in times.items()) or "not recorded")
        + f"; this run took {total:.0f} s in all. Settings: `cv.relevant_features` with "
        'mu=10, pool="l2sq", layer_norm="l1" and **standardize=False** (the defaults since '
        "commit 7a04ef6; `standardize=True` is shown beside for comparison), a balanced "
        f"sample of the smallest class's size unless said otherwise, seed 0; sheets show the top {args.top} filters of each class by "
        f"lasso weight, each average visualization over its top k={args.k} images of the class "
        '(`cv.average_visualizations` with its defaults: rule="auto", i.e. DeconvNet for '
        "Fashion-MNIST's CNN, which max-pools, and guided backprop for Lite0, which does not; "
        "the stride fix \"nearest\", the authors' code's); explanations by "
        f'`cv.explain(top={args.explain_top}, rule="guided")` (its default since 7a04ef6). docs/interpretation.md says which of these the '
        "paper or the authors' code fixes.",
        "",
        "How to read the sheets: each filter is a pair of tiles, its **top image** of the class "
        "(highest pooled response) and its **average visualization** (the mean DeconvNet "
        "projection, shown as 0.5 + 0.5 v / s clipped, s the 99th percentile of |v|: grey is "
        "zero, light and dark are the signed input pattern). Heatmaps are shown scaled to their "
        "99th percentile too: Lite0's deep projections have a few isolated peaks (at the "
        "border, 4-10 times their 99th percentile), and scaled by their max the tiles were flat. In the explanation sheets, each row is one held-out image, the "
        "combined heatmap (pixel-wise max), then for each fired filter its heatmap on the image "
        "and its average visualization for the explained class.",
        "",
        "## Fashion-MNIST (`fashion_cnn`, all 60,000 train images)",
        "",
        "The responses pass runs on the whole train split (60,000 images, 6,000 per class; "
        f"it took {pass_time(times, 'fashion_cnn-train')}) and the average "
        "visualizations pick their top images from all of it. The lasso is fitted on a "
        f"class-balanced sample of **{args.fashion_per_class} images per class** "
        f"(`per_class={args.fashion_per_class}`, seed 0, {len(f.sample)} rows): with "
        "`standardize=True` the lasso took "
        f"{fm['lasso_time']:.0f} s in this run (earlier runs on this machine: 43 s at 1,000 and "
        "122 s at 2,000 per class, and more than 5 minutes on all 6,000 per class, stopped; "
        "every class's path runs to its end and restarts as `positive_lasso` doubles max_iter); "
        "with `standardize=False` it takes a few seconds. "
        f"Layers: every conv (the default), {len(fashion_layers)} layers, "
        f"{f.weights.shape[1]} filters. Relevant filters per class: **{count_line(f)}** with "
        f"`standardize=False`; **{count_line(s)}** with `standardize=True`.",
        "",
        "### Relevant filters per class and layer (`standardize=False`)",
        "",
        *layer_table(f, fm["names"], fashion_layers),
        "",
        "`sum w` is the L1 norm of the class's weights; the bound is mu = 10.",
        "",
        "### With `standardize=True` (standardized columns, the default before 7a04ef6)",
        "",
        *layer_table(s, fm["names"], fashion_layers),
        "",
        f"The lasso's class scores sum_j w_cj z_j as a classifier on the first {args.test_images} "
        f"test images: **{fm['accuracy']['lasso']:.3f}** accuracy with `standardize=False`, "
        f"**{fm['accuracy']['lasso_dense']:.3f}** with `standardize=True` (the model itself: "
        f"{fm['accuracy']['model']:.3f}). Mean Jaccard overlap of two classes' relevant sets: "
        f"{overlap(f):.2f} (`standardize=False`), {overlap(s):.2f} (`standardize=True`); of their top "
        f"{args.top}: {overlap(f, args.top):.2f}.",
        "",
        "### Top filters and their average visualizations",
        "",
        *top_table(fm, fm["names"]),
        "",
        f"![Fashion-MNIST relevant filters]({fm['sheet']})",
        "",
        f"Average visualizations took {fm['average_time']:.0f} s.",
        "",
        "### Explanations of held-out images (the first test image of each class)",
        "",
        *explain_table(fm),
        "",
        f"![Fashion-MNIST explanations]({fm['explain_sheet']})",
        "",
        READING.get("fashion", ""),
        "",
        "## EfficientNet-Lite0 on the photo collection",
        "",
        f"`cv.datasets.photos()` has {sum(ph['counts'].values())} photos in "
        f'{len(ph["counts"])} classes of its own (coarse "kind/sub-kind" labels, not '
        "ImageNet's). The lasso's balanced sample takes the smallest class's count from every "
        f"class, so classes with fewer than {args.min_images} photos are **dropped**: "
        + ", ".join(f"{ph['names'][c]} ({ph['counts'][c]})" for c in dropped)
        + f". Kept: {len(ph['kept'])} classes, "
        + ", ".join(f"{ph['names'][c]} ({ph['counts'][c]})" for c in ph["kept"])
        + f". {args.holdout} photos per kept class (seed {args.seed}) are held out, so "
        f"{ph['train']} photos select the filters, with a balanced sample of "
        f"{len(pf.sample)} ({len(pf.sample) // len(pf.classes)} per class).",
        "",
        f"Layers: the stem conv, the 16 block outputs and the head conv ({len(LITE_LAYERS)} "
        f"layers, {pf.weights.shape[1]} filters). " + READING.get("lite_layers", ""),
        "",
        f"Relevant filters per class: **{count_line(pf)}** with `standardize=False`, **{count_line(ps)}** "
        f"with `standardize=True`. On every conv ({len(lite_all)} layers, the default "
        f"`layers=None`): **{count_line(pe)}** with `standardize=False`, **{count_line(pes)}** with "
        "`standardize=True`.",
        "",
        "### Relevant filters per class and layer (`standardize=False`, stem + blocks + head)",
        "",
        *layer_table(pf, ph["names"], LITE_LAYERS),
        "",
        "### With `standardize=True`",
        "",
        *layer_table(ps, ph["names"], LITE_LAYERS),
        "",
        "### Every conv, `standardize=False` (layers with a relevant filter only)",
        "",
        *layer_table(pe, ph["names"], lite_all),
        "",
        f"The lasso's class scores as a classifier on the {ph['held']} held-out photos (chance "
        f"{1 / len(pf.classes):.2f}): {ph['accuracy']['lasso']:.2f} (blocks, `standardize=False`), "
        f"{ph['accuracy']['lasso_dense']:.2f} (blocks, `standardize=True`), "
        f"{ph['accuracy']['lasso_every']:.2f} (every conv, `standardize=False`), "
        f"{ph['accuracy']['lasso_every_dense']:.2f} (every conv, `standardize=True`). Mean "
        f"Jaccard overlap of two classes' relevant sets: {overlap(pf):.2f} (`standardize=False`), "
        f"{overlap(ps):.2f} (`standardize=True`); of their top {args.top}: "
        f"{overlap(pf, args.top):.2f}.",
        "",
        "### Top filters and their average visualizations",
        "",
        *top_table(ph, ph["names"]),
        "",
        f"![Lite0 photo relevant filters]({ph['sheet']})",
        "",
        f"Average visualizations took {ph['average_time']:.0f} s.",
        "",
        'The same filters\' averages with `rule="deconvnet"`: DeconvNet keeps only max-pool '
        "switches, and Lite0 has none, so each deep filter's projection is one fixed pattern "
        "placed where its map fires, and every average is about the same smooth square:",
        "",
        f"![Lite0 photo relevant filters, DeconvNet]({ph['deconvnet_sheet']})",
        "",
        "### Explanations of held-out photos",
        "",
        "Lite0's argmax is an ImageNet index, no photo class; the explained class is the "
        "lasso's (argmax of sum_j w_cj z_j over the photo classes, which is also what "
        "`cv.explain` falls back to), passed as `cv.explain(..., label=)`.",
        "",
        *explain_table(ph),
        "",
        f"![Lite0 photo explanations]({ph['explain_sheet']})",
        "",
        READING.get("lite", ""),
        "",
        READING.get("density", ""),
        "",
    ]
    return "\n".join(out).replace("\n\n\n", "\n\n")


if __name__ == "__main__":
    main()
