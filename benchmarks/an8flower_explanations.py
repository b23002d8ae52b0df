"""How well each explanation covers the discriminative part on an8Flower (Oramas et al.,
ICLR 2019, their an8Flower evaluation), with ``cv.load_model("flower_cnn")``.

    .venv/bin/python benchmarks/an8flower_explanations.py [--test-per-class 50] [--out DIR]
    .venv/bin/python benchmarks/an8flower_explanations.py --variant double \
        --train-per-class 100 --test-per-class 10

``--variant double`` uses ``cv.load_model("flower_cnn_double")`` on an8Flower-double-12c;
the mask is then the union of the two deciding parts (center and leaves: ``test.mask(i)``).
``--train-per-class`` takes only the first images of each class of the train split for the
relevant filters (default: all of it, 500 a class).

1. Relevant filters (``cv.relevant_features``, every conv layer) on the train split (3,000
   images) under several settings: how many filters each class gets, the L1 norm of its
   weights (the budget mu), and the fit's R^2 on the balanced sample (1 - ||Zw - y||^2 / ||y||^2,
   averaged over classes), which shows what the extra filters buy.
2. Held-out test images (``--test-per-class`` of each class) explained by: the interpretation's
   heatmap (``cv.explain``, top 3 filters, max-combined) under the defaults and under
   ``standardize=False, mu=5`` (the authors' code's features and their an8Flower mu), the
   latter also with ``rule="guided"`` (the authors' code's projection), Grad-CAM
   on the last conv block (``features.relu4``: conv4 -> bn4 -> relu4), guided backprop,
   DeconvNet with and without ``stride_correction``, the last conv block's channel-summed
   activations upsampled bilinearly, and uniform noise (a chance reference). Pixel maps are
   |.| summed over colour channels. Every heatmap is scored against ``test.mask(i)``:

   - ``AUC``: ``area_under_iou_curve`` (mean IoU of ``heatmap >= t`` over t = 0.05 ... 0.95
     of the min-max scaled heatmap);
   - ``IoU@0.5``: the IoU at t = 0.5 (our choice: the paper's threshold could not be read);
   - ``point``: the pointing game (the heatmap's maximum on the mask, no tolerance);
   - ``mass``: the fraction of the (non-negative) heatmap's sum that lies on the mask; a
     uniform heatmap gets the mask's area fraction, printed below the table.

Responses of the train pass are cached in ``--out`` (71 s on 2 shared cores the first time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import cnnvis_widget as cv
from cnnvis_widget.datasets.an8flower import (
    an8flower,
    area_under_iou_curve,
    iou_curve,
    pointing_game,
)
from cnnvis_widget.interpretation import RelevantFeatures, relevant_features

LAST = "features.relu4"
SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("standardize, mu=10", {"standardize": True}),
    ("standardize, mu=5", {"standardize": True, "mu": 5.0}),
    ("defaults (no standardize, mu=10)", {}),
    ("no standardize, mu=5", {"mu": 5.0}),
    ("layer_norm=none, standardize", {"layer_norm": "none", "standardize": True}),
    ("standardize, mu=0.2", {"mu": 0.2, "standardize": True}),
]
# heatmap name -> (relevant-features setting, explain options); the settings are explicit so
# the rows keep their meaning when a default changes
EXPLAINED: dict[str, tuple[str, dict[str, Any]]] = {
    "std, mu=10, deconvnet": (SETTINGS[0][0], {"rule": "deconvnet"}),
    "no std, mu=5, deconvnet": (SETTINGS[3][0], {"rule": "deconvnet"}),
    "no std, mu=5, guided": (SETTINGS[3][0], {"rule": "guided"}),
}


def mass_inside(heatmap: torch.Tensor, mask: np.ndarray) -> float:
    """Share of a non-negative heatmap's sum on the mask (bilinear to the mask's size)."""
    h = heatmap.detach().float().cpu()
    if tuple(h.shape) != mask.shape:
        h = F.interpolate(h[None, None], size=mask.shape, mode="bilinear", align_corners=False)[
            0, 0
        ]
    h = h.clamp(min=0)
    total = float(h.sum())
    return float(h[torch.from_numpy(mask)].sum()) / total if total > 0 else 0.0


def fit_r2(features: RelevantFeatures) -> float:
    """Mean over classes of the lasso fit's R^2 on the balanced sample it saw."""
    indices, responses, labels = features.responses.table()
    rows = torch.searchsorted(indices, features.sample)
    z = features.features(responses[rows]).numpy()
    scores = []
    for k, c in enumerate(features.classes):
        y = (labels[rows].numpy() == c).astype(np.float64)
        y -= y.mean()
        r = z @ features.weights[k].numpy() - y
        scores.append(1 - float(r @ r) / float(y @ y))
    return float(np.mean(scores))


def sparsity(bundle: cv.ModelBundle, train: Any, out: Path) -> dict[str, RelevantFeatures]:
    print(f"Relevant filters per class ({bundle.name}, 120 filters in 4 conv layers):")
    print(f"{'setting':36} {'per class':29} {'mean':>5} {'sum w':>12} {'R^2':>6}  layers")
    fitted = {}
    for name, options in SETTINGS:
        features = relevant_features(bundle, train, out=out, progress=False, **options)
        fitted[name] = features
        counts = [len(features.relevant(c)) for c in features.classes]
        norms = features.weights.sum(1)
        layers: dict[str, int] = {}
        for c in features.classes:
            for f in features.relevant(c):
                short = f.layer.split(".")[-1]
                layers[short] = layers.get(short, 0) + 1
        print(
            f"{name:36} {counts!s:29} {np.mean(counts):5.1f} "
            f"{float(norms.min()):5.2f}-{float(norms.max()):<6.2f} {fit_r2(features):6.3f}  "
            + " ".join(f"{k}:{v}" for k, v in sorted(layers.items()))
        )
    return fitted


