"""CNN Fixations (Mopuri, Garg & Babu, arXiv 1708.06670 / TIP 2019): gradient-free evidence.

The forward pass is recorded once (``torch.no_grad``) on a ``torch.fx`` graph of the model, then
unravelled backwards from the target logit with a set of "discriminative points" per graph
node, using only the stored activations and the weights. No autograd, no hooks, and the
user's module is traced, never modified.

This package holds the registered method (``cnn_fixations``) and the public entry points;
the pieces are :mod:`.ops` (op tables: which torch ops are handled how), :mod:`.walker`
(fx trace, recorded forward pass, backward walk over the nodes), :mod:`.rules` and
:mod:`.steps` (how points move back one layer) and :mod:`.heatmap` (points to a map).
"""

from __future__ import annotations

import torch
from torch import nn

from ...layers import check_input
from ...model_view import eval_view
from ...models import to_model_input
from ..api import Target, resolve_targets
from ..context import AttributionRequest
from ..registry import Param, register
from .heatmap import fixation_map, remove_outliers
from .ops import PASSTHROUGH_FUNCTIONS
from .steps import adaptive_pool_step, conv_step, dedupe, linear_step, pool_step
from .walker import Unravel

# The step rules also under the names they had before the split (tests/test_fixations.py).
_linear_step = linear_step
_conv_step = conv_step
_pool_step = pool_step
_adaptive_pool_step = adaptive_pool_step

__all__ = [
    "PASSTHROUGH_FUNCTIONS",
    "cnn_fixations",
    "fixation_map",
    "fixation_points",
    "remove_outliers",
    "trace_fixations",
]


@register(
    name="cnn_fixations",
    title="CNN Fixations",
    family="fixations",
    output="pixel",
    signed=False,
    uses_layer=False,
    cost="1F, no backward",
    params=(
        Param(
            "conv_position",
            "argmax",
            "choice",
            "where a point moves inside a conv window: 'argmax' = largest contribution of the "
            "chosen channel (PyTorch port), 'anchor' = window centre (official code)",
            choices=("argmax", "anchor"),
        ),
        Param(
            "sigma",
            20.0,
            "float",
            "std of the Gaussian blur in pixels (paper: 20 at 224 px); clamped to a sixth of "
            "the blur kernel (the shorter image side) on small inputs; 0 = no blur",
            0.0,
            200.0,
        ),
    ),
)
def cnn_fixations(request: AttributionRequest, conv_position: str, sigma: float) -> torch.Tensor:
    """Mopuri, Garg & Babu 2017/2019: unravel the forward pass from the target logit down to
    "fixation" pixels using only the stored activations and weights (no gradients, one
    forward pass). Linear <- linear keeps every input with a_i W_ji > 0 (the argmax if none
    is positive); linear <- flattened feature map keeps the single argmax; global / average
    pooling keeps the position of the largest input; conv picks the input channel with the largest summed
    contribution over its window (position: ``conv_position``); max-pool follows its switch;
    additions follow the operand with the larger value at the point (the skip on ties);
    concatenations route by channel offset. Heatmap as in the reference: fixations with no
    more than 5% of all fixations within 0.1 x the image diagonal are dropped as outliers,
    unit impulses are blurred with a Gaussian (``sigma`` px, kernel = the shorter image side)
    and each map is scaled to max 1. Same value in every colour channel. Unlike the
    reference, a single input is used (no five-crop averaging)."""
    x = request.x
    points = _fixations(request.module, x, request.targets, conv_position)
    n, channels, height, width = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    maps = torch.stack([fixation_map(p, height, width, sigma=sigma, dtype=work) for p in points])
    return maps.to(x.dtype).unsqueeze(1).expand(n, channels, height, width).contiguous()


def fixation_points(
    module: nn.Module, x: torch.Tensor, target: Target = None, conv_position: str = "argmax"
) -> list[torch.Tensor]:
    """The fixations of each sample: a list of ``(P, 2)`` long tensors of distinct ``(y, x)``
    input-pixel coordinates (before outlier removal), on the model's device. ``target`` is a
    class index, one per sample, or ``None`` for the predicted class. The model is left as
    found (eval mode only for the call)."""
    check_input(x)
    x = to_model_input(x, module)
    targets = resolve_targets(target, x.shape[0], x.device)
    return _fixations(eval_view(module), x, targets, conv_position)


def trace_fixations(
    module: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    conv_position: str = "argmax",
) -> dict[str, torch.Tensor]:
    """The discriminative points at every graph node the unravelling reached, keyed by the
    ``torch.fx`` node name: ``(P, 1 + D)`` long tensors whose first column is the sample and
    the rest the index inside that sample's activation (for a feature map: channel, y, x).
    Works for any input rank (e.g. fully connected nets); for inspection and tests."""
    x = to_model_input(x, module)
    targets = resolve_targets(target, x.shape[0], x.device)
    run = Unravel(eval_view(module), x, targets, conv_position, PASSTHROUGH_FUNCTIONS)
    return {node.name: points for node, points in run.points.items()}


def _fixations(
    module: nn.Module, x: torch.Tensor, targets: torch.Tensor | None, conv_position: str
) -> list[torch.Tensor]:
    """Each sample's distinct ``(y, x)`` input-pixel fixations, ``(P, 2)`` long."""
    run = Unravel(module, x, targets, conv_position, PASSTHROUGH_FUNCTIONS)
    found = run.points.get(run.input_node, x.new_zeros((0, 4), dtype=torch.long))
    size = tuple(x.shape[2:])
    return [dedupe(found[found[:, 0] == b][:, 2:4], size) for b in range(x.shape[0])]
