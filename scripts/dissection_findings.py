"""Reproduce two findings of Network Dissection (Bau et al. 2017) on EfficientNet-Lite0 with the
offline concept set, and write docs/dissection_findings.md.

    .venv/bin/python scripts/dissection_findings.py            # defaults below

(a) Unique detectors per category per layer at five depths (colour detectors early, object
    detectors growing with depth), the number of detectors and each layer's best units.
(b) Section 3.2: a random orthogonal rotation of a layer's units (A' = Q A across channels,
    Q from the QR decomposition of a seeded Gaussian matrix) is dissected as a layer of its own,
    its thresholds recomputed; the paper found fewer unique detectors after rotation.
(c) Control: the same layers of Lite0 with random weights (``cv.load_model(pretrained=False)``).

Every dissection runs with cv.dissect's defaults (q=0.005, IoU threshold 0.04, union "lite",
bilinear upsampling) and saves into ``--cache/<run>`` (``out=``), so a rerun resumes and a
finished run is read back. Wall-clock times of the passes are kept in ``--cache/times.json``
(a run read back from the cache reports the time it took when it ran).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

import cnnvis_widget as cv
from cnnvis_widget.capture import capture
from cnnvis_widget.dissection import DissectionResult

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    "_swish@0", "_blocks.1._swish@0", "_blocks.3._swish@1", "_blocks.7._swish@1",
    "_blocks.11._swish@1", "_blocks.15._swish@1", "_swish@1",
]  # fmt: skip
"""Post-ReLU6 layers from the stem to the head, as the paper's post-ReLU convolutions: the
stem's activation (32 units, 112 x 112), the activations after the expansion or depthwise
convolution of blocks 1, 3, 7, 11, 15, and the head's (1280 units, 7 x 7). ``@k`` is the
k-th call (from 0) of a module used more than once."""
BLOCKS = ["_blocks.1", "_blocks.3", "_blocks.7", "_blocks.11", "_blocks.15"]
"""Block outputs: linear bottlenecks (1x1 projection + batch norm, no activation)."""
ROTATE = ["_blocks.7._swish@1", "_blocks.15._swish@1", "_blocks.7", "_blocks.15"]
CATEGORIES = ("color", "object", "texture")


class Rotation(nn.Module):
    """A' = Q A across channels: ``out[n, i] = sum_j q[i, j] * a[n, j]``."""

    def __init__(self, q: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("q", q)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,njhw->nihw", self.q.to(a.dtype), a)


class RotatedLayer(nn.Module):
    """``model`` cut at ``layer``, whose units are mixed by the orthogonal ``q`` (C, C): the
    output of the submodule ``rotated`` is Q times the layer's activations, so
    ``cv.dissect(wrapper, data, ["rotated"])`` dissects the rotated units. The model's layer is
    read with a capture that exists only during the forward pass (its hook is removed when it
    returns) and stops the model right after the layer: no hook is left on the model, whose
    weights are shared, not changed."""

    def __init__(self, model: nn.Module, layer: str, q: torch.Tensor) -> None:
        super().__init__()
        self.model, self.layer = model, layer
        self.rotated = Rotation(q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), capture(self.model, [self.layer], calls={self.layer: 1},
                                      stop_early=True) as taps:  # fmt: skip
            self.model(x)
        return self.rotated(taps.tensor(self.layer))


def random_rotation(channels: int, seed: int) -> torch.Tensor:
    """A random orthogonal (C, C) matrix: Q of the QR decomposition of a seeded Gaussian
    matrix, its columns' signs fixed by R's diagonal (uniform over the orthogonal group)."""
    generator = torch.Generator().manual_seed(seed)
    gauss = torch.randn(channels, channels, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    return (q * torch.sign(torch.diagonal(r))).float()


def hooks_on(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


USED: list[str] = []
"""The runs this invocation reads or makes, in order (the report lists their times)."""


def timed(times: dict[str, float], key: str, out: Path, run: Any) -> tuple[DissectionResult, float]:
    """Run ``run()`` (a cv.dissect writing into ``out``); a run finished before is read back and
    reports the time it took then."""
    done = (out / "dissection.json").is_file()
    start = time.perf_counter()
    result = run()
    if not done:  # a run read back keeps the time it took when it ran (if it was recorded)
        times[key] = time.perf_counter() - start
    USED.append(key)
    return result, times.get(key, float("nan"))


def per_category(result: DissectionResult, layer: str) -> dict[str, int]:
    return {c: sum(1 for r in result.detectors(layer) if r.category == c) for c in CATEGORIES}


def counts_row(result: DissectionResult, layer: str, name: str | None = None) -> str:
    summary = result.summary()[layer]
    units = len(result.units(layer))
    detectors = per_category(result, layer)
    total = sum(detectors.values())
    unique = " | ".join(str(summary.get(c, 0)) for c in CATEGORIES)
    split = " / ".join(str(detectors[c]) for c in CATEGORIES)
    iou, colour, unit = best_colour(result, layer)
    return (
        f"| {name or layer} | {units} | {unique} | {sum(summary.values())} | {total} "
        f"({100 * total / units:.0f}%) | {split} | {iou:.3f} ({colour}, unit {unit}) |"
    )


COUNTS_HEADER = [
    "| layer | units | unique colour | unique object | unique texture | unique total "
    "| detectors (% of units) | detectors colour / object / texture | best colour IoU |",
    "|---|---|---|---|---|---|---|---|---|",
]


def top_units(result: DissectionResult, layer: str, k: int = 8) -> str:
    return ", ".join(
        f"{r.unit}: {r.concept} ({r.category[0]}) {r.iou:.3f}" for r in result.detectors(layer)[:k]
    )


def unique_concepts(result: DissectionResult, layer: str) -> str:
    found: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for row in result.detectors(layer):
        if row.concept not in found[row.category]:
            found[row.category].append(row.concept)
    return "; ".join(f"{c}: {', '.join(found[c]) or '-'}" for c in CATEGORIES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/cnnvis_widget/findings")
    parser.add_argument(
        "--stride", type=int, default=10, help="dissect every stride-th concept image (1: all)"
    )
    parser.add_argument("--layers", nargs="+", default=LAYERS)
    parser.add_argument("--blocks", nargs="*", default=BLOCKS, help="the block outputs' table")
    parser.add_argument("--rotate", nargs="*", default=ROTATE)
    parser.add_argument("--seed", type=int, default=0, help="seed of the rotations")
    parser.add_argument("--no-random", action="store_true", help="skip the random-weights run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--write", type=Path, default=ROOT / "docs/dissection_findings.md")
    args = parser.parse_args()

    started = time.perf_counter()
    full = cv.datasets.concepts(progress=False)
    data = full if args.stride == 1 else Subset(full, range(0, len(full), args.stride))
    cache = args.cache / f"stride{args.stride}"
    cache.mkdir(parents=True, exist_ok=True)
    times_file = cache / "times.json"
    times: dict[str, float] = json.loads(times_file.read_text()) if times_file.is_file() else {}
    options = {"batch_size": args.batch_size, "progress": sys.stderr.isatty()}

    bundle = cv.load_model()
    before = {k: v.clone() for k, v in bundle.module.state_dict().items()}
    print(f"{len(data)} concept images; layers {args.layers}", flush=True)

    trained_key = run_key("trained", args.layers)
    trained, seconds = timed(
        times, trained_key, cache / trained_key,
        lambda: cv.dissect(bundle, data, args.layers, out=cache / trained_key, **options),
    )  # fmt: skip
    print(f"{trained_key}: {seconds:.0f} s", flush=True)
    blocks: DissectionResult | None = None
    if args.blocks:
        blocks_key = run_key("trained", args.blocks)
        blocks, seconds = timed(
            times, blocks_key, cache / blocks_key,
            lambda: cv.dissect(bundle, data, args.blocks, out=cache / blocks_key, **options),
        )  # fmt: skip
        print(f"{blocks_key}: {seconds:.0f} s", flush=True)

    rotated: dict[str, tuple[DissectionResult, DissectionResult]] = {}
    for layer in args.rotate:
        plain = trained if layer in args.layers else blocks
        if plain is None or layer not in plain.layers:  # its own dissection of the unrotated units
            key = f"trained-{layer}"
            plain, seconds = timed(
                times, key, cache / key,
                lambda k=key, n=layer: cv.dissect(bundle, data, [n], out=cache / k, **options),
            )  # fmt: skip
            print(f"{key}: {seconds:.0f} s", flush=True)
        channels = plain.layers[layer].thresholds.numel()
        wrapper = RotatedLayer(bundle.module, layer, random_rotation(channels, args.seed))
        key = f"rotated-{layer}-seed{args.seed}"
        result, seconds = timed(
            times, key, cache / key,
            lambda w=wrapper, k=key: cv.dissect(
                w, data, ["rotated"], out=cache / k, preprocess=bundle.preprocess, **options
            ),
        )  # fmt: skip
        rotated[layer] = (plain, result)
        print(f"{key}: {seconds:.0f} s", flush=True)
    assert hooks_on(bundle.module) == 0, "a hook was left on the model"
    after = bundle.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the model's weights changed"

    control: DissectionResult | None = None
    if not args.no_random:
        torch.manual_seed(args.seed)  # the random weights' initialisation
        untrained = cv.load_model(pretrained=False)
        random_key = run_key(f"random-seed{args.seed}", args.layers)
        control, seconds = timed(
            times, random_key, cache / random_key,
            lambda: cv.dissect(untrained, data, args.layers, out=cache / random_key, **options),
        )  # fmt: skip
        print(f"random weights: {seconds:.0f} s", flush=True)
    times_file.write_text(json.dumps(times, indent=1))

    lines = report(
        args, data, trained, blocks, rotated, control, times, time.perf_counter() - started
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)
        print(f"wrote {args.write}")


def run_key(prefix: str, layers: list[str]) -> str:
    """The cache folder of a dissection of ``layers`` (the block outputs keep their old name)."""
    if layers == BLOCKS:
        return prefix
    digest = hashlib.sha256(" ".join(layers).encode()).hexdigest()[:8]
    return f"{prefix}-layers-{digest}"


def report(
    args: argparse.Namespace,
    data: Any,
    trained: DissectionResult,
    blocks: DissectionResult | None,
    rotated: dict[str, tuple[DissectionResult, DissectionResult]],
    control: DissectionResult | None,
    times: dict[str, float],
    wall: float,
) -> list[str]:
    command = ".venv/bin/python scripts/dissection_findings.py" + (
        f" --stride {args.stride}" if args.stride != 10 else ""
    )
    full = data.dataset if isinstance(data, Subset) else data
    kinds = Counter(
        full.kinds[i] for i in (data.indices if isinstance(data, Subset) else range(len(full)))
    )
    lines = [
        "# Network Dissection findings on EfficientNet-Lite0 (generated)",
        "",
        f"Written by `{command}` (scripts/dissection_findings.py); numbers below are from "
        "that run. Model: `cv.load_model()` (EfficientNet-Lite0, ImageNet weights); data: "
        f"`cv.datasets.concepts()`"
        + (f", every {args.stride}th image (`Subset`)" if args.stride > 1 else "")
        + f": {len(data):,} of {len(full):,} images ("
        + ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        + f"), {len(full.concepts.categories)} categories, {full.concepts.size - 1} concepts; "
        "`cv.dissect` defaults (q = 0.005, IoU threshold 0.04, union `lite`, bilinear "
        f"upsampling, batch {args.batch_size}). Torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.machine()}.",
        "",
        "## (a) Unique detectors per category and layer",
        "",
        "A *detector* is a unit whose best concept has IoU > 0.04; *unique* detectors count "
        "distinct concepts with at least one detector (the paper's measure).",
        "",
        *COUNTS_HEADER,
        *(counts_row(trained, layer) for layer in args.layers),
        "",
        "Unique concepts detected per layer:",
        "",
        *(f"- `{layer}`: {unique_concepts(trained, layer)}" for layer in args.layers),
        "",
        "Best detectors per layer (unit: concept (category) IoU):",
        "",
        *(f"- `{layer}`: {top_units(trained, layer) or '-'}" for layer in args.layers),
        "",
    ]
    if blocks is not None:
        lines += [
            "### The block outputs",
            "",
            "The same measure on the blocks' outputs, linear bottlenecks (1x1 projection + batch "
            "norm, no activation: signed values, no ReLU to single out a unit's axis):",
            "",
            *COUNTS_HEADER,
            *(counts_row(blocks, layer) for layer in args.blocks),
            "",
            "Best detectors per layer:",
            "",
            *(f"- `{layer}`: {top_units(blocks, layer) or '-'}" for layer in args.blocks),
            "",
        ]
    if rotated:
        lines += [
            "## (b) Random orthogonal rotation of a layer's units (paper, section 3.2)",
            "",
            f"A' = Q A across channels, Q (C x C) from `torch.linalg.qr` of a Gaussian matrix "
            f"(seed {args.seed}, signs fixed by R's diagonal), dissected as the `rotated` "
            "submodule of a wrapper module (thresholds recomputed for the rotated units).",
            "",
            *COUNTS_HEADER,
        ]
        for layer, (plain, result) in rotated.items():
            lines.append(counts_row(plain, layer, f"`{layer}`"))
            lines.append(counts_row(result, "rotated", f"`{layer}` rotated"))
        lines += [""]
        for layer, (plain, result) in rotated.items():
            best = plain.detectors(layer)[:1]
            best_rot = result.detectors("rotated")[:1]
            mean = plain.iou(layer).max(dim=1).values.mean()
            mean_rot = result.iou("rotated").max(dim=1).values.mean()
            lines.append(
                f"- `{layer}`: mean best IoU per unit {mean:.4f} -> {mean_rot:.4f} rotated; "
                f"best unit {best[0].iou if best else 0:.3f} -> "
                f"{best_rot[0].iou if best_rot else 0:.3f}; rotated detectors: "
                f"{top_units(result, 'rotated') or '-'}"
            )
        lines += [""]
    if control is not None:
        lines += [
            "## (c) Control: random weights",
            "",
            "`cv.load_model(pretrained=False)` (EfficientNet-Lite0's initialisation, "
            f"`torch.manual_seed({args.seed})`), the same layers and data.",
            "",
            *COUNTS_HEADER,
            *(counts_row(control, layer) for layer in args.layers),
            "",
            "Best detectors per layer:",
            "",
            *(f"- `{layer}`: {top_units(control, layer) or '-'}" for layer in args.layers),
            "",
        ]
    used = {key: times[key] for key in USED if key in times}
    lines += reading(args, trained, rotated, control)
    if blocks is not None:
        found = {layer: per_category(blocks, layer)["color"] for layer in args.blocks}
        lines.insert(
            len(lines) - 1,
            "- **Which layers.** The paper dissected AlexNet's and VGG's post-ReLU convolutions; "
            "the table above dissects Lite0's post-ReLU6 layers. Lite0's block outputs (linear "
            "bottlenecks, signed, no activation) hold "
            + ", ".join(f"`{layer}` {n}" for layer, n in found.items())
            + " colour detectors: the colour units are in the activations, not in the "
            "bottlenecks (which an earlier version of this page dissected, finding none).",
        )
    lines += [
        "## Run time",
        "",
        "Wall clock on this machine (2 CPU cores, no GPU), both passes of each dissection:",
        "",
        *(f"- {key}: {seconds:.0f} s" for key, seconds in used.items()),
        f"- all of them: {sum(used.values()):.0f} s ({sum(used.values()) / 60:.1f} min), while "
        "other processes shared the two cores",
        f"- this invocation (what was finished before is read back from `--cache`): {wall:.0f} s",
        "",
    ]
    return lines


def best_colour(result: DissectionResult, layer: str) -> tuple[float, str, int]:
    """The highest IoU of any unit of ``layer`` with a colour: (IoU, colour, unit)."""
    colours = [i for i in range(1, result.table.size) if result.table[i].category == "color"]
    colour_iou = result.iou(layer)[:, colours]
    unit, column = divmod(int(colour_iou.argmax()), len(colours))
    return float(colour_iou.max()), result.table[colours[column]].name, unit


def colour_note(result: DissectionResult, layers: list[str]) -> str:
    parts = []
    for layer in layers:
        iou, name, unit = best_colour(result, layer)
        label = result.units(layer)[unit]
        parts.append(
            f"`{layer}` {iou:.3f} ({name}, unit {unit}, whose best concept is "
            f"{label.concept} {label.iou:.3f})"
        )
    return (
        "No unit's best concept is a colour. The highest colour IoU per layer (last column of "
        "the table): " + "; ".join(parts) + ". Where a colour IoU passes 0.04, the same unit "
        "matches another concept better. Possible reasons, not tested here: Lite0's block outputs "
        "are linear bottlenecks after a depthwise stage, responding to edges and repeated "
        "patterns more than to flat colour; the colour masks are large (every pixel has a "
        "colour name), so a unit's top-0.5 % region is a small part of a colour's area; the "
        "paper's colour detectors were in AlexNet's conv1-conv2 (post-ReLU, 96-256 units), and "
        "`_blocks.1` has 24 units."
    )


def reading(
    args: argparse.Namespace,
    trained: DissectionResult,
    rotated: dict[str, tuple[DissectionResult, DissectionResult]],
    control: DissectionResult | None,
) -> list[str]:
    """What the numbers say about the paper's findings, decided from the numbers (a rerun with
    other numbers writes other verdicts)."""
    summary = trained.summary()
    colour = [summary[layer].get("color", 0) for layer in args.layers]
    objects = [summary[layer].get("object", 0) for layer in args.layers]
    object_detectors = [per_category(trained, layer)["object"] for layer in args.layers]
    table = trained.table
    total = {c: sum(1 for x in table.concepts if x.category == c) for c in CATEGORIES}
    half = len(args.layers) // 2
    colour_units = [per_category(trained, layer)["color"] for layer in args.layers]
    units = [len(trained.units(layer)) for layer in args.layers]
    share = [found / count for found, count in zip(colour_units, units, strict=True)]
    early = sum(colour_units[: half + 1]) / sum(units[: half + 1])
    late = sum(colour_units[half + 1 :]) / sum(units[half + 1 :])
    grows = objects[-1] > objects[0] and all(b >= a for a, b in itertools.pairwise(objects))
    lines = [
        "## Reading",
        "",
        f"- **Object detectors grow with depth: "
        f"{'reproduced' if grows else 'not reproduced'}.** Unique object detectors "
        f"{' -> '.join(map(str, objects))}, object detectors "
        f"{' -> '.join(map(str, object_detectors))} from `{args.layers[0]}` to "
        f"`{args.layers[-1]}`. The concept set has only {total['object']} object concepts, so "
        f"{max(objects)} of {total['object']} is {'the' if max(objects) == total['object'] else 'near the'} "
        "ceiling: past it, more object units show as more detectors, not more unique ones.",
        f"- **Colour detectors concentrate in early layers: "
        f"{'reproduced' if early > late and early > 0 else 'not reproduced'}.** Unique colour "
        f"detectors per layer: {' / '.join(map(str, colour))}; colour detectors as a share of "
        f"the layer's units: {' / '.join(f'{100 * x:.1f} %' for x in share)} "
        f"({100 * early:.1f} % of the units of the first {half + 1} layers, {100 * late:.1f} % "
        f"of the last {len(args.layers) - half - 1}). "
        + (colour_note(trained, args.layers) if max(colour) == 0 else ""),
    ]
    for layer, (plain, result) in rotated.items():
        before, after = (
            sum(plain.summary()[layer].values()),
            sum(result.summary()["rotated"].values()),
        )
        found_before, found_after = len(plain.detectors(layer)), len(result.detectors("rotated"))
        verdict = "reproduced" if after < before else "not reproduced"
        lines.append(
            f"- **Rotation lowers unique detectors, `{layer}`: {verdict}.** Unique detectors "
            f"{before} -> {after}, detectors {found_before} -> {found_after} "
            f"({len(plain.units(layer))} units)."
        )
    lines += [
        "- About the rotation: a block output of EfficientNet is a *linear* bottleneck (1x1 "
        "projection + batch norm, no activation; the next block starts with a 1x1 convolution), "
        "so nothing in the network singles out its axes: a rotation Q could be folded into the "
        "projection and the next convolution without changing the function. The paper rotated "
        "AlexNet's conv5, whose units pass a ReLU. `_blocks.7._swish@1` is such a layer here: "
        "the ReLU6 after block 7's depthwise convolution (480 units, 14 x 14). Where every "
        "object concept already has a detector (`_blocks.15`), the unique count can hardly "
        "move; the detector count and the mean best IoU are the finer readings there.",
    ]
    if control is not None:
        random_total = [sum(control.summary()[layer].values()) for layer in args.layers]
        trained_total = [sum(summary[layer].values()) for layer in args.layers]
        fewer = [
            layer
            for layer, r, t in zip(args.layers, random_total, trained_total, strict=True)
            if r < t
        ]
        more = [
            layer
            for layer, r, t in zip(args.layers, random_total, trained_total, strict=True)
            if r >= t
        ]
        common = Counter(row.concept for layer in args.layers for row in control.detectors(layer))
        lines.append(
            "- **Random weights** (control): unique detectors per layer "
            f"{' / '.join(map(str, random_total))} against {' / '.join(map(str, trained_total))} "
            f"trained: fewer in {', '.join(f'`{x}`' for x in fewer) or 'no layer'}, as many or "
            f"more in {', '.join(f'`{x}`' for x in more) or 'no layer'}. An untrained network "
            "has detectors too (the paper's random AlexNet had a few), here mostly "
            + ", ".join(f"`{name}` ({n})" for name, n in common.most_common(3))
            + " (detectors over all layers): concepts with large or distinctive regions."
        )
    lines += [
        f"- **Caveats.** Every {args.stride}th image of the concept set only (to fit the run in "
        "about 15 minutes on 2 cores): IoUs of the rarer concepts rest on few images. One "
        f"rotation seed ({args.seed}). The offline concept set has {sum(total.values())} "
        "concepts (Broden: 1,197) and no scenes or parts, so the counts are not comparable with "
        "the paper's in size, only in trend.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
