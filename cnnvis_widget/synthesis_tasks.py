"""What the widget's synthesis panel can run, as plain Python (no traits): the kinds with their
parameter forms, one call per kind on the current model / image / layer / class, and the
payloads the frontend draws (frames, the objective curve, the adversarial view)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .encode import Payload, ndarray_payload
from .methods.api import _check_param
from .methods.registry import Param
from .models import ModelBundle, display_pixels
from .synthesis import (
    SynthesisFrame,
    SynthesisResult,
    adversarial,
    caricature,
    deep_dream,
    fooling_image,
    invert,
    visualize_class,
    visualize_feature,
)
from .synthesis.network import SynthesisNet

Needs = Literal["channel", "class", "image"]


@dataclass(frozen=True)
class SynthesisKind:
    """One entry of the panel's picker: ``needs`` says what its target is (a channel of the
    selected layer, the selected class, or the current image at the selected layer)."""

    name: str
    title: str
    needs: Needs
    summary: str
    params: tuple[Param, ...]
    resumable: bool = False

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "needs": self.needs,
            "summary": self.summary, "resumable": self.resumable,
            "params": [
                {"name": p.name, "kind": p.kind, "default": p.default, "low": p.low,
                 "high": p.high, "choices": list(p.choices), "doc": p.doc}
                for p in self.params
            ],
        }  # fmt: skip


def _steps(default: int, high: int = 4096) -> Param:
    return Param("steps", default, "int", "optimization steps", 1, high)


SEED = Param("seed", 0, "int", "random seed (Reseed draws a new one)", 0, 2**31 - 1)

KINDS: dict[str, SynthesisKind] = {
    kind.name: kind
    for kind in (
        SynthesisKind(
            "feature", "Channel visualization", "channel",
            "Activation maximization of the picked channel (Lucid: Fourier parameterization, "
            "decorrelated colour, robustness transforms, Adam).",
            (_steps(256), Param("size", 128, "int", "image side in pixels", 8, 512), SEED,
             Param("precision", "float32", "choice", "network arithmetic",
                   choices=("float32", "bfloat16"))),
            resumable=True,
        ),
        SynthesisKind(
            "erhan", "Channel, norm-constrained (Erhan)", "channel",
            "Erhan et al. 2009: plain gradient ascent of the picked channel on inputs of fixed "
            "norm, from several random starts; the label says how much the restarts agree.",
            (_steps(200), Param("size", 64, "int", "image side in pixels", 8, 512),
             Param("restarts", 4, "int", "random starts; similar optima = a stable unit", 1, 16),
             SEED),
        ),
        SynthesisKind(
            "class", "Class model", "class",
            "An image that maximizes the selected class's logit.",
            (Param("method", "generation", "choice", "generation: Yosinski-regularized ascent; "
                   "simonyan; yosinski (Table 1 row 3); lucid",
                   choices=("generation", "simonyan", "yosinski", "lucid")),
             _steps(150), SEED),
        ),
        SynthesisKind(
            "invert", "Natural pre-image", "image",
            "Mahendran & Vedaldi: an image whose representation at the selected layer matches "
            "the current image's, under the alpha-norm + TV prior.",
            (Param("strength", 1.0, "float", "C: larger = more faithful, less natural", 0.01, 1e4),
             _steps(300), SEED),
        ),
        SynthesisKind(
            "caricature", "Caricature", "image",
            "Amplify what the selected layer sees in the current image.",
            (Param("strength", 1.0, "float", "C", 0.01, 1e4), _steps(100), SEED),
        ),
        SynthesisKind(
            "dream", "Deep dream", "image",
            "Amplify the selected layer's activations, octave by octave.",
            (Param("octaves", 4, "int", "scales, coarse to fine", 1, 8),
             _steps(10, 200), SEED),
        ),
        SynthesisKind(
            "fooling", "Fooling image", "class",
            "An unrecognizable image the model gives the selected class with high confidence.",
            (Param("confidence", 0.99, "float", "stop at this probability", 0.5, 0.9999),
             _steps(500), SEED),
        ),
        SynthesisKind(
            "adversarial", "Adversarial example", "image",
            "FGSM or PGD within epsilon grey levels of the current image.",
            (Param("attack", "fgsm", "choice", "fgsm: one step; pgd: projected steps",
                   choices=("fgsm", "pgd")),
             Param("epsilon", 2.0, "float", "in grey levels (1/255)", 0.25, 64),
             Param("target", -1, "int", "class index to reach; -1 = any class but the current "
                   "prediction", -1, 100000),
             Param("steps", 10, "int", "PGD steps (FGSM takes one step: not used)", 1, 1000),
             Param("seed", 0, "int", "PGD's random start (FGSM: not used)", 0, 2**31 - 1)),
        ),
    )
}  # fmt: skip


def model_size(bundle: ModelBundle) -> tuple[int, int] | None:
    """The (H, W) the bundle's model takes when it takes only one size (a LeNet's 28 x 28, a
    ViT's 224 x 224), else ``None``."""
    return SynthesisNet.of(bundle).input_size


