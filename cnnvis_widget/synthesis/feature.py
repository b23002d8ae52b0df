"""Activation maximization: ``visualize_feature`` (a neuron, a channel, a direction, a whole
layer in batches) and ``visualize_class`` (Lucid, Simonyan et al. 2014, Yosinski et al. 2015,
and class-specific generation: Yosinski et al.'s regularized ascent, see visualize_class)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal, TypeVar

import torch

from ..checks import check_callback, check_number
from ..model_view import engine_call
from . import objectives as obj
from .erhan import data_norm, norm_constrained_ascent, restart_stability
from .network import ModelLike, SynthesisNet
from .regularizers import YOSINSKI_PRESETS, YosinskiPreset, yosinski_step
from .render import (
    NO_PENALTIES,
    STANDARD_TRANSFORM,
    Penalties,
    Precision,
    check_steps,
    image_size,
    render,
    seeded_generator,
)
from .result import OnStep, SynthesisResult, offset_frames, run_steps, stack_trace
from .transforms import Robustness

AUTO_BATCH = {"cpu": 4, "cuda": 128}
"""Channels optimized together when ``batch_size=0`` (a whole layer runs in chunks). On a CPU
larger batches do not pay: activations of 16 images at 224 px overflow the caches and the
memory-bound layers (batch norm, depthwise convolutions) slow down per image
(benchmarks/feature_vis_speed.py)."""

FeatureKind = Literal["channel", "neuron", "direction"]
FeatureMethod = Literal["lucid", "erhan"]


@engine_call
def visualize_feature(
    model: ModelLike,
    layer: str,
    unit: int | Sequence[int] | tuple[int, int, int] | torch.Tensor | None = None,
    *,
    kind: FeatureKind = "channel",
    method: FeatureMethod = "lucid",
    restarts: int = 1,
    rho: float | None = None,
    diversity: float = 0.0,
    batch_size: int = 0,
    size: int | tuple[int, int] | None = None,
    steps: int = 512,
    lr: float = 0.05,
    param: Literal["fourier", "pixel"] = "fourier",
    decorrelate: bool = True,
    transform: Robustness | None = STANDARD_TRANSFORM,
    penalties: Penalties = NO_PENALTIES,
    seed: int = 0,
    precision: Precision = "float32",
    on_step: OnStep | None = None,
    resume: SynthesisResult | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """Images that excite ``layer`` (Lucid defaults: Fourier + decorrelated colour, robustness
    transforms, Adam lr 0.05, 512 steps, 128 px).

    ``unit``: a channel index, a list of them (image i maximizes ``unit[i]``; the whole list
    is optimized in batches of ``batch_size``, 0 = 4 on CPU / 128 on a GPU), or ``None`` for
    every channel of the layer. ``kind="neuron"`` takes ``(channel, row, col)`` or a channel
    (then the centre position); ``kind="direction"`` a vector (C,) over the channels.
    ``diversity`` > 0 adds Lucid's Gram-matrix diversity term across the batch (use with one
    unit repeated: ``unit=[5] * 4``). Returns images (K, C, H, W) (C the model's input
    channels; ``size`` a side or (H, W), by default 128 px, or the model's input size when it
    takes only one) and the objective per
    step (steps, K). ``precision="bfloat16"``: see :func:`render`.

    ``method="erhan"`` (Erhan et al. 2009): plain gradient ascent on the model input under
    the constraint ||x||_2 = ``rho`` (default: the norm of a standardized input,
    sqrt(C H W)), no other prior; ``lr`` is then the step as a fraction of ``rho``
    (decayed linearly), and ``images`` are the optima contrast-stretched for display
    (``info["inputs"]`` holds them in model-input units). It takes no ``param``,
    ``decorrelate``, ``transform`` (``None`` is accepted), ``penalties``, ``diversity``,
    ``precision`` or ``resume``.

    ``restarts`` > 1 optimizes each unit from that many random starts (images unit-major:
    unit i's restarts are rows i R .. i R + R - 1) and reports ``info["stability"]``, per
    unit the mean pairwise correlation of its optima (1 = the same image every time: a
    stable optimum, Erhan et al.'s test; finished runs only).
    """
    net = SynthesisNet.of(model, mean, std)
    net.check_layers([layer])
    check_number("lr", lr, low=0, low_open=True)
    check_callback("on_step", on_step)
    _check_method(
        method,
        restarts,
        rho,
        diversity,
        resume,
        param,
        decorrelate,
        transform,
        penalties,
        precision,
    )
    side = image_size(net, size, 128)
    options = RenderOptions(
        side, steps, lr, param, decorrelate, transform, penalties, precision, mean, std
    )

    def optimize(
        goal: obj.Objective, count: int, seed: int, listener: OnStep | None
    ) -> SynthesisResult:
        if method == "erhan":
            radius = data_norm(side, net.channels) if rho is None else rho
            return norm_constrained_ascent(
                net, goal, count, side, steps, lr, radius, seed, listener
            )
        return _render(model, goal, count, options, seed, listener, resume, diversity, layer)

    if kind == "direction":
        if not isinstance(unit, torch.Tensor):
            raise TypeError("kind='direction' takes unit=<tensor (C,)>, a vector over channels.")
        return _with_stability(
            optimize(obj.direction(layer, unit), restarts, seed, on_step), restarts
        )
    position: tuple[int, int] | None = None
    if kind == "neuron" and isinstance(unit, tuple) and len(unit) == 3:
        channel, row, col = unit
        unit, position = channel, (row, col)
    elif (
        kind == "neuron"
        and isinstance(unit, Sequence)
        and any(isinstance(u, (tuple, list)) for u in unit)
    ):
        raise ValueError(
            "kind='neuron' takes one (channel, row, col) triple, or channel indices (each at "
            "the centre); for neurons at several positions call once per position."
        )
    elif kind not in ("channel", "neuron"):
        raise ValueError(f"kind must be 'channel', 'neuron' or 'direction'; got {kind!r}.")
    units = [u for u in _units(net, layer, unit, side) for _ in range(restarts)]
    chunk = _batch_size(batch_size, net.device)
    if len(units) > chunk and resume is not None:
        raise ValueError("resume= works on one batch; pass at most batch_size units.")
    results = []
    for first in range(0, len(units), chunk):
        part = units[first : first + chunk]
        goal = obj.neuron(layer, part, position) if kind == "neuron" else obj.channel(layer, part)
        listener = offset_frames(
            on_step, (first // chunk) * steps, math.ceil(len(units) / chunk) * steps, first
        )
        result = optimize(goal, len(part), seed + first, listener)
        results.append(result)
        if result.stopped:
            break
    return _with_stability(_concatenated(results, units), restarts)


def _check_method(
    method: str,
    restarts: int,
    rho: float | None,
    diversity: float,
    resume: SynthesisResult | None,
    param: str,
    decorrelate: bool,
    transform: Robustness | None,
    penalties: Penalties,
    precision: Precision,
) -> None:
    if method not in ("lucid", "erhan"):
        raise ValueError(f"method must be 'lucid' or 'erhan'; got {method!r}.")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1; got {restarts!r}.")
    if restarts > 1 and resume is not None:
        raise ValueError("resume= continues one run; pass restarts=1 with it.")
    if method == "lucid":
        if rho is not None:
            raise ValueError("rho= is the input norm of method='erhan'; pass method='erhan'.")
        return
    unused = {
        "diversity": diversity != 0.0,
        "resume": resume is not None,
        "param": param != "fourier",
        "decorrelate": decorrelate is not True,
        "transform": transform is not STANDARD_TRANSFORM and transform is not None,
        "penalties": penalties is not NO_PENALTIES,
        "precision": precision != "float32",
    }
    given = [name for name, used in unused.items() if used]
    if given:
        raise ValueError(
            f"method='erhan' is plain ascent on the norm-constrained input; it takes no "
            f"{', '.join(given)}. Drop them, or use method='lucid'."
        )


def _with_stability(result: SynthesisResult, restarts: int) -> SynthesisResult:
    """``info["stability"]`` of a finished run with restarts (a stopped run's optima are not
    optima yet: none is reported)."""
    if restarts > 1 and not result.stopped:
        result.info["restarts"] = restarts
        result.info["stability"] = restart_stability(result.images, restarts)
    return result


@dataclass(frozen=True)
class RenderOptions:
    """The :func:`render` settings shared by every batch of one ``visualize_feature`` call."""

    size: tuple[int, int]
    steps: int
    lr: float
    param: Literal["fourier", "pixel"]
    decorrelate: bool
    transform: Robustness | None
    penalties: Penalties
    precision: Precision
    mean: Sequence[float] | None
    std: Sequence[float] | None


def _render(
    model: ModelLike,
    goal: obj.Objective,
    count: int,
    options: RenderOptions,
    seed: int,
    on_step: OnStep | None,
    resume: SynthesisResult | None,
    diversity: float,
    layer: str,
) -> SynthesisResult:
    if diversity:
        goal = goal + diversity * obj.diversity(layer)
    return render(
        model,
        goal,
        count=count,
        seed=seed,
        on_step=on_step,
        resume=resume,
        **{f.name: getattr(options, f.name) for f in fields(options)},
    )


def _units(net: SynthesisNet, layer: str, unit: object, size: tuple[int, int]) -> list[int]:
    if unit is None:
        with net.session(), torch.no_grad():
            probe = torch.full((1, net.channels, *size), 0.5, device=net.device)
            return list(range(net.features(probe, [layer])[layer].shape[1]))
    values = unit if isinstance(unit, (Sequence, torch.Tensor)) else [unit]
    if isinstance(unit, str) or not all(
        isinstance(u, (int, torch.Tensor)) and not isinstance(u, bool) for u in values
    ):
        raise TypeError(f"unit must be a channel index (int) or a list of them; got {unit!r}.")
    units = [int(u) for u in torch.as_tensor(values).flatten().tolist()]
    if not units:
        raise ValueError("unit is an empty list; give at least one channel index.")
    return units


def _batch_size(batch_size: int, device: torch.device) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0 (0 = automatic); got {batch_size!r}.")
    return batch_size or AUTO_BATCH.get(device.type, AUTO_BATCH["cpu"])


def _concatenated(results: list[SynthesisResult], units: list[int]) -> SynthesisResult:
    if len(results) == 1:
        results[0].info["units"] = units[: results[0].images.shape[0]]
        return results[0]
    # A batch stopped early has fewer rows: NaN where it did not run, every finished batch
    # keeps its whole trace.
    steps = max(r.trace.shape[0] for r in results)
    images = torch.cat([r.images for r in results])
    trace = torch.cat(
        [
            torch.nn.functional.pad(r.trace, (0, 0, 0, steps - r.trace.shape[0]), value=math.nan)
            for r in results
        ],
        dim=1,
    )
    info = {**results[0].info, "units": units[: images.shape[0]]}
    if "inputs" in info:  # method="erhan": the optima of every batch
        info["inputs"] = torch.cat([r.info["inputs"] for r in results])
    return SynthesisResult(images, trace, results[0].trace_name, results[-1].stopped, info)


ClassMethod = Literal["generation", "yosinski", "simonyan", "lucid"]


@engine_call
def visualize_class(
    model: ModelLike,
    target: int | Sequence[int],
    *,
    method: ClassMethod = "generation",
    steps: int | None = None,
    lr: float | None = None,
    preset: int = 3,
    l2: float = 1e-4,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    on_step: OnStep | None = None,
    resume: SynthesisResult | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """An image per class index in ``target`` that maximizes its pre-softmax logit.

    ``method``:

    - ``"generation"`` (default): Yosinski's regularized ascent with 150 steps,
      lr 6 in model-input (normalized) units, blur sigma 1 every 4 steps, decay 1e-4, clipped
      to the valid range, kept in float (no per-step quantization).
    - ``"yosinski"``: a row of Yosinski et al. 2015 Table 1 (``preset`` 1-4, 3 by default),
      learning rates in the paper's [0, 255] units, start N(0, 10^2) around the mean.
    - ``"simonyan"``: Simonyan et al. 2014, argmax y_c(I) - l2 * ||I||^2 over the
      zero-centred input, from the zero (mean) image, plain gradient ascent (lr 1, 200 steps),
      clipped to the valid range. ``l2`` is not given in the paper; 1e-4 keeps the image in range.
    - ``"lucid"``: Fourier parameterization + robustness transforms + Adam (512 steps, 128 px).

    ``steps``, ``lr`` and ``size`` default to the method's (``size``: 224 px, 128 for lucid;
    the model's input size when it takes only one). Images are (K, C, H, W), C the model's
    input channels.
    ``trace`` is the target logit per step (steps, K).
    """
    net = SynthesisNet.of(model, mean, std)
    targets = obj.class_indices(target)
    if lr is not None:
        check_number("lr", lr, low=0, low_open=True)
    check_number("l2", l2, low=0)
    check_callback("on_step", on_step)
    if steps is not None:
        check_steps(steps)
    side = image_size(net, size, 128 if method == "lucid" else 224)
    if method == "lucid":
        return render(
            model,
            obj.class_logit(targets),
            count=len(targets),
            size=side,
            steps=steps if steps is not None else 512,
            lr=lr if lr is not None else 0.05,
            seed=seed,
            on_step=on_step,
            resume=resume,
            mean=mean,
            std=std,
        )
    if method == "simonyan":
        rule = _PixelAscent(_or(steps, 200), _or(lr, 1.0), None, l2, "normalized")
    elif method == "generation":
        rule = _PixelAscent(
            _or(steps, 150), _or(lr, 6.0), YosinskiPreset(1e-4, 4, 1.0, 0, 0, 150, 6.0), 0.0,
            "normalized",
        )  # fmt: skip
    elif method == "yosinski":
        if preset not in YOSINSKI_PRESETS:
            raise ValueError(f"preset must be one of {sorted(YOSINSKI_PRESETS)}; got {preset!r}.")
        row = YOSINSKI_PRESETS[preset]
        rule = _PixelAscent(_or(steps, row.steps), _or(lr, row.lr), row, 0.0, "caffe")
    else:
        raise ValueError(
            f"method must be 'generation', 'yosinski', 'simonyan' or 'lucid'; got {method!r}."
        )
    if resume is not None:
        raise ValueError("resume= is supported for method='lucid' only.")
    return rule.run(net, targets, side, seed, on_step)


Number = TypeVar("Number", int, float)


def _or(value: Number | None, default: Number) -> Number:
    return default if value is None else value


class _PixelAscent:
    """Gradient ascent on the zero-centred model input of the target logits, with Yosinski's
    per-step operations (``preset``) or Simonyan's L2 penalty, clipped to the valid range.

    ``units``: "normalized" applies ``lr`` to the model-input gradient; "caffe" reads it in
    the [0, 255] mean-subtracted units of the papers (the gradient there is the model-input
    gradient / (255 std), the step back in input units another / (255 std))."""

    def __init__(
        self,
        steps: int,
        lr: float,
        preset: YosinskiPreset | None,
        l2: float,
        units: Literal["normalized", "caffe"],
    ) -> None:
        check_steps(steps)
        self.steps, self.lr, self.preset, self.l2, self.units = steps, lr, preset, l2, units

    def run(
        self,
        net: SynthesisNet,
        targets: list[int],
        size: tuple[int, int],
        seed: int,
        on_step: OnStep | None,
    ) -> SynthesisResult:
        count = len(targets)
        device = net.device
        generator = seeded_generator(seed, device)
        std = torch.tensor(net.std, device=device).view(1, -1, 1, 1)
        mean = torch.tensor(net.mean, device=device).view(1, -1, 1, 1)
        shape = (count, net.channels, *size)
        low, high = (0 - mean) / std, (1 - mean) / std
        if self.preset is not None and self.units == "caffe":
            noise = torch.randn(shape, generator=generator, device=device)
            centred = (10.0 / 255.0) * noise / std  # N(0, 10^2) in [0, 255] units
        else:
            centred = torch.zeros(shape, device=device)
        scale = 1.0 / (255.0 * std) ** 2 if self.units == "caffe" else torch.ones_like(std)
        goal = obj.class_logit(targets)

        def step(index: int) -> torch.Tensor:
            point = centred.clamp(low, high).requires_grad_(True)
            values = goal(net.features(net.denormalize(point), sorted(goal.layers)))
            objective = values.sum() - self.l2 * point.pow(2).sum()
            (gradient,) = torch.autograd.grad(objective, point)
            with torch.no_grad():
                lr = self.lr
                if self.preset is not None and self.preset.progress:
                    norm2 = (gradient * scale.sqrt()).pow(2).sum()
                    lr = min(self.lr, self.preset.desired / max(float(norm2), 1e-20))
                centred.copy_(point.detach() + lr * scale * gradient)
                if self.preset is not None:
                    yosinski_step(centred, gradient, self.preset, index + 1)
                centred.clamp_(low, high)
            return values

        with net.session():
            rows, stopped = run_steps(
                self.steps, step, lambda: net.denormalize(centred), on_step, goal.name
            )
        images = net.denormalize(centred).clamp(0, 1)
        return SynthesisResult(
            images, stack_trace(rows, count, device), goal.name, stopped, {"targets": targets}
        )
