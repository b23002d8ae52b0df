"""Norm-constrained activation maximization (Erhan et al. 2009), and the
stability of an optimum across random restarts.

x* = argmax_{||x||_2 = rho} h(x) over the model input x (normalized units, one image at a
time), solved by gradient ascent with re-projection onto the sphere after every step. There is
no other prior: no parameterization, transform or penalty.
"""

from __future__ import annotations

import math

import torch

from . import objectives as obj
from .network import SynthesisNet
from .render import check_steps, seeded_generator
from .result import OnStep, SynthesisResult, run_steps, stack_trace


def data_norm(size: int | tuple[int, int], channels: int = 3) -> float:
    """The default radius rho: the norm of a standardized C x H x W input (every entry of
    unit variance, as the normalized data has on average), sqrt(C H W); ``size`` a side or
    (H, W)."""
    height, width = (size, size) if isinstance(size, int) else size
    return math.sqrt(channels * height * width)


def norm_constrained_ascent(
    net: SynthesisNet,
    goal: obj.Objective,
    count: int,
    size: int | tuple[int, int],
    steps: int,
    lr: float,
    rho: float,
    seed: int,
    on_step: OnStep | None,
) -> SynthesisResult:
    """``count`` images maximizing ``goal`` (scores (K,)) on the sphere ||x|| = ``rho``.

    Start: x ~ N(0, 1) per entry (seeded), projected onto the sphere. Step t of T:
    x <- x + lr (1 - t/T) rho g / ||g|| (a normalized step, a fraction ``lr`` of the radius,
    decayed linearly so the iterate settles), then x <- rho x / ||x||; per image. The model
    sees x unclipped. ``images``: each optimum's [0, 1] image stretched to its own min..max for
    display; ``info["inputs"]``: the optima themselves (K, C, H, W), model-input units
    (``size`` a side or (H, W), C the model's channels).
    """
    check_steps(steps)
    if not (isinstance(rho, (int, float)) and rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho must be a positive number (the input norm); got {rho!r}.")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be positive (a fraction of rho per step); got {lr!r}.")
    device = net.device
    generator = seeded_generator(seed, device)
    height, width = (size, size) if isinstance(size, int) else size
    x = torch.randn((count, net.channels, height, width), generator=generator, device=device)
    x = _project(x, rho)

    def step(index: int) -> torch.Tensor:
        point = x.detach().requires_grad_(True)
        values = goal(net.features(net.denormalize(point), sorted(goal.layers)))
        (gradient,) = torch.autograd.grad(values.sum(), point)
        with torch.no_grad():
            norms = gradient.flatten(1).norm(dim=1).clamp(min=1e-20).view(-1, 1, 1, 1)
            rate = lr * (1.0 - index / steps) * rho
            x.copy_(_project(point + rate * gradient / norms, rho))
        return values

    with net.session():
        rows, stopped = run_steps(
            steps, step, lambda: _stretched(net.denormalize(x)), on_step, goal.name
        )
    return SynthesisResult(
        _stretched(net.denormalize(x)),
        stack_trace(rows, count, device),
        goal.name,
        stopped,
        {"inputs": x.detach().clone(), "rho": float(rho), "method": "erhan"},
    )


def _project(x: torch.Tensor, rho: float) -> torch.Tensor:
    """Each image (K, C, H, W) scaled to norm ``rho``."""
    return rho * x / x.flatten(1).norm(dim=1).clamp(min=1e-20).view(-1, 1, 1, 1)


def _stretched(images: torch.Tensor) -> torch.Tensor:
    """Each image mapped linearly from its own min..max to [0, 1] (constant images: 0.5)."""
    flat = images.detach().flatten(1)
    low = flat.amin(dim=1).view(-1, 1, 1, 1)
    span = (flat.amax(dim=1) - flat.amin(dim=1)).view(-1, 1, 1, 1)
    return torch.where(span > 0, (images.detach() - low) / span.clamp(min=1e-20), 0.5)


def restart_stability(images: torch.Tensor, restarts: int) -> list[float]:
    """Per unit, the mean over pairs of its ``restarts`` optima of their correlation at the
    best alignment (images (K R, C, H, W), unit-major: a unit's restarts are consecutive).

    A channel's mean activation does not change when its input is translated, so two restarts
    can find the same pattern shifted: each pair is compared at the circular shift where its
    Pearson correlation is highest (computed with FFTs). 1 = every restart found the same
    image up to a shift; near 0 = unrelated images (for white noise the best of H W shifts
    adds about sqrt(2 ln(HW) / (3 H W)), 0.03 at 96 px). NaN with a single restart."""
    if restarts < 2:
        return [math.nan] * (images.shape[0] // max(restarts, 1))
    flat = images.detach().double()
    flat = flat - flat.mean(dim=(1, 2, 3), keepdim=True)
    flat = flat / flat.flatten(1).norm(dim=1).clamp(min=1e-20).view(-1, 1, 1, 1)
    spectra = torch.fft.rfft2(flat)
    size = flat.shape[-2:]
    stability = []
    for first in range(0, flat.shape[0] - restarts + 1, restarts):
        group = spectra[first : first + restarts]
        best = [
            float(torch.fft.irfft2(group[i] * group[j].conj(), s=size).sum(dim=0).max())
            for i in range(restarts)
            for j in range(i + 1, restarts)
        ]
        stability.append(sum(best) / len(best))
    return stability
