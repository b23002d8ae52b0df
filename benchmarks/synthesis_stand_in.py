"""Synthesis passes through the batch-norm-folded stand-in against the model with hooks.

    .venv/bin/python benchmarks/synthesis_stand_in.py

One forward + input-gradient backward at 224 px, batch 1, for the outputs a synthesis method
reads: Lite0's style layers (style transfer), the logits (class models, fooling and
adversarial images) of Lite0 and ResNet-50, and four ResNet-50 stages. Prints the best of 5
timed passes (after 2 warm-ups) for each path, two interleaved rounds, and hooks / folded.
"""

from __future__ import annotations

import time

import torch
import torchvision

import cnnvis_widget as cv
from cnnvis_widget.synthesis.network import LOGITS, ModelLike, SynthesisNet
from cnnvis_widget.synthesis.style import default_style_layers


def best_pass_ms(model: ModelLike, names: list[str], fold: bool) -> float:
    net = SynthesisNet.of(model)
    net.fold = fold
    image = torch.rand(1, 3, 224, 224)
    times = []
    with net.session():
        for attempt in range(7):
            x = image.clone().requires_grad_(True)
            start = time.perf_counter()
            features = net.features(x, names)
            sum(f.float().square().mean() for f in features.values()).backward()
            if attempt >= 2:
                times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    lite0 = cv.load_model()
    resnet50 = torchvision.models.resnet50().eval()
    style, content = default_style_layers(SynthesisNet.of(lite0), (224, 224))
    cases: list[tuple[str, ModelLike, list[str]]] = [
        ("Lite0 style + content layers", lite0, sorted({*style, content})),
        ("Lite0 logits", lite0, [LOGITS]),
        ("ResNet-50 logits", resnet50, [LOGITS]),
        ("ResNet-50 layer1..layer4", resnet50, ["layer1", "layer2", "layer3", "layer4"]),
    ]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'outputs':32s} {'folded ms':>10s} {'hooks ms':>10s} {'hooks/folded':>13s}")
    for label, model, names in cases:
        rounds = [(best_pass_ms(model, names, True), best_pass_ms(model, names, False))]
        rounds.append((best_pass_ms(model, names, True), best_pass_ms(model, names, False)))
        folded, hooks = (min(r[i] for r in rounds) for i in (0, 1))
        print(f"{label:32s} {folded:10.1f} {hooks:10.1f} {hooks / folded:13.2f}")


if __name__ == "__main__":
    main()
