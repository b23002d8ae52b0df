"""Scores for attribution maps: deletion / insertion (Petsiuk et al. 2018) and the model
parameter randomization sanity check (Adebayo et al. 2018)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_finite_tensor, check_input, check_int, check_module, check_number
from .methods.api import Target, attribute, resolve_targets, upsample
from .methods.context import check_targets_in_range
from .methods.fast_model import fast_model
from .methods.frozen_inference import frozen_inference
from .model_view import engine_call, eval_view, user_hooks
from .models import logits_of, to_model_input


@dataclass(frozen=True)
class DeletionInsertion:
    """Per-sample areas under the curves (N,), and the curves ``(N, steps + 1)`` of the
    target's softmax probability against the fraction of pixels deleted / inserted.
    Lower deletion and higher insertion mean a more faithful map."""

    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_curve: torch.Tensor
    insertion_curve: torch.Tensor
    fractions: torch.Tensor


def importance(attribution: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A map from any method as per-pixel importance ``(N, H*W)``: layer maps are upsampled,
    colour channels summed; signed maps keep their sign (most positive evidence first)."""
    if attribution.ndim != 4:
        raise ValueError(f"expected maps (N, C, h, w); got {tuple(attribution.shape)}.")
    if tuple(attribution.shape[-2:]) != tuple(size):
        attribution = upsample(attribution.float(), size)
    return attribution.sum(dim=1).flatten(1)


@engine_call
def deletion_insertion(
    module: nn.Module,
    x: torch.Tensor,
    attribution: torch.Tensor,
    target: Target = None,
    *,
    steps: int = 32,
    baseline: float = 0.0,
    blur_sigma: float = 5.0,
    batch_size: int = 33,
) -> DeletionInsertion:
    """Deletion: replace the most important pixels first by ``baseline`` (model-input units;
    0 = the normalization mean) and watch the target probability fall. Insertion: start from
    a Gaussian-blurred copy (``blur_sigma`` px) and paste the most important pixels back first.
    ``steps`` equal chunks of pixels; trapezoidal area over the fraction in [0, 1]."""
    _check_scoring(module, x, attribution, target, steps, baseline, blur_sigma, batch_size)
    x = to_model_input(x, module)
    n, _, height, width = x.shape
    order = importance(attribution.to(x.device), (height, width)).argsort(dim=1, descending=True)
    counts = torch.linspace(0, height * width, steps + 1, device=x.device).round().long()
    blurred = _blur(x, blur_sigma)
    view = eval_view(module)
    with torch.no_grad():
        # The fast stand-in computes the same function faster, but only from the modules'
        # forward: a model with hooks or parametrizations of its own runs as it is.
        network = view if user_hooks(module) else frozen_inference(fast_model(module, x[:1]))
        logits = logits_of(network(x))
        if target is None:
            targets = logits.argmax(1)
        else:
            targets = torch.as_tensor(target, device=x.device).long().flatten().expand(n)
            check_targets_in_range(targets, logits.shape[1])
        curves = []
        for start_image, fill in ((x, torch.full_like(x, baseline)), (blurred, x)):
            probs = torch.empty((n, steps + 1), device=x.device)
            for sample in range(n):
                masks = _first_k_masks(order[sample], counts, height, width)  # (S+1, 1, H, W)
                images = start_image[sample] * (1 - masks) + fill[sample] * masks
                images = images.to(x.dtype)  # float32 masks: back to a half model's dtype
                for begin in range(0, steps + 1, batch_size):
                    chunk = images[begin : begin + batch_size]
                    logits = logits_of(network(chunk))
                    probs[sample, begin : begin + len(chunk)] = F.softmax(logits.float(), 1)[
                        :, targets[sample]
                    ]
            curves.append(probs)
    fractions = counts.float() / (height * width)
    deletion, insertion = (torch.trapezoid(curve, fractions, dim=1) for curve in curves)
    return DeletionInsertion(deletion, insertion, curves[0], curves[1], fractions)