def kind_rows(bundle: ModelBundle | None = None) -> list[dict[str, Any]]:
    """The picker's rows; with ``bundle``, an image ``size`` defaults to its model's one input
    size when it takes only one (what :func:`run_synthesis` then uses when no size is set)."""
    fixed = model_size(bundle) if bundle is not None else None
    rows = [kind.row() for kind in KINDS.values()]
    if fixed is not None:
        for row in rows:
            for param in row["params"]:
                if param["name"] == "size":
                    param["default"] = min(max(fixed[0], param["low"]), param["high"])
    return rows


def check_synthesis(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against ``kind`` (names, types, ranges) and completed with defaults."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthesis {kind!r}; choose one of {list(KINDS)}.")
    spec = KINDS[kind]
    known = {p.name for p in spec.params}
    if set(params) - known:
        raise ValueError(
            f"{kind} does not take {sorted(set(params) - known)}; it takes {sorted(known)}."
        )
    for param in spec.params:
        if param.name in params:
            _check_param(kind, param, params[param.name])
    return {**{p.name: p.default for p in spec.params}, **params}


@dataclass(frozen=True)
class SynthesisTarget:
    """Where the panel points: the selected layer and channel, class, and the model input."""

    layer: str
    channel: int
    target: int
    x: torch.Tensor


def check_target(kind: str, where: SynthesisTarget) -> None:
    """Refuse a kind whose target is missing (a channel kind before any tile was picked)."""
    if KINDS[kind].needs == "channel" and where.channel < 0:
        raise ValueError("pick a channel first: click a tile of the filter grid.")


