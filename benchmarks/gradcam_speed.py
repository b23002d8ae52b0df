"""Grad-CAM speed against a bare forward pass and the peers, measured in one run.

    .venv/bin/python benchmarks/gradcam_speed.py [--repeats 5] [--device cpu|cuda]

For ResNet-50 (layer4) and VGG-16 (features.29 = relu5_3, the paper's layer), random weights,
224x224, batch 1 and 8, with one target class per sample, it times (median of interleaved
repeats, after a warm-up):
  forward       the model under torch.no_grad() (the floor)
  cnnvis        cv.attribute(model, x, "gradcam", target=..., layer=...)
  captum        captum LayerGradCam(...).attribute(x, target=...)
  grad-cam      pytorch-grad-cam GradCAM(model, [layer])(x, targets=...)
  torchcam      torchcam GradCAM(model, layer): forward + extractor(class_idx, scores)
and prints each time with its ratio to the forward pass and to the fastest peer. Then it
reports the payload size and encode time of VGG-16's largest filter grid.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision.models as tvm

import cnnvis_widget as cv
from cnnvis_widget.encode import grid_payloads

LAYERS = {"resnet50": "layer4", "vgg16": "features.29"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def contenders(
    model, layer_name: str, x: torch.Tensor, targets: list[int]
) -> dict[str, Callable[[], object]]:
    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM as JacobGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TorchCamGradCAM

    layer = dict(model.named_modules())[layer_name]
    captum = LayerGradCam(model, layer)
    jacob = JacobGradCAM(model=model, target_layers=[layer])
    jacob_targets = [ClassifierOutputTarget(t) for t in targets]

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    def ours() -> object:
        return cv.attribute(model, x, "gradcam", target=targets, layer=layer_name)

    def torchcam() -> object:
        with TorchCamGradCAM(model, layer_name) as extractor:
            scores = model(x)
            return extractor(targets, scores)

    return {
        "forward": forward,
        "cnnvis": ours,
        "captum": lambda: captum.attribute(x, target=targets, relu_attributions=True),
        "grad-cam": lambda: jacob(input_tensor=x, targets=jacob_targets),
        "torchcam": torchcam,
    }


def measure(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved, so drift hits everyone alike
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def grid_report(device: torch.device) -> None:
    model = tvm.vgg16(weights=None).eval().to(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    infos = [info for info in cv.layers(model, x) if info.spatial]
    largest = max(
        infos, key=lambda info: info.output_shape[1] * info.output_shape[2] * info.output_shape[3]
    )
    maps = cv.activations(model, x, [largest.name])[largest.name][0]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        payloads = grid_payloads(maps)
        times.append(time.perf_counter() - start)
    size = sum(len(p["data"]) for p in payloads.values())
    shape = "x".join(map(str, largest.output_shape[1:]))
    print(
        f"\nVGG-16 largest filter grid: {largest.name} ({shape}): payload {size / 1e6:.2f} MB "
        f"(uint8 per-channel quantized + 3 float32 vectors; float32 would be "
        f"{maps.numel() * 4 / 1e6:.1f} MB), encode {1000 * statistics.median(times):.1f} ms (median of 5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'model':9} {'batch':>5} {'method':9} {'ms':>9} {'/forward':>9} {'/best peer':>10}")
    for arch, layer in LAYERS.items():
        model = tvm.get_model(arch, weights=None).eval().to(device)
        for batch in args.batches:
            x = torch.randn(batch, 3, 224, 224, device=device)
            targets = [(37 * i + 1) % 1000 for i in range(batch)]
            times = measure(contenders(model, layer, x, targets), args.repeats, device)
            best_peer = min(times["captum"], times["grad-cam"], times["torchcam"])
            for name, seconds in times.items():
                print(
                    f"{arch:9} {batch:5d} {name:9} {1000 * seconds:9.1f} "
                    f"{seconds / times['forward']:9.2f} {seconds / best_peer:10.2f}"
                )
    grid_report(device)


if __name__ == "__main__":
    main()
