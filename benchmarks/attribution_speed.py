"""Attribution methods against Captum and pytorch-grad-cam, measured in one run.

    .venv/bin/python benchmarks/attribution_speed.py [--models resnet50 vgg16] [--repeats 3]

ResNet-50 and VGG-16, random weights, 224x224, batch 1, one target. Each peer runs with its
best batch setting among a few (printed); cnnvis runs with its defaults except the sample /
step counts, which are set equal for everyone (SmoothGrad 50 samples at 15% noise,
Integrated Gradients 50 steps). Prints the median time of each and cnnvis / best peer.

``--precision bfloat16`` runs cnnvis with ``precision="bfloat16"`` and every peer inside
``torch.autocast(bfloat16)`` too, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision.models as tvm

import cnnvis_widget as cv

CAM_LAYERS = {"resnet50": "layer4", "vgg16": "features.29"}
Runner = Callable[[], object]


def timed(fn: Runner, repeats: int, device: torch.device, warmup: bool = True) -> float:
    if warmup:
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def cases(
    model: torch.nn.Module, arch: str, x: torch.Tensor, target: int, precision: str = "float32"
) -> dict[str, tuple[Runner, dict[str, Runner]]]:
    """method -> (cnnvis runner, {peer setting: runner})."""
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        GuidedGradCam,
        InputXGradient,
        IntegratedGradients,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )
    from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer_name = CAM_LAYERS[arch]
    layer = dict(model.named_modules())[layer_name]
    sigma = 0.15 * float(x.max() - x.min())
    jacob_target = [ClassifierOutputTarget(target)]

    def ours(method: str, **params: object) -> Runner:
        uses_layer = cv.METHODS[method].uses_layer
        return lambda: cv.attribute(
            model,
            x,
            method,
            target=target,
            layer=layer_name if uses_layer else None,
            precision=precision,  # type: ignore[arg-type]
            **params,
        )

    table: dict[str, tuple[Runner, dict[str, Runner]]] = {
        "saliency": (
            ours("saliency"),
            {"captum": lambda: Saliency(model).attribute(x, target=target, abs=False)},
        ),
        "guided_backprop": (
            ours("guided_backprop"),
            {"captum": lambda: GuidedBackprop(model).attribute(x, target=target)},
        ),
        "deconvnet": (
            ours("deconvnet"),
            {"captum": lambda: Deconvolution(model).attribute(x, target=target)},
        ),
        "gradient_x_input": (
            ours("gradient_x_input"),
            {"captum": lambda: InputXGradient(model).attribute(x, target=target)},
        ),
        "smoothgrad": (
            ours("smoothgrad", n_samples=50, noise_level=0.15),
            {
                f"captum nt_samples_batch_size={b}": (
                    lambda b=b: NoiseTunnel(Saliency(model)).attribute(
                        x,
                        target=target,
                        nt_type="smoothgrad",
                        nt_samples=50,
                        stdevs=sigma,
                        nt_samples_batch_size=b,
                        abs=False,
                    )
                )
                for b in (5, 10, 25)
            },
        ),
        "integrated_gradients": (
            ours("integrated_gradients", steps=50),
            {
                f"captum internal_batch_size={b}": (
                    lambda b=b: IntegratedGradients(model).attribute(
                        x, target=target, n_steps=50, baselines=0.0, internal_batch_size=b
                    )
                )
                for b in (5, 10, 25, 50)
            },
        ),
        "occlusion": (
            ours("occlusion"),
            {
                f"captum perturbations_per_eval={b}": (
                    lambda b=b: Occlusion(model).attribute(
                        x,
                        target=target,
                        sliding_window_shapes=(3, 32, 32),
                        strides=(3, 16, 16),
                        baselines=0.0,
                        perturbations_per_eval=b,
                    )
                )
                for b in (16, 32)
            },
        ),
        "gradcam": (
            ours("gradcam"),
            {"captum": lambda: LayerGradCam(model, layer).attribute(x, target=target)},
        ),
    }
    if "guided_gradcam" in cv.METHODS:
        table["guided_gradcam"] = (
            ours("guided_gradcam"),
            {"captum": lambda: GuidedGradCam(model, layer).attribute(x, target=target)},
        )
    if "gradcam_plus_plus" in cv.METHODS:
        table["gradcam_plus_plus"] = (
            ours("gradcam_plus_plus"),
            {"grad-cam": lambda: GradCAMPlusPlus(model, [layer])(x, targets=jacob_target)},
        )
    if "layercam" in cv.METHODS:
        table["layercam"] = (
            ours("layercam"),
            {"grad-cam": lambda: LayerCAM(model, [layer])(x, targets=jacob_target)},
        )
    if "scorecam" in cv.METHODS:

        def jacob_scorecam(b: int) -> Runner:
            def run() -> object:
                cam = ScoreCAM(model, [layer])
                cam.batch_size = b
                return cam(x, targets=jacob_target)

            return run

        table["scorecam"] = (
            ours("scorecam", weights="channel_softmax"),
            {f"grad-cam batch_size={b}": jacob_scorecam(b) for b in (16, 32, 64)},
        )
    return table


def in_precision(fn: Runner, precision: str, device: torch.device) -> Runner:
    """``fn`` run under bfloat16 autocast when ``precision`` asks for it (peers' side)."""
    if precision == "float32":
        return fn

    def run() -> object:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fn()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(CAM_LAYERS))
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed first call (for minute-long methods such as Score-CAM on CPU)",
    )
    parser.add_argument(
        "--peer-settings",
        type=int,
        default=None,
        help="time only the first N batch settings of each peer",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"precision {args.precision}"
    )
    print(
        f"{'model':9} {'method':22} {'cnnvis ms':>10} {'best peer ms':>12} {'peer/cnnvis':>11}  best peer setting"
    )
    for arch in args.models:
        torch.manual_seed(0)
        model = tvm.get_model(arch, weights=None).eval().to(device)
        x = torch.randn(1, 3, 224, 224, device=device)
        table = cases(model, arch, x, target=281, precision=args.precision)
        for method, (ours, peers) in table.items():
            if args.methods and method not in args.methods:
                continue
            warm = not args.no_warmup
            mine = timed(ours, args.repeats, device, warm)
            settings = [
                (name, in_precision(fn, args.precision, device))
                for name, fn in list(peers.items())[: args.peer_settings]
            ]
            peer_times = {name: timed(fn, args.repeats, device, warm) for name, fn in settings}
            best = min(peer_times, key=peer_times.__getitem__)
            print(
                f"{arch:9} {method:22} {1000 * mine:10.1f} {1000 * peer_times[best]:12.1f} "
                f"{peer_times[best] / mine:11.2f}  {best}"
            )


if __name__ == "__main__":
    main()
