"""Class activation maps computed at a layer."""

from __future__ import annotations

import torch

from ..capture import capture
from .context import AttributionRequest
from .registry import register


@register(
    name="gradcam",
    title="Grad-CAM",
    family="cam",
    output="layer",
    signed=False,
    uses_layer=True,
    cost="1F+1B (backward stops at the layer)",
)
def gradcam(request: AttributionRequest) -> torch.Tensor:
    """Selvaraju et al. 2017: ReLU(sum_k alpha_k A^k) with alpha_k the spatial mean of
    d y_c / d A^k, y_c the pre-softmax logit. Returns (N, 1, h, w), non-negative, at the layer's
    resolution. The forward pass builds an autograd graph only from the layer on, and the
    backward pass stops at the layer."""
    assert request.layer is not None
    with torch.no_grad(), capture(request.module, [request.layer], differentiable=True) as tapped:
        output = request.module(request.x)
        activation = tapped.tensor(request.layer)
        score, _ = request.scores(output)
        (gradient,) = torch.autograd.grad(score, activation, allow_unused=True)
    if gradient is None:
        raise ValueError(
            f"layer {request.layer!r} does not feed the model's output, so it has no gradient. "
            "Pick a layer on the path to the logits (see cv.layers(module, x))."
        )
    if activation.ndim != 4:
        raise ValueError(
            f"Grad-CAM needs a layer with (N, C, h, w) output; {request.layer!r} gives "
            f"{tuple(activation.shape)}. Pick a convolutional layer."
        )
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation.detach()).sum(dim=1, keepdim=True))
