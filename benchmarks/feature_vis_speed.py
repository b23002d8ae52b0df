"""Feature visualization throughput: a whole layer batched against one channel at a time.

    PYTHONPATH=.peers/lucent .venv/bin/python benchmarks/feature_vis_speed.py [--channels 16]
        [--steps 16] [--models resnet18 efficientnet_lite0]

Same objective (mean activation of one channel), steps, image size (128 px) and Lucid's
transforms (pad, jitter, scale, rotate, upsample to 224) for everyone:

- lucent: Lucent's ``render_vis`` once per channel (its recommended use; install it with
  ``pip install --no-deps --target .peers/lucent torch-lucent kornia==0.4.1 decorator``;
  skipped when it is not importable);
- loop: cnnvis ``visualize_feature`` once per channel;
- batched: cnnvis ``visualize_feature`` with every channel in one call (automatic batches:
  4 images on CPU, 128 on a GPU);
- batched bf16: the same with ``precision="bfloat16"``.

Prints channel-steps per second (channels x steps / seconds) and each one's ratio to the
Lucent per-channel loop and to cnnvis' own per-channel loop, all from the same run, and how far
each got: the mean activation of each image's own channel, measured the same way for all
(image upsampled to 224 px, the bundle's normalization). Lucent normalizes with ImageNet's
mean/std, which is the bundle's for torchvision models but not for EfficientNet-Lite0.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import cnnvis_widget as cv

LAYERS = {"resnet18": "layer3", "resnet50": "layer3", "efficientnet_lite0": "_blocks.8"}


def lucent_runner(
    model: torch.nn.Module, layer: str, units: list[int], steps: int
) -> Callable[[], object] | None:
    try:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        from lucent.optvis import param, render
    except ImportError:
        return None
    name = layer.replace(".", "_")

    def run() -> torch.Tensor:
        images = []
        for unit in units:
            before = {id(m): set(m._forward_hooks) for m in model.modules()}
            (batch,) = render.render_vis(
                model,
                f"{name}:{unit}",
                param_f=lambda: param.image(128, batch=1),
                thresholds=(steps,),
                show_image=False,
                progress=False,
                preprocess=True,
            )
            images.append(torch.from_numpy(batch).permute(0, 3, 1, 2))
            for m in model.modules():  # Lucent leaves its hooks behind; drop only its own
                for key in set(m._forward_hooks) - before[id(m)]:
                    del m._forward_hooks[key]
        return torch.cat(images)

    return run


def timed(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    """(seconds, the [0, 1] images (K, 3, H, W) the run made)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    images = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, images


def reached(bundle: cv.ModelBundle, layer: str, units: list[int], images: torch.Tensor) -> float:
    """Mean over images of the activation of each image's own channel, the image upsampled to
    224 px and normalized as the bundle's model expects: how far each run got."""
    x = bundle.preprocess.normalize(
        torch.nn.functional.interpolate(images.float().cpu(), size=224, mode="bilinear")
    )
    acts = cv.activations(bundle.module, x, layer)[layer].float().cpu()
    own = acts[torch.arange(len(units)), torch.tensor(units)]
    return float(own.mean(dim=(1, 2)).mean())


def measure(
    arch: str, channels: int, steps: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """(channel-steps per second, mean own-channel activation reached) per contender."""
    bundle = cv.load_model(arch, pretrained=arch == "efficientnet_lite0")
    bundle.module.to(device).eval()
    layer, units = LAYERS[arch], list(range(channels))

    def batched(precision: str, n: int = steps) -> torch.Tensor:
        # batch_size=0: the automatic batch size a user gets (4 on CPU, 128 on a GPU).
        return cv.visualize_feature(bundle, layer, units, steps=n, precision=precision).images

    def loop() -> torch.Tensor:
        return torch.cat(
            [cv.visualize_feature(bundle, layer, u, steps=steps).images for u in units]
        )

    runs: dict[str, Callable[[], torch.Tensor]] = {}
    lucent = lucent_runner(bundle.module, layer, units, steps)
    if lucent is not None:
        runs["lucent (per channel)"] = lucent
    runs["cnnvis loop (per channel)"] = loop
    runs["cnnvis batched"] = lambda: batched("float32")
    runs["cnnvis batched bf16"] = lambda: batched("bfloat16")
    # Warm-up (allocator, oneDNN / cuDNN kernel choice): a short run of each of ours.
    batched("float32", 2)
    batched("bfloat16", 2)
    cv.visualize_feature(bundle, layer, 0, steps=2)
    results = {}
    for name, run in runs.items():
        seconds, images = timed(run, device)
        results[name] = (channels * steps / seconds, reached(bundle, layer, units, images))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet18", "efficientnet_lite0"])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{args.channels} channels x {args.steps} steps, 128 px, Lucid transforms\n")
    for arch in args.models:
        rates = measure(arch, args.channels, args.steps, device)
        print(f"{arch} @ {LAYERS[arch]}:")
        for name, (rate, activation) in rates.items():
            versus = [
                f"{rate / rates[ref][0]:.2f}x {ref.split(' ')[0]}"
                for ref in ("lucent (per channel)", "cnnvis loop (per channel)")
                if ref in rates
            ]
            print(
                f"  {name:28s} {rate:8.1f} channel-steps/s   ({', '.join(versus)});"
                f"  own-channel activation reached {activation:.3f}"
            )
        print()


if __name__ == "__main__":
    main()
