"""Gradient-based pixel attribution."""

from __future__ import annotations

import torch

from .context import AttributionRequest
from .registry import register


@register(
    name="saliency",
    title="Saliency (gradient)",
    family="gradient",
    output="pixel",
    signed=True,
    uses_layer=False,
    cost="1F+1B",
)
def saliency(request: AttributionRequest) -> torch.Tensor:
    """Simonyan et al. 2014: the gradient of the target logit with respect to the input,
    signed, shaped like the input. (Captum's ``Saliency`` returns its absolute value by
    default.)"""
    x = request.x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        score, _ = request.scores(request.module(x))
        (gradient,) = torch.autograd.grad(score, x)
    return gradient