def _check_scoring(
    module: nn.Module,
    x: torch.Tensor,
    attribution: torch.Tensor,
    target: Target,
    steps: int,
    baseline: float,
    blur_sigma: float,
    batch_size: int,
) -> None:
    """The arguments of :func:`deletion_insertion`, each with a message naming the fix."""
    check_module(module)
    check_input(x, module)
    check_int("steps", steps, low=1)
    check_number("baseline", baseline)
    check_number("blur_sigma", blur_sigma, low=0, low_open=True)
    check_int("batch_size", batch_size, low=1)
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(
            f"the map must be a tensor (N, C, h, w) from cv.attribute; got "
            f"{type(attribution).__name__}."
        )
    if attribution.ndim == 4 and attribution.shape[0] != x.shape[0]:
        raise ValueError(
            f"got {attribution.shape[0]} maps for {x.shape[0]} input(s); pass one map per "
            "sample of x (cv.attribute on the same x gives them)."
        )
    check_finite_tensor("the map", attribution)
    resolve_targets(target, x.shape[0], x.device)


def _first_k_masks(
    order: torch.Tensor, counts: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    masks = rank.unsqueeze(0) < counts.unsqueeze(1)  # (S+1, H*W)
    return masks.view(-1, 1, height, width).float()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(out, vertical, groups=channels)


@dataclass(frozen=True)
class RandomizationStep:
    """Spearman rank correlation (per sample, (N,)) between the original map and the map of
    a copy whose parameters from the top down to ``layer`` were re-initialized."""

    layer: str
    spearman: torch.Tensor
    spearman_abs: torch.Tensor


@engine_call
def randomization_check(
    module: nn.Module,
    x: torch.Tensor,
    method: str,
    target: Target = None,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    **params: Any,
) -> list[RandomizationStep]:
    """Adebayo et al. 2018, cascading model parameter randomization: re-initialize the
    parameters of ``layers`` (default: the module's direct children that hold parameters),
    from the output down, one more at a time, on a deep copy (the caller's model is not
    touched), and compare each map with the original. A method that explains the model must
    drift away (low correlation); one that stays close is insensitive to the weights."""
    layer = params.pop("layer", None)
    original = attribute(module, x, method, target=target, layer=layer, **params)
    if target is None:
        with torch.no_grad():
            target = logits_of(eval_view(module)(to_model_input(x, module))).argmax(1).tolist()
    names = list(layers) if layers is not None else _parameterized_children(module)
    copy_ = copy.deepcopy(module)
    modules = dict(copy_.named_modules())
    generator = torch.Generator().manual_seed(seed)
    steps = []
    for name in reversed(names) if layers is None else names:
        if name not in modules:
            raise ValueError(f"unknown layer {name!r}; choose among {list(modules)[1:]}.")
        _reinitialize(modules[name], generator)
        randomized = attribute(copy_, x, method, target=target, layer=layer, **params)
        steps.append(
            RandomizationStep(
                name,
                spearman(original, randomized),
                spearman(original.abs(), randomized.abs()),
            )
        )
    return steps


def _parameterized_children(module: nn.Module) -> list[str]:
    return [
        name for name, child in module.named_children() if any(True for _ in child.parameters())
    ]


def _reinitialize(module: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            fresh = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            fan_in = parameter[0].numel() if parameter.ndim > 1 else parameter.numel()
            parameter.copy_((fresh / max(fan_in, 1) ** 0.5).to(parameter.dtype))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per sample between maps of the same shape, (N,)."""
    ranks_a = a.flatten(1).double().argsort(1).argsort(1).double()
    ranks_b = b.flatten(1).double().argsort(1).argsort(1).double()
    ranks_a = ranks_a - ranks_a.mean(1, keepdim=True)
    ranks_b = ranks_b - ranks_b.mean(1, keepdim=True)
    denominator = (ranks_a.norm(dim=1) * ranks_b.norm(dim=1)).clamp_min(1e-12)
    return (ranks_a * ranks_b).sum(1) / denominator
