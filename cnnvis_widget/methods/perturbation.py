"""Perturbation methods: occlusion sensitivity (no gradients)."""

from __future__ import annotations

import math

import torch

from .context import AttributionRequest
from .registry import Param, batch_size_param, register, resolve_batch_size


@register(
    name="occlusion",
    title="Occlusion",
    family="perturbation",
    output="pixel",
    signed=True,
    uses_layer=False,
    streams=True,
    cost="1F + one forward per window position (169 at 224 px, window 32, stride 16), batched",
    params=(
        Param("window", 32, "int", "side of the square patch, in input pixels", 1, 512),
        Param("stride", 16, "int", "step between patch positions, in input pixels", 1, 512),
        Param(
            "baseline",
            0.0,
            "float",
            "fill value in model-input units (0 = the normalization mean, i.e. grey)",
            -10.0,
            10.0,
        ),
        batch_size_param("occluded images"),
    ),
)
def occlusion(
    request: AttributionRequest, window: int, stride: int, baseline: float, batch_size: int
) -> torch.Tensor:
    """Zeiler & Fergus 2014, section 4.2: slide a ``window`` x ``window`` patch of ``baseline``
    over the image with ``stride``; a pixel's value is the mean, over the windows covering it,
    of y_c(x) - y_c(x with the window occluded) (Captum's convention, including its last row
    and column of windows that are cut off by the far edge, so every pixel is covered). The paper gives no single patch size: window 32 / stride 16 (about H/7 at 224 px)
    is our default. Same value in every colour channel."""
    x = request.x
    n, _, height, width = x.shape
    if window > min(height, width):
        raise ValueError(
            f"occlusion window {window} is larger than the input ({height}x{width}); "
            "pass a smaller window."
        )
    with torch.no_grad():
        reference, targets = request.scores_per_sample(request.inference_network(x))
        # As in Captum: enough positions to reach the far edge; the last ones may hang over it.
        rows = range(0, stride * math.ceil((height - window) / stride) + 1, stride)
        columns = range(0, stride * math.ceil((width - window) / stride) + 1, stride)
        positions = [(top, left) for top in rows for left in columns]
        total = torch.zeros((n, 1, height, width), dtype=x.dtype, device=x.device)
        covered = torch.zeros((1, 1, height, width), dtype=x.dtype, device=x.device)
        per_pass = max(1, resolve_batch_size(batch_size, x.device) // n)
        for start in range(0, len(positions), per_pass):
            chunk = positions[start : start + per_pass]
            occluded = x.unsqueeze(0).repeat(len(chunk), 1, 1, 1, 1)
            for index, (top, left) in enumerate(chunk):
                occluded[index, :, :, top : top + window, left : left + window] = baseline
            scores, _ = request.scores_per_sample(
                request.inference_network(occluded.flatten(0, 1)), targets.repeat(len(chunk))
            )
            drops = reference.unsqueeze(0) - scores.view(len(chunk), n)
            for index, (top, left) in enumerate(chunk):
                total[:, 0, top : top + window, left : left + window] += drops[index].view(n, 1, 1)
                covered[:, :, top : top + window, left : left + window] += 1
            request.report(
                lambda: (total / covered.clamp(min=1)).expand_as(x).contiguous(),
                (start + len(chunk)) / len(positions),
            )
    return (total / covered.clamp(min=1)).expand_as(x).contiguous()
