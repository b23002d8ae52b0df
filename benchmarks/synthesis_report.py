"""Numbers for docs/synthesis.md: what each synthesis method gives on EfficientNet-Lite0
(real ImageNet weights) and the cat photo, plus a montage of examples.

    .venv/bin/python benchmarks/synthesis_report.py [--out docs/synthesis-examples.jpg]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision.utils as vutils

import cnnvis_widget as cv


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/synthesis-examples.jpg")
    args = parser.parse_args()
    bundle = cv.load_model()
    x = bundle.preprocess(cv.sample_image("cat"))
    photo = bundle.preprocess.denormalize(x)
    montage = [photo]

    print("Natural pre-images (Mahendran & Vedaldi defaults: C=1, 300 + 50 steps):")
    print("| layer | relative feature error | image correlation with the photo | time |")
    print("|---|---|---|---|")
    for layer in ("_blocks.1", "_blocks.3", "_blocks.5", "_blocks.8", "_blocks.10", "_blocks.15"):
        start = time.perf_counter()
        result = cv.invert(bundle, x, layer)
        seconds = time.perf_counter() - start
        error = float(result.trace[-1, 0])
        print(
            f"| {layer} | {error:.3f} | {correlation(result.images, photo):.3f} | {seconds:.0f} s |"
        )
        if layer in ("_blocks.3", "_blocks.10"):
            montage.append(result.images)

    result = cv.caricature(bundle, x, "_blocks.5")
    print(
        f"\nCaricature at _blocks.5: <Phi(x), Phi0> {result.info['original_match'][0]:.3f} "
        f"(photo) -> {float(result.trace[-1, 0]):.3f}"
    )
    montage.append(result.images)
    result = cv.deep_dream(bundle, x, "_blocks.8")
    print(
        f"Deep dream at _blocks.8 (4 octaves x 10 steps): objective {float(result.trace[0, 0]):.0f}"
        f" -> {float(result.trace[-1, 0]):.0f}"
    )
    montage.append(result.images)

    units = [0, 5, 11, 17]
    result = cv.visualize_feature(bundle, "_blocks.4", units, steps=256, size=224)
    acts = cv.activations(bundle.module, bundle.preprocess(result.images), "_blocks.4")["_blocks.4"]
    response = acts[:, units].mean(dim=(2, 3))
    print("\nChannel batch at _blocks.4 (256 steps): mean activation, image i (rows) x channel j")
    for i, row in enumerate(response.tolist()):
        print(f"  image for channel {units[i]:2d}: " + "  ".join(f"{v:7.3f}" for v in row))
    montage.extend(result.images[i : i + 1] for i in range(len(units)))

    result = cv.visualize_class(bundle, 281)
    top = bundle.predict(bundle.preprocess(result.images), 1)[0][0]
    print(
        f"\nClass model for 'tabby' (generation, 150 steps): logit {float(result.trace[0, 0]):.1f}"
        f" -> {float(result.trace[-1, 0]):.1f}; the model says {top[1]!r} at {top[2]:.1%}"
    )
    montage.append(result.images)

    result = cv.fooling_image(bundle, 281)
    print(
        f"Fooling image for 'tabby': p = {result.info['probability'][0]:.4f} after "
        f"{result.info['steps_to_confidence'][0]} steps"
    )
    montage.append(result.images)

    for method, target in (("fgsm", None), ("pgd", None), ("pgd", 1)):
        result = cv.adversarial(bundle, x, method=method, epsilon=2 / 255, target=target)
        (b_index, b_prob), (a_index, a_prob) = result.info["before"][0], result.info["after"][0]
        print(
            f"{method.upper()} eps 2/255 target {target}: {bundle.label(b_index)} {b_prob:.1%}"
            f" -> {bundle.label(a_index)} {a_prob:.1%}; max |delta| = "
            f"{255 * float(result.info['perturbation'].abs().max()):.2f}/255"
        )
    montage.append(result.images)

    style = bundle.preprocess(cv.sample_image("coffee"))
    result = cv.style_transfer(bundle, x, style, steps=150)
    print(
        f"Style transfer (coffee onto cat, 150 steps): loss {float(result.trace[0, 0]):.1f} -> "
        f"{float(result.trace[-1, 0]):.1f}"
    )
    montage.append(result.images)

    tiles = [
        torch.nn.functional.interpolate(
            m.cpu().float(), size=(160, 160), mode="bilinear", antialias=True, align_corners=False
        )
        for m in montage
    ]
    vutils.save_image(torch.cat(tiles), args.out, nrow=7, padding=4, pad_value=1.0)
    print(f"\nmontage: {args.out}")


if __name__ == "__main__":
    main()
