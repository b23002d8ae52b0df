"""Natural pre-images (Mahendran & Vedaldi, IJCV 2016): ``invert`` a
layer's representation of an image, ``caricature`` it.

The optimization runs in the papers' units, the mean-subtracted [0, 255] colour space (a
Caffe image), so their constants keep their meaning: B = 80 (typical pixel norm), B+ = 160
(the hard bound), V = B / 6.5 (typical gradient norm), alpha = 6, beta = 2. Energy::

    E(x) = C / Z * loss(Phi(x), Phi0) + mean_p (|x_p| / B)^alpha + mean_p (|grad x_p| / V)^beta

with |x_p| the RGB norm of pixel p. Updates are the IJCV code's RMSprop-like step with
momentum 0.9 and learning rate H*W*0.05*B^2/alpha, random jitter of a slightly larger canvas
(stride / 4 px), and projection of every pixel onto |x_p| <= B+.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..checks import check_callback, check_input, check_int, check_number
from ..model_view import engine_call
from .network import ModelLike, SynthesisNet
from .regularizers import alpha_norm, total_variation
from .render import check_steps, seeded_generator
from .result import OnStep, SynthesisResult, offset_frames, run_steps, stack_trace


@dataclass(frozen=True)
class PreimagePrior:
    """The regularizer of the energy, in [0, 255] mean-subtracted units."""

    alpha: float = 6.0
    beta: float = 2.0
    bound: float = 80.0  # B
    hard_bound: float = 160.0  # B+

    def __call__(self, centred: torch.Tensor) -> torch.Tensor:
        """(K, C, H, W) -> (K,)"""
        return alpha_norm(centred, self.alpha, self.bound) + total_variation(
            centred, self.beta, self.bound / 6.5
        )

    def project(self, centred: torch.Tensor) -> None:
        """In place: shrink every pixel whose RGB norm exceeds B+ onto the bound."""
        norms = centred.norm(dim=1, keepdim=True)
        centred.mul_(torch.clamp(self.hard_bound / norms.clamp_min(1e-12), max=1.0))


@engine_call
def invert(
    model: ModelLike,
    x: torch.Tensor,
    layer: str,
    *,
    strength: float = 1.0,
    steps: tuple[int, int] = (300, 50),
    prior: PreimagePrior = PreimagePrior(),
    jitter: int | None = None,
    seed: int = 0,
    on_step: OnStep | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """A natural pre-image of ``x``'s representation at ``layer``.

    ``x``: model input (N, C, H, W) (normalized, as ``bundle.preprocess`` gives). Minimizes
    ``strength`` (C: 1, 20, 100 or 300 in the paper; larger = more faithful, less natural) *
    |Phi(x) - Phi0|^2 / |Phi0|^2 plus the prior, from noise, in two stages (``steps``: 300 at
    the full learning rate with jitter, then 50 at a tenth without). ``jitter`` defaults to a
    quarter of the layer's stride. ``trace`` is the relative feature error
    |Phi(x) - Phi0|^2 / |Phi0|^2 per step (steps, N); ``info["feature_error"]`` its last value.
    """
    net = SynthesisNet.of(model, mean, std)
    net.check_layers([layer])
    _check_preimage(x, strength, jitter, on_step)
    stage_steps = _check_stages(steps)
    with net.session(), torch.no_grad():
        target = net.features(net.unit_images(x), [layer])[layer].detach()
    norm2 = target.flatten(1).pow(2).sum(dim=1).clamp_min(1e-12)

    def loss(features: torch.Tensor) -> torch.Tensor:
        return (features - target).flatten(1).pow(2).sum(dim=1) / norm2

    size = x.shape[-2:]
    generator = seeded_generator(seed, net.device)
    shape = (x.shape[0], net.channels, *size)
    noise = torch.rand(shape, generator=generator, device=net.device) * 2 - 1
    # Uniform noise whose 95th percentile of |value| sits at B / sqrt(3) (the IJCV code).
    start = noise * (prior.bound / 3**0.5) / 0.95
    shift = jitter if jitter is not None else max(round(_stride(net, layer, size) / 4), 1)
    result = _optimize(
        net,
        layer,
        start,
        loss,
        loss,
        strength,
        stage_steps,
        shift,
        prior,
        generator,
        on_step,
        "relative feature error",
    )
    result.info["feature_error"] = result.info.pop("final")
    return result


@engine_call
def caricature(
    model: ModelLike,
    x: torch.Tensor,
    layer: str,
    *,
    strength: float = 1.0,
    steps: int = 300,
    prior: PreimagePrior = PreimagePrior(),
    jitter: int | None = None,
    seed: int = 0,
    on_step: OnStep | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """Amplify what ``layer`` sees in ``x`` (Mahendran & Vedaldi's caricatures).

    Starts from ``x`` and maximizes <Phi(x'), Phi0> with Phi0 = max(Phi(x), 0) /
    |max(Phi(x), 0)|^2 under the pre-image prior, one stage of ``steps``. ``trace`` is
    <Phi(x'), Phi0> per step (1 for the original image where Phi >= 0)."""
    net = SynthesisNet.of(model, mean, std)
    net.check_layers([layer])
    _check_preimage(x, strength, jitter, on_step)
    check_steps(steps)
    unit = net.unit_images(x)
    with net.session(), torch.no_grad():
        positive = net.features(unit, [layer])[layer].detach().clamp_min(0)
    guide = positive / positive.flatten(1).pow(2).sum(dim=1).clamp_min(1e-12).view(
        -1, *[1] * (positive.ndim - 1)
    )

    def match(features: torch.Tensor) -> torch.Tensor:
        return (features * guide).flatten(1).sum(dim=1)

    start = (unit - torch.tensor(net.mean, device=net.device).view(1, -1, 1, 1)) * 255
    generator = seeded_generator(seed, net.device)
    size = x.shape[-2:]
    shift = jitter if jitter is not None else max(round(_stride(net, layer, size) / 4), 1)
    result = _optimize(
        net,
        layer,
        start,
        lambda f: -match(f),
        match,
        strength,
        (steps,),
        shift,
        prior,
        generator,
        on_step,
        "<Phi(x), Phi0>",
    )
    result.info["match"] = result.info.pop("final")
    result.info["original_match"] = match(positive).tolist()
    return result


def _optimize(
    net: SynthesisNet,
    layer: str,
    start: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
    traced: Callable[[torch.Tensor], torch.Tensor],
    strength: float,
    stage_steps: tuple[int, ...],
    shift: int,
    prior: PreimagePrior,
    generator: torch.Generator,
    on_step: OnStep | None,
    trace_name: str,
) -> SynthesisResult:
    """Minimize strength * loss(Phi) + prior over Caffe-unit images, stage by stage (the
    second and later stages at a tenth of the learning rate, without jitter)."""
    count, _, height, width = start.shape
    mean = torch.tensor(net.mean, device=net.device).view(1, -1, 1, 1)
    base_lr = height * width * 0.05 * prior.bound**2 / prior.alpha
    current = start.clone()
    rows: list[torch.Tensor] = []
    total = sum(stage_steps)
    stopped = False
    with net.session():
        for stage, stage_length in enumerate(stage_steps):
            lr = base_lr if stage == 0 else base_lr / 10
            pad = shift - 1 if stage == 0 else 0
            canvas = torch.nn.functional.pad(current, (0, pad, 0, pad), mode="replicate")
            momentum = torch.zeros_like(canvas)
            square = torch.zeros_like(canvas)
            done_before = len(rows)

            def step(
                _index: int, canvas=canvas, momentum=momentum, square=square, lr=lr, pad=pad
            ) -> torch.Tensor:
                canvas.requires_grad_(True)
                dy, dx = (
                    int(v)
                    for v in torch.randint(
                        pad + 1, (2,), generator=generator, device=generator.device
                    )
                )
                crop = canvas[:, :, dy : dy + height, dx : dx + width]
                features = net.features(crop / 255 + mean, [layer])[layer]
                energy = strength * loss(features) + prior(crop)
                (gradient,) = torch.autograd.grad(energy.sum(), canvas)
                canvas.requires_grad_(False)
                with torch.no_grad():
                    square.mul_(0.9).add_(gradient.pow(2))
                    momentum.mul_(0.9).sub_(gradient / (1 / lr + square.sqrt()))
                    canvas.add_(momentum)
                    prior.project(canvas)
                    return traced(features.detach())

            def images(canvas=canvas, pad=pad) -> torch.Tensor:
                top = pad // 2
                return (canvas[:, :, top : top + height, top : top + width] / 255 + mean).clamp(
                    0, 1
                )

            listener = offset_frames(on_step, done_before, total)
            stage_rows, stopped = run_steps(stage_length, step, images, listener, trace_name)
            rows += stage_rows
            top = pad // 2
            current = canvas.detach()[:, :, top : top + height, top : top + width].clone()
            if stopped:
                break
    final = (current / 255 + mean).clamp(0, 1)
    trace = stack_trace(rows, count, net.device)
    info = {"final": trace[-1].tolist() if len(trace) else []}
    return SynthesisResult(final, trace, trace_name, stopped, info)


def _check_preimage(
    x: torch.Tensor, strength: float, jitter: int | None, on_step: OnStep | None
) -> None:
    """The arguments :func:`invert` and :func:`caricature` share."""
    check_input(x)
    # A negative strength would turn the feature term around (away from the image's
    # features); 0 would leave only the prior.
    check_number("strength", strength, low=0, low_open=True)
    if jitter is not None:
        check_int("jitter", jitter, low=1)
    check_callback("on_step", on_step)


def _check_stages(steps: tuple[int, ...] | int) -> tuple[int, ...]:
    stages = (steps,) if isinstance(steps, int) else tuple(steps)
    for value in stages:
        check_steps(value)
    return stages


def _stride(net: SynthesisNet, layer: str, size: torch.Size) -> float:
    """The layer's cumulative stride: input side / output side."""
    with net.session(), torch.no_grad():
        probe = torch.full((1, net.channels, *size), 0.5, device=net.device)
        features = net.features(probe, [layer])[layer]
    return size[-1] / features.shape[-1] if features.ndim == 4 else float(size[-1])
