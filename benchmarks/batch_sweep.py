"""Time per sample of the batched methods at several batch sizes, to pick the defaults.

    .venv/bin/python benchmarks/batch_sweep.py [--device cuda] [--sizes 4 8 16 32 64]

ResNet-50, random weights, one 224x224 image; SmoothGrad 48 samples, IG 48 steps, occlusion
(window 32, stride 16: 169 positions). Prints ms per sample (per occluded image).
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision.models as tvm

import cnnvis_widget as cv

WORK = {
    "smoothgrad": ("n_samples", 48),
    "integrated_gradients": ("steps", 48),
    "occlusion": (None, 169),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--model", default="resnet50")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = tvm.get_model(args.model).eval().to(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    for method, (count_name, count) in WORK.items():
        extra = {count_name: count} if count_name else {}
        cv.attribute(model, x, method, target=1, **extra)  # warm-up (and builds the stand-in)
        row = []
        for size in args.sizes:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            cv.attribute(model, x, method, target=1, batch_size=size, **extra)
            if device.type == "cuda":
                torch.cuda.synchronize()
            row.append(f"b{size}: {1000 * (time.perf_counter() - start) / count:.2f}")
        print(f"{args.model} {device.type} {method:22} ms/sample  " + "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
