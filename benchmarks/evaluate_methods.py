"""Deletion / insertion scores and the randomization sanity check for every method, on the
real EfficientNet-Lite0 and scikit-image's photos.

    .venv/bin/python benchmarks/evaluate_methods.py [--images cat coffee rocket astronaut]

Deletion (lower is better) and insertion (higher is better) are areas under the curve of the
predicted class's probability (32 steps, deletion fills with the normalization mean, insertion
starts from a blurred copy). The sanity check (Adebayo et al. 2018) re-initializes Lite0's
parameterized top-level blocks from the output down and prints the Spearman rank correlation
of the map with the original after the head (_fc, _bn1, _conv_head) and after everything:
a faithful explanation of the model should drop towards 0.
"""

from __future__ import annotations

import argparse
import time

import torch

import cnnvis_widget as cv

FAST = {
    "smoothgrad": {"n_samples": 50},
    "integrated_gradients": {"steps": 50},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", nargs="+", default=["cat", "coffee", "rocket", "astronaut"])
    parser.add_argument("--methods", nargs="+", default=sorted(cv.METHODS))
    args = parser.parse_args()
    bundle = cv.load_model()
    model = bundle.module
    x = torch.cat([bundle.preprocess(cv.sample_image(name)) for name in args.images])
    with torch.no_grad():
        targets = model(x).argmax(1).tolist()
    print(
        "images:",
        ", ".join(f"{n} -> {bundle.labels[t]}" for n, t in zip(args.images, targets, strict=True)),
    )
    print(
        f"{'method':22} {'deletion':>8} {'insertion':>9} {'rho head':>8} {'rho all':>8} {'seconds':>8}"
    )
    for method in args.methods:
        params = FAST.get(method, {})
        start = time.perf_counter()
        maps = cv.attribute(model, x, method, target=targets, **params)
        seconds = time.perf_counter() - start
        scores = cv.deletion_insertion(model, x, maps, target=targets)
        steps = cv.randomization_check(model, x[:1], method, target=targets[:1], **params)
        by_layer = {step.layer: float(step.spearman_abs.mean()) for step in steps}
        head = by_layer.get("_conv_head", float("nan"))
        print(
            f"{method:22} {float(scores.deletion.mean()):8.3f} {float(scores.insertion.mean()):9.3f} "
            f"{head:8.2f} {float(steps[-1].spearman_abs.mean()):8.2f} {seconds:8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