def heatmaps(
    bundle: cv.ModelBundle, features: dict[str, RelevantFeatures], x: torch.Tensor
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Every method's (N, H, W) non-negative heatmaps of the batch ``x``, the predictions."""
    module = bundle.module
    with torch.no_grad():
        predicted = module(x).argmax(1).tolist()
    size = tuple(x.shape[-2:])

    def pixel(method: str, **params: Any) -> torch.Tensor:
        return cv.attribute(module, x, method, target=predicted, **params).abs().sum(1)

    maps: dict[str, torch.Tensor] = {}
    for name, fit in features.items():
        maps[f"interpretation ({name})"] = torch.stack(
            [
                cv.explain(bundle, fit, x[i : i + 1], **EXPLAINED[name][1]).heatmap
                for i in range(len(x))
            ]
        )
    cam = cv.attribute(module, x, "gradcam", target=predicted, layer=LAST)
    maps["Grad-CAM (relu4)"] = F.interpolate(cam, size=size, mode="bilinear")[:, 0]
    maps["guided backprop"] = pixel("guided_backprop")
    maps["DeconvNet"] = pixel("deconvnet", stride_correction=False)
    maps["DeconvNet + stride fix"] = pixel("deconvnet", stride_correction=True)
    acts = cv.activations(module, x, LAST)[LAST].sum(1, keepdim=True)
    maps["activations (relu4, summed)"] = F.interpolate(acts, size=size, mode="bilinear")[:, 0]
    generator = torch.Generator().manual_seed(0)
    maps["uniform noise (chance)"] = torch.rand(len(x), *size, generator=generator)
    return maps, predicted


def score(heat: torch.Tensor, mask: np.ndarray) -> tuple[float, float, float, float]:
    iou_half = float(iou_curve(heat, mask, thresholds=(0.5,))[0])
    return (
        area_under_iou_curve(heat, mask),
        iou_half,
        float(pointing_game(heat, mask)),
        mass_inside(heat, mask),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", choices=("single", "double"), default="single")
    parser.add_argument("--train-per-class", type=int, default=None)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "cnnvis_an8flower_relevant"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variant = args.variant
    bundle = cv.load_model("flower_cnn" if variant == "single" else "flower_cnn_double")
    train = an8flower("train", variant, images_per_class=args.train_per_class)
    test = an8flower("test", variant, images_per_class=args.test_per_class)
    out = args.out
    if variant != "single" or args.train_per_class is not None:
        # responses of another model or train set are cached apart
        out = out.with_name(f"{out.name}_{variant}_{len(train)}")
    print(f"{bundle.name}: {len(train)} train images, {len(test)} test images, cache {out}")
    start = time.perf_counter()
    fitted = sparsity(bundle, train, out)
    print(f"(train pass + fits: {time.perf_counter() - start:.0f} s)\n")
    features = {name: fitted[setting] for name, (setting, _) in EXPLAINED.items()}
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    empty = dict.fromkeys(features, 0)
    correct, areas = 0, []
    start = time.perf_counter()
    for first in range(0, len(test), args.batch):
        items = range(first, min(first + args.batch, len(test)))
        x = torch.cat([bundle.preprocess(test[i][0]) for i in items])
        maps, predicted = heatmaps(bundle, features, x)
        for j, i in enumerate(items):
            mask = test.mask(i)
            areas.append(float(mask.mean()))
            correct += int(predicted[j] == test.targets[i])
            for method, heat in maps.items():
                rows.setdefault(method, []).append(score(heat[j], mask))
            for name in features:
                empty[name] += int(float(maps[f"interpretation ({name})"][j].max()) == 0)
    seconds = time.perf_counter() - start
    n = len(test)
    print(
        f"Explanations of {n} held-out an8Flower-{variant} images ({args.test_per_class} a class), "
        f"accuracy {correct / n:.3f}, {seconds:.0f} s:"
    )
    print(f"| {'method':40} | AUC (IoU curve) | IoU@0.5 | pointing game | mass in mask |")
    print(f"|{'-' * 42}|----------------:|--------:|--------------:|-------------:|")
    for method, values in rows.items():
        auc, iou, point, mass = np.mean(values, axis=0)
        print(f"| {method:40} | {auc:15.3f} | {iou:7.3f} | {point:13.3f} | {mass:12.3f} |")
    print(f"mask area (a uniform heatmap's mass in mask): {np.mean(areas):.3f} of the image")
    print("images where the interpretation found no firing relevant filter:", empty)
    x = torch.cat([bundle.preprocess(test[i][0]) for i in range(min(8, len(test)))])
    plain = cv.attribute(bundle.module, x, "deconvnet", stride_correction=False)
    fixed = cv.attribute(bundle.module, x, "deconvnet", stride_correction=True)
    print(f"DeconvNet with vs without the stride fix, max |difference|: "
          f"{float((plain - fixed).abs().max()):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
