"""Explanations inside a training loop: memory and time per call when the model's weights
change between calls, against the same calls on a model that does not change.

Before issue 13 every call on a changed model rebuilt the fast stand-in (a new torch.fx graph,
a new layout measurement, a new frozen graph): RSS grew by 1.8 GB over 300 calls and calls
were 2.2x slower. Now the stand-in follows in-place changes (its folded batch norms are
recomputed), so RSS stays flat and the ratio stays near 1.

    .venv/bin/python benchmarks/changing_model.py [calls]
"""

from __future__ import annotations

import resource
import sys
import time

import torch
import torchvision
from torch import nn

import cnnvis_widget as cv


def rss_mb() -> float:
    """Resident set size now, from /proc (MB)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def explain(model: nn.Module, x: torch.Tensor) -> None:
    cv.attribute(model, x, "saliency", target=0)
    cv.attribute(model, x, "occlusion", target=0, window=32, stride=32)


def main(calls: int = 60) -> None:
    torch.manual_seed(0)
    x, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    fixed = torchvision.models.resnet18(num_classes=10).eval()
    trained = torchvision.models.resnet18(num_classes=10).train()
    optimizer = torch.optim.SGD(trained.parameters(), lr=1e-3)
    for model in (fixed, trained):  # warm-up: first stand-ins, layout measurements
        explain(model, x)
    start_rss = rss_mb()
    fixed_seconds = trained_seconds = 0.0
    for _ in range(calls):
        optimizer.zero_grad()
        nn.functional.cross_entropy(trained(x), labels).backward()
        optimizer.step()
        began = time.perf_counter()
        explain(trained, x)
        trained_seconds += time.perf_counter() - began
        began = time.perf_counter()
        explain(fixed, x)
        fixed_seconds += time.perf_counter() - began
    growth = rss_mb() - start_rss
    print(f"{calls} explained training steps (ResNet-18, batch 4, 64 px, saliency + occlusion)")
    print(f"  RSS growth over the loop: {growth:+.0f} MB")
    print(f"  per call: trained model {1e3 * trained_seconds / calls:.1f} ms, unchanged model ")
    print(f"    {1e3 * fixed_seconds / calls:.1f} ms: ratio {trained_seconds / fixed_seconds:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