def run_synthesis(
    bundle: ModelBundle,
    kind: str,
    params: dict[str, Any],
    where: SynthesisTarget,
    on_step: Callable[[SynthesisFrame], bool | None] | None = None,
    resume: SynthesisResult | None = None,
) -> SynthesisResult:
    """Run ``kind`` with checked ``params`` on ``where``; frames go to ``on_step``. Without
    a ``size`` in ``params``, a model that takes only one input size gets images of it."""
    p = check_synthesis(kind, params)
    if "size" in p and "size" not in params:
        p["size"] = model_size(bundle) or p["size"]
    steps, seed = p["steps"], p["seed"]
    check_target(kind, where)
    if kind == "feature":
        return visualize_feature(
            bundle,
            where.layer,
            [where.channel],
            steps=steps,
            size=p["size"],
            seed=seed,
            precision=p["precision"],
            on_step=on_step,
            resume=resume,
        )
    if kind == "erhan":
        return visualize_feature(
            bundle, where.layer, [where.channel], method="erhan", restarts=p["restarts"],
            steps=steps, size=p["size"], seed=seed, on_step=on_step,
        )  # fmt: skip
    if kind == "class":
        return visualize_class(
            bundle, where.target, method=p["method"], steps=steps, seed=seed, on_step=on_step
        )
    if kind == "invert":
        return invert(
            bundle,
            where.x,
            where.layer,
            strength=p["strength"],
            steps=(steps, max(1, steps // 6)),
            seed=seed,
            on_step=on_step,
        )
    if kind == "caricature":
        return caricature(
            bundle,
            where.x,
            where.layer,
            strength=p["strength"],
            steps=steps,
            seed=seed,
            on_step=on_step,
        )
    if kind == "dream":
        return deep_dream(
            bundle,
            where.x,
            where.layer,
            octaves=p["octaves"],
            steps=steps,
            seed=seed,
            on_step=on_step,
        )
    if kind == "fooling":
        return fooling_image(
            bundle,
            where.target,
            confidence=p["confidence"],
            steps=steps,
            seed=seed,
            on_step=on_step,
        )
    target = None if p["target"] < 0 else p["target"]
    return adversarial(bundle, where.x, method=p["attack"], epsilon=p["epsilon"] / 255,
                       target=target, steps=steps, seed=seed, on_step=on_step)  # fmt: skip


def images_payload(images: torch.Tensor) -> Payload:
    """[0, 1] images (K, C, H, W) -> uint8 (K, H, W, 3) payload: RGB as is, greyscale
    (C = 1) as three equal channels (shown as greyscale), other counts as their grey mean."""
    return ndarray_payload(display_pixels(images), "uint8")


def frame_payload(
    kind: str, label: str, frame: SynthesisFrame, trace: list[torch.Tensor]
) -> Payload:
    """A streamed frame: the current images, the objective curve so far (``trace``: one 0-d
    tensor per step, the mean over images)."""
    curve = torch.stack(trace).cpu() if trace else torch.zeros(0)
    return {
        "kind": kind, "label": label, "images": images_payload(frame.images),
        "trace": ndarray_payload(curve, "float32"),
        "trace_name": frame.trace_name, "step": frame.step, "total": frame.total,
        "final": False, "adversarial": None,
    }  # fmt: skip


def result_payload(kind: str, label: str, result: SynthesisResult, bundle: ModelBundle) -> Payload:
    """The final (or stopped) result, with the adversarial view when there is one."""
    trace = result.trace.float().mean(dim=1).cpu().numpy() if result.steps else np.zeros(0)
    stability = result.info.get("stability")
    if stability and not math.isnan(stability[0]):
        label = f"{label} · restarts agree: correlation {stability[0]:.2f}"
    payload = {
        "kind": kind, "label": label, "images": images_payload(result.images),
        "trace": ndarray_payload(trace.astype(np.float32), "float32"),
        "trace_name": result.trace_name, "step": result.steps, "total": result.steps,
        "final": True, "stopped": result.stopped, "adversarial": None,
    }  # fmt: skip
    if kind == "adversarial":
        info = result.info
        perturbation = info["perturbation"]
        magnified = (0.5 + perturbation / (2 * max(info["epsilon"], 1e-12))).clamp(0, 1)
        payload["adversarial"] = {
            "original": images_payload(info["original"]),
            "perturbation": images_payload(magnified),
            "before": _prediction(bundle, *info["before"][0]),
            "after": _prediction(bundle, *info["after"][0]),
            "epsilon": round(info["epsilon"] * 255, 4),
        }
    return payload


def _prediction(bundle: ModelBundle, index: int, prob: float) -> dict[str, Any]:
    return {"index": index, "label": bundle.label(index), "prob": prob}


def layer_grid_payload(
    images: torch.Tensor, first: int, count: int, layer: str, previous: np.ndarray | None
) -> tuple[Payload, np.ndarray]:
    """The layer's feature-visualization grid so far: uint8 (C, H, W, 3), tiles ``first`` ..
    ``first + K`` replaced by ``images`` (K, C, H, W) (shown as :func:`images_payload`
    does); tiles not computed yet are grey."""
    height, width = images.shape[-2:]
    shape = (count, height, width, 3)
    tiles = previous if previous is not None else np.full(shape, 128, np.uint8)
    tiles[first : first + images.shape[0]] = display_pixels(images).numpy()
    return {"layer": layer, "images": ndarray_payload(tiles, "uint8")}, tiles
