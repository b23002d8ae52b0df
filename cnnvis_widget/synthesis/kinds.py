"""The synthesis kinds the widget's panel offers, in a registry shaped like ``METHODS``.

Each kind is one decorated function: ``@synthesis_kind(...)`` carries its parameters (which
also build the panel's form), what its target is (``needs``), whether a stopped run resumes,
how its runs are labelled and what extra it sends; the function runs it. The panel, the
form and :func:`run_synthesis` read only this registry, so a new kind is one definition here
(docs/architecture.md, "Adding a synthesis kind").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..checks import check_param
from ..methods.registry import Param
from ..models import ModelBundle
from ..protocol import (
    AdversarialView,
    Needs,
    SynthesisKindRow,
    SynthesisPayload,
    UnitRef,
    images_payload,
    param_row,
    synthesis_payload,
)
from .attacks import adversarial, fooling_image
from .dream import deep_dream
from .feature import visualize_class, visualize_feature
from .network import SynthesisNet
from .preimage import caricature, invert
from .result import SynthesisFrame, SynthesisResult

OnFrame = Callable[[SynthesisFrame], bool | None]


@dataclass(frozen=True)
class SynthesisTarget:
    """Where the panel points: the selected layer (and its channel count, ``None`` when it
    has no channel maps), the selected channel (-1: none) and class, and the model input
    (1, C, H, W)."""

    layer: str
    channel: int
    target: int
    x: torch.Tensor
    layer_channels: int | None = None


@dataclass(frozen=True)
class KindCall:
    """One run of a kind: ``params`` checked and completed with defaults."""

    bundle: ModelBundle
    params: dict[str, Any]
    where: SynthesisTarget
    on_step: OnFrame | None
    resume: SynthesisResult | None


Run = Callable[[KindCall], SynthesisResult]
Extra = Callable[[SynthesisResult, ModelBundle], AdversarialView]


@dataclass(frozen=True)
class SynthesisKind:
    """One entry of the panel's picker. ``needs``: its target is a channel of the selected
    layer, the selected class, the current image at the selected layer, or the whole layer
    (``output`` "grid": every channel into ``feature_grid`` instead of ``synthesis``)."""

    name: str
    title: str
    needs: Needs
    summary: str
    params: tuple[Param, ...]
    run: Run
    resumable: bool = False
    output: Literal["images", "grid"] = "images"
    extra: Extra | None = None
    """Extra view of a final result (the adversarial example's before / after)."""
    plain_label: bool = False
    """Label a run with the title alone (no target)."""

    def row(self) -> SynthesisKindRow:
        return {
            "name": self.name, "title": self.title, "needs": self.needs,
            "summary": self.summary, "resumable": self.resumable,
            "params": [param_row(p) for p in self.params],
        }  # fmt: skip

    def label(self, where: SynthesisTarget, bundle: ModelBundle) -> str:
        """What a run is called in the panel (and in its pins)."""
        if self.plain_label:
            return self.title
        if self.needs == "channel":
            return f"{self.title}: {where.layer} channel {where.channel}"
        if self.needs == "class":
            return f"{self.title}: {bundle.label(where.target)}"
        return f"{self.title}: {where.layer}"


KINDS: dict[str, SynthesisKind] = {}


def synthesis_kind(
    name: str,
    title: str,
    needs: Needs,
    summary: str,
    params: tuple[Param, ...],
    **options: Any,
) -> Callable[[Run], Run]:
    """Register the decorated ``run(call) -> SynthesisResult`` as a kind (see
    :class:`SynthesisKind` for ``options``)."""

    def register(run: Run) -> Run:
        if name in KINDS:
            raise ValueError(f"synthesis kind {name!r} is registered twice.")
        KINDS[name] = SynthesisKind(name, title, needs, summary, params, run, **options)
        return run

    return register


def steps_param(default: int, high: int = 4096) -> Param:
    return Param("steps", default, "int", "optimization steps", 1, high)


def size_param(default: int) -> Param:
    return Param("size", default, "int", "image side in pixels", 8, 512)


SEED = Param("seed", 0, "int", "random seed (Reseed draws a new one)", 0, 2**31 - 1)
STRENGTH = Param("strength", 1.0, "float", "C: larger = more faithful, less natural", 0.01, 1e4)


# --- the kinds, in the picker's order ------------------------------------------------------


@synthesis_kind(
    "feature", "Channel visualization", "channel",
    "Activation maximization of the picked channel (Lucid: Fourier parameterization, "
    "decorrelated colour, robustness transforms, Adam).",
    (steps_param(256), size_param(128), SEED,
     Param("precision", "float32", "choice", "network arithmetic",
           choices=("float32", "bfloat16"))),
    resumable=True,
)  # fmt: skip
def _feature(call: KindCall) -> SynthesisResult:
    p, where = call.params, call.where
    return visualize_feature(
        call.bundle, where.layer, [where.channel], steps=p["steps"], size=p["size"],
        seed=p["seed"], precision=p["precision"], on_step=call.on_step, resume=call.resume,
    )  # fmt: skip


@synthesis_kind(
    "erhan", "Channel, norm-constrained (Erhan)", "channel",
    "Erhan et al. 2009: plain gradient ascent of the picked channel on inputs of fixed "
    "norm, from several random starts; the label says how much the restarts agree.",
    (steps_param(200), size_param(64),
     Param("restarts", 4, "int", "random starts; similar optima = a stable unit", 1, 16),
     SEED),
)  # fmt: skip
def _erhan(call: KindCall) -> SynthesisResult:
    p, where = call.params, call.where
    return visualize_feature(
        call.bundle, where.layer, [where.channel], method="erhan", restarts=p["restarts"],
        steps=p["steps"], size=p["size"], seed=p["seed"], on_step=call.on_step,
    )  # fmt: skip


@synthesis_kind(
    "layer", "Whole layer (every channel)", "layer",
    "Channel visualization of every channel of the selected layer, in batches; the tiles "
    "fill the feature-visualization grid beside the filter grid (also: Visualize layer).",
    (steps_param(64), size_param(64), SEED),
    output="grid",
)  # fmt: skip
def _layer(call: KindCall) -> SynthesisResult:
    p = call.params
    return visualize_feature(
        call.bundle, call.where.layer, None, steps=p["steps"], size=p["size"], seed=p["seed"],
        on_step=call.on_step,
    )  # fmt: skip


@synthesis_kind(
    "class", "Class model", "class",
    "An image that maximizes the selected class's logit.",
    (Param("method", "generation", "choice", "generation: Yosinski-regularized ascent; "
           "simonyan; yosinski (Table 1 row 3); lucid",
           choices=("generation", "simonyan", "yosinski", "lucid")),
     steps_param(150), SEED),
)  # fmt: skip
def _class(call: KindCall) -> SynthesisResult:
    p = call.params
    return visualize_class(
        call.bundle, call.where.target, method=p["method"], steps=p["steps"], seed=p["seed"],
        on_step=call.on_step,
    )  # fmt: skip


@synthesis_kind(
    "invert", "Natural pre-image", "image",
    "Mahendran & Vedaldi: an image whose representation at the selected layer matches "
    "the current image's, under the alpha-norm + TV prior.",
    (STRENGTH, steps_param(300), SEED),
)  # fmt: skip
def _invert(call: KindCall) -> SynthesisResult:
    p, where = call.params, call.where
    return invert(
        call.bundle, where.x, where.layer, strength=p["strength"],
        steps=(p["steps"], max(1, p["steps"] // 6)), seed=p["seed"], on_step=call.on_step,
    )  # fmt: skip


@synthesis_kind(
    "caricature", "Caricature", "image",
    "Amplify what the selected layer sees in the current image.",
    (Param("strength", 1.0, "float", "C", 0.01, 1e4), steps_param(100), SEED),
)  # fmt: skip
def _caricature(call: KindCall) -> SynthesisResult:
    p, where = call.params, call.where
    return caricature(
        call.bundle, where.x, where.layer, strength=p["strength"], steps=p["steps"],
        seed=p["seed"], on_step=call.on_step,
    )  # fmt: skip


@synthesis_kind(
    "dream", "Deep dream", "image",
    "Amplify the selected layer's activations, octave by octave.",
    (Param("octaves", 4, "int", "scales, coarse to fine", 1, 8), steps_param(10, 200), SEED),
)  # fmt: skip
def _dream(call: KindCall) -> SynthesisResult:
    p, where = call.params, call.where
    return deep_dream(
        call.bundle, where.x, where.layer, octaves=p["octaves"], steps=p["steps"],
        seed=p["seed"], on_step=call.on_step,
    )  # fmt: skip


@synthesis_kind(
    "fooling", "Fooling image", "class",
    "An unrecognizable image the model gives the selected class with high confidence.",
    (Param("confidence", 0.99, "float", "stop at this probability", 0.5, 0.9999),
     steps_param(500), SEED),
)  # fmt: skip
def _fooling(call: KindCall) -> SynthesisResult:
    p = call.params
    return fooling_image(
        call.bundle, call.where.target, confidence=p["confidence"], steps=p["steps"],
        seed=p["seed"], on_step=call.on_step,
    )  # fmt: skip


def _adversarial_view(result: SynthesisResult, bundle: ModelBundle) -> AdversarialView:
    """The original, the perturbation magnified to 0.5 + delta / (2 epsilon), both
    predictions, epsilon in grey levels."""
    info = result.info
    magnified = (0.5 + info["perturbation"] / (2 * max(info["epsilon"], 1e-12))).clamp(0, 1)

    def prediction(index: int, prob: float) -> Any:
        return {"index": index, "label": bundle.label(index), "prob": prob}

    return {
        "original": images_payload(info["original"]),
        "perturbation": images_payload(magnified),
        "before": prediction(*info["before"][0]),
        "after": prediction(*info["after"][0]),
        "epsilon": round(info["epsilon"] * 255, 4),
    }


@synthesis_kind(
    "adversarial", "Adversarial example", "image",
    "FGSM or PGD within epsilon grey levels of the current image.",
    (Param("attack", "fgsm", "choice", "fgsm: one step; pgd: projected steps",
           choices=("fgsm", "pgd")),
     Param("epsilon", 2.0, "float", "in grey levels (1/255)", 0.25, 64),
     Param("target", -1, "int", "class index to reach; -1 = any class but the current "
           "prediction", -1, 100000),
     Param("steps", 10, "int", "PGD steps (FGSM takes one step: not used)", 1, 1000),
     Param("seed", 0, "int", "PGD's random start (FGSM: not used)", 0, 2**31 - 1)),
    extra=_adversarial_view, plain_label=True,
)  # fmt: skip
def _adversarial(call: KindCall) -> SynthesisResult:
    p = call.params
    target = None if p["target"] < 0 else p["target"]
    return adversarial(
        call.bundle, call.where.x, method=p["attack"], epsilon=p["epsilon"] / 255,
        target=target, steps=p["steps"], seed=p["seed"], on_step=call.on_step,
    )  # fmt: skip


# --- using the registry --------------------------------------------------------------------


def model_size(bundle: ModelBundle) -> tuple[int, int] | None:
    """The (H, W) the bundle's model takes when it takes only one size (a LeNet's 28 x 28, a
    ViT's 224 x 224), else ``None``."""
    return SynthesisNet.of(bundle).input_size


def kind_rows(bundle: ModelBundle | None = None) -> list[SynthesisKindRow]:
    """The picker's rows; with ``bundle``, an image ``size`` defaults to its model's one input
    size when it takes only one (what :func:`run_synthesis` then uses when no size is set)."""
    fixed = model_size(bundle) if bundle is not None else None
    rows = [kind.row() for kind in KINDS.values()]
    if fixed is not None:
        for row in rows:
            for param in row["params"]:
                if param["name"] == "size" and param["low"] is not None:
                    high = param["high"] if param["high"] is not None else fixed[0]
                    param["default"] = int(min(max(fixed[0], param["low"]), high))
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
            check_param(kind, param, params[param.name])
    return {**{p.name: p.default for p in spec.params}, **params}


def check_target(kind: str, where: SynthesisTarget) -> None:
    """Refuse a kind whose target is missing (a channel kind before any tile was picked, a
    whole layer without channel maps)."""
    needs = KINDS[kind].needs
    if needs == "channel" and where.channel < 0:
        raise ValueError("pick a channel first: click a tile of the filter grid.")
    if needs == "layer" and where.layer_channels is None:
        raise ValueError(f"{where.layer} has no channel maps; pick a convolutional layer.")


def run_synthesis(
    bundle: ModelBundle,
    kind: str,
    params: dict[str, Any],
    where: SynthesisTarget,
    on_step: OnFrame | None = None,
    resume: SynthesisResult | None = None,
) -> SynthesisResult:
    """Run ``kind`` with checked ``params`` on ``where``; frames go to ``on_step``. Without
    a ``size`` in ``params``, a model that takes only one input size gets images of it."""
    checked = check_synthesis(kind, params)
    if "size" in checked and "size" not in params:
        checked["size"] = model_size(bundle) or checked["size"]
    check_target(kind, where)
    return KINDS[kind].run(KindCall(bundle, checked, where, on_step, resume))


def unit_of(kind: str, where: SynthesisTarget) -> UnitRef | None:
    """The channel a channel kind visualizes; None for other kinds."""
    if KINDS[kind].needs != "channel" or where.channel < 0:
        return None
    return {"layer": where.layer, "channel": int(where.channel)}


def frame_payload(
    kind: str, label: str, frame: SynthesisFrame, trace: list[torch.Tensor],
    unit: UnitRef | None = None,
) -> SynthesisPayload:  # fmt: skip
    """A streamed frame: the current images and the objective curve so far (``trace``: one 0-d
    tensor per step, the mean over images)."""
    curve = torch.stack(trace).cpu() if trace else torch.zeros(0)
    return synthesis_payload(
        kind, label, frame.images, curve, frame.trace_name, frame.step, frame.total,
        final=False, unit=unit,
    )  # fmt: skip


def result_payload(
    kind: str, label: str, result: SynthesisResult, bundle: ModelBundle,
    unit: UnitRef | None = None,
) -> SynthesisPayload:  # fmt: skip
    """The final (or stopped) result, with the kind's extra view when it has one."""
    trace = result.trace.float().mean(dim=1).cpu().numpy() if result.steps else np.zeros(0)
    stability = result.info.get("stability")
    if stability and not math.isnan(stability[0]):
        label = f"{label} · restarts agree: correlation {stability[0]:.2f}"
    extra = KINDS[kind].extra
    return synthesis_payload(
        kind, label, result.images, trace.astype(np.float32), result.trace_name,
        result.steps, result.steps, final=True, stopped=result.stopped,
        adversarial=extra(result, bundle) if extra is not None else None, unit=unit,
    )  # fmt: skip
