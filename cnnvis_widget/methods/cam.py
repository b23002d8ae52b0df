"""Class activation maps computed at a layer: CAM, Grad-CAM, Grad-CAM++, Layer-CAM, Score-CAM.

Every method here returns ``(N, 1, h, w)`` at the layer's resolution, non-negative, for the
layer output ``A`` of shape ``(N, K, h, w)`` and the target logit ``y_c`` (pre-softmax) of each
sample. The gradient methods share :func:`_activation_and_gradient`: one forward pass that
builds an autograd graph only from the layer on, and one backward pass that stops there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture
from ..layers import layer_grid, spatial_maps
from ..models import logits_of
from .context import AttributionRequest
from .gradients import guided_backprop
from .registry import Param, batch_size_param, register, resolve_batch_size

_GAP_LINEAR_FIX = (
    "CAM needs conv -> global average pool -> linear; use gradcam for this model/layer."
)


def _spatial(activation: torch.Tensor, x: torch.Tensor, layer: str, title: str) -> torch.Tensor:
    """The layer output as maps over the image (N, K, h, w): convolutional maps as they are,
    a vision transformer's tokens (N, 1 + h*w, K) reshaped as pytorch-grad-cam's
    ``reshape_transform`` (class token dropped, h x w grid inferred from the input ``x``'s
    aspect ratio). Anything else (vectors, attention's tokens x head-dim arrays) raises
    ``ValueError``: a CAM is never drawn from an output that is not a map."""
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if layer_grid(tuple(activation.shape), size) is None:
        raise ValueError(
            f"{title} needs a layer with (N, C, h, w) output; {layer!r} gives "
            f"{tuple(activation.shape)}, not a map over the {size[0]}x{size[1]} image (a vision "
            "transformer's token layer (N, 1 + h*w, C) also works). Pick a convolutional "
            "layer: cv.layers(module, x) marks them spatial."
        )
    return spatial_maps(activation, size, layer)


def _activation_and_gradient(
    request: AttributionRequest, title: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, dy_c/dA, targets) at ``request.layer``: A and its gradient are ``(N, K, h, w)``
    (token layers reshaped to their grid, see :func:`_spatial`), detached; y_c is each
    sample's target logit (their sum is differentiated: samples do not
    interact in eval mode). The part of the network before the layer runs without autograd and
    the backward pass stops at the layer."""
    assert request.layer is not None
    with torch.no_grad(), capture(request.module, [request.layer], differentiable=True) as tapped:
        output = request.module(request.x)
        activation = tapped.tensor(request.layer)
        score, targets = request.scores(output)
        # The view's parameters are frozen: a layer off the path leaves no graph at all.
        (gradient,) = (
            torch.autograd.grad(score, activation, allow_unused=True)
            if score.requires_grad
            else (None,)
        )
    if gradient is None:
        raise ValueError(
            f"layer {request.layer!r} does not feed the model's output, so it has no gradient. "
            "Pick a layer on the path to the logits (see cv.layers(module, x))."
        )
    return (
        _spatial(activation.detach(), request.x, request.layer, title),
        _spatial(gradient, request.x, request.layer, title),
        targets,
    )


@register(
    name="cam",
    title="CAM",
    family="cam",
    output="layer",
    signed=False,
    uses_layer=True,
    cost="1F (no backward pass)",
)
def cam(request: AttributionRequest) -> torch.Tensor:
    """Zhou et al. 2016 (CVPR, "Learning Deep Features for Discriminative Localization"):
    M_c = ReLU(sum_k w_ck A^k), with w_c the weights of the target class in the final linear
    layer (its bias is left out). Only for models whose head is layer -> global average pool ->
    one linear layer: the last ``nn.Linear`` to run must satisfy logits == Linear(mean over
    h, w of A) on this input (checked numerically, else a ``ValueError`` says to use gradcam).
    A is the layer output (N, K, h, w); returns (N, 1, h, w), non-negative, at the layer's
    resolution. No parameters; no backward pass. On such a head Grad-CAM = M_c / (h w)."""
    assert request.layer is not None
    module, layer = request.module, request.layer
    linears = [name for name, sub in module.named_modules() if isinstance(sub, nn.Linear) and name]
    names = [layer, *(name for name in linears if name != layer)]
    with torch.no_grad(), capture(module, names) as tapped:
        output = module(request.x)
        activation = tapped.tensor(layer)
        _, targets = request.scores(output)
        ran = [name for name in linears if tapped.calls(name) > 0]
        last = max(ran, key=lambda name: tapped.taps[name].finished or 0) if ran else None
    activation = _spatial(activation, request.x, layer, "CAM")
    if last is None:
        raise ValueError(f"the model runs no nn.Linear layer. {_GAP_LINEAR_FIX}")
    linear = dict(module.named_modules())[last]
    assert isinstance(linear, nn.Linear)
    channels = activation.shape[1]
    if linear.in_features != channels:
        raise ValueError(
            f"the last linear layer {last!r} takes {linear.in_features} features but layer "
            f"{layer!r} has {channels} channels, so the logits are not a linear function of its "
            f"global average. {_GAP_LINEAR_FIX}"
        )
    logits = logits_of(output)
    weight, bias = linear.weight.detach(), linear.bias
    predicted = F.linear(
        activation.mean(dim=(2, 3)), weight, None if bias is None else bias.detach()
    )
    scale = float(logits.abs().max()) if logits.numel() else 0.0
    tolerance = 1e-3 if logits.dtype in (torch.float16, torch.bfloat16) else 1e-4
    if predicted.shape != logits.shape or not torch.allclose(
        predicted, logits, rtol=tolerance, atol=tolerance * max(scale, 1.0)
    ):
        difference = (
            f" (largest difference {float((predicted - logits).abs().max()):.3g})"
            if predicted.shape == logits.shape
            else ""
        )
        raise ValueError(
            f"the logits are not {last}(global average of {layer!r}) on this input{difference}: "
            f"there is more than one linear layer or a non-linear step after {layer!r}. "
            f"{_GAP_LINEAR_FIX}"
        )
    class_weights = weight[targets.to(weight.device)]  # (N, K)
    return torch.relu(torch.einsum("nk,nkhw->nhw", class_weights, activation)).unsqueeze(1)


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
    activation, gradient, _ = _activation_and_gradient(request, "Grad-CAM")
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(dim=1, keepdim=True))


@register(
    name="gradcam_plus_plus",
    title="Grad-CAM++",
    family="cam",
    output="layer",
    signed=False,
    uses_layer=True,
    cost="1F+1B (backward stops at the layer)",
)
def gradcam_plus_plus(request: AttributionRequest) -> torch.Tensor:
    """Chattopadhay et al. 2018 (WACV, arXiv 1710.11063, eq. 19): with g = d y_c / d A^k at
    (i, j) and A of shape (N, K, h, w), alpha_ij = g_ij^2 / (2 g_ij^2 + (sum_ab A^k_ab) g_ij^3)
    (0 where the denominator is 0), w_k = sum_ij ReLU(g_ij) alpha_ij, map = ReLU(sum_k w_k A^k).
    This is pytorch-grad-cam's GradCAMPlusPlus formula without its eps = 1e-6 in the
    denominator (which makes alpha depend on the gradients' scale). y_c is the pre-softmax
    logit. Returns (N, 1, h, w), non-negative, at the layer's resolution. No parameters."""
    activation, gradient, _ = _activation_and_gradient(request, "Grad-CAM++")
    squared = gradient.square()
    total = activation.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * squared + total * squared * gradient
    nonzero = denominator != 0
    alpha = torch.where(nonzero, squared / torch.where(nonzero, denominator, 1), 0)
    weights = (torch.relu(gradient) * alpha).sum(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(dim=1, keepdim=True))


@register(
    name="layercam",
    title="Layer-CAM",
    family="cam",
    output="layer",
    signed=False,
    uses_layer=True,
    cost="1F+1B (backward stops at the layer)",
)
def layercam(request: AttributionRequest) -> torch.Tensor:
    """Jiang et al. 2021 (IEEE TIP, "LayerCAM"): map = ReLU(sum_k ReLU(d y_c / d A^k) * A^k),
    the positive gradient weighting each location separately (usable at shallow layers). A is
    the layer output (N, K, h, w), y_c the pre-softmax logit. Returns (N, 1, h, w),
    non-negative, at the layer's resolution. No parameters; single layer (no multi-layer
    fusion)."""
    activation, gradient, _ = _activation_and_gradient(request, "Layer-CAM")
    return torch.relu((torch.relu(gradient) * activation).sum(dim=1, keepdim=True))


SCORECAM_WEIGHTS = ("class_softmax", "channel_softmax")


@register(
    name="scorecam",
    title="Score-CAM",
    family="cam",
    output="layer",
    signed=False,
    uses_layer=True,
    streams=True,
    cost="1F + K forwards (K channels, batched)",
    params=(
        batch_size_param("masked images"),
        Param(
            "weights",
            "class_softmax",
            "choice",
            "class_softmax: softmax over classes of each masked input (authors' code); "
            "channel_softmax: softmax over channels of the raw target logits (pytorch-grad-cam)",
            choices=SCORECAM_WEIGHTS,
        ),
    ),
)
def scorecam(request: AttributionRequest, batch_size: int, weights: str) -> torch.Tensor:
    """Wang et al. 2020 (CVPR-W, arXiv 1910.01279): map = ReLU(sum_k s_k A^k), no gradients.
    Each channel A^k of the layer output (N, K, h, w) is upsampled (bilinear,
    align_corners=False) to the input size H x W and min-max normalized to a mask H_k in
    [0, 1]; the masked input x * H_k is forwarded (``batch_size`` masked images per pass, no
    autograd), and its score gives s_k. ``weights="class_softmax"`` (default, the authors'
    code haofanwang/Score-CAM): s_k = softmax over classes of f(x * H_k), taken at the target
    class. ``weights="channel_softmax"`` (pytorch-grad-cam's ScoreCAM): s = softmax over the
    channels k of the raw target logits y_c(x * H_k). Channels that are constant (max == min
    after upsampling) are skipped: s_k = 0, no forward, and no part in the channel softmax.
    Returns (N, 1, h, w), non-negative, at the layer's resolution. Defaults: batch_size
    automatic (8 on CPU, 64 on a GPU), weights "class_softmax"."""
    assert request.layer is not None
    module, x = request.module, request.x
    with torch.no_grad():
        with capture(module, [request.layer]) as tapped:
            output = module(x)
            activation = tapped.tensor(request.layer)
            _, targets = request.scores(output)
        activation = _spatial(activation, x, request.layer, "Score-CAM")

        def combine(scores: torch.Tensor) -> torch.Tensor:
            return torch.relu(torch.einsum("nk,nkhw->nhw", scores, activation)).unsqueeze(1)

        def progress(scores: torch.Tensor, done: float) -> None:
            request.report(lambda: combine(scores), done)

        return combine(
            _masked_scores(
                request.inference_network,
                x,
                activation,
                targets,
                resolve_batch_size(batch_size, x.device),
                weights,
                progress,
            )
        )


def _masked_scores(
    network: Callable[[torch.Tensor], object],
    x: torch.Tensor,
    activation: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    weights: str,
    progress: Callable[[torch.Tensor, float], None] | None = None,
) -> torch.Tensor:
    """Score-CAM channel weights s (N, K). (sample, channel) pairs are processed in chunks of
    ``batch_size``, so memory stays bounded whatever N and K are."""
    n, k, h, w = activation.shape
    size = (x.shape[-2], x.shape[-1])
    flat = activation.reshape(n * k, 1, h, w)

    def masks(index: torch.Tensor) -> torch.Tensor:
        return F.interpolate(flat[index], size=size, mode="bilinear", align_corners=False)

    pairs = torch.arange(n * k, device=activation.device)
    low = torch.empty(n * k, dtype=activation.dtype, device=activation.device)
    high = torch.empty_like(low)
    for chunk in pairs.split(batch_size):
        upsampled = masks(chunk).flatten(1)
        low[chunk], high[chunk] = upsampled.amin(dim=1), upsampled.amax(dim=1)
    valid = high > low
    scores = torch.zeros(n * k, dtype=activation.dtype, device=activation.device)
    targets = targets.to(activation.device)
    chunks = pairs[valid].split(batch_size)
    for number, chunk in enumerate(chunks, start=1):
        span = (high[chunk] - low[chunk]).view(-1, 1, 1, 1)
        mask = (masks(chunk) - low[chunk].view(-1, 1, 1, 1)) / span
        samples = chunk // k
        logits = logits_of(network(x[samples] * mask))
        if weights == "class_softmax":
            logits = logits.softmax(dim=1)
        scores[chunk] = logits.gather(1, targets[samples].view(-1, 1)).squeeze(1).to(scores.dtype)
        if progress is not None:
            scored = torch.zeros_like(valid)
            scored[torch.cat(chunks[:number])] = True
            progress(_weights(scores, scored, n, k, weights), number / len(chunks))
    return _weights(scores, valid, n, k, weights)


def _weights(
    scores: torch.Tensor, valid: torch.Tensor, n: int, k: int, weights: str
) -> torch.Tensor:
    """(N, K) channel weights from the flat scores; channels not ``valid`` weigh 0."""
    scores = scores.view(n, k)
    if weights == "channel_softmax":
        valid = valid.view(n, k)
        scores = scores.masked_fill(~valid, float("-inf")).softmax(dim=1)
        scores = torch.where(valid, scores, 0)  # a sample with no valid channel: all zero
    return scores


@register(
    name="guided_gradcam",
    title="Guided Grad-CAM",
    family="cam",
    output="pixel",
    signed=True,
    uses_layer=True,
    cost="2F+2B (guided backprop + Grad-CAM)",
    params=(
        Param(
            "interpolation",
            "bilinear",
            "choice",
            "how Grad-CAM is brought to input size: bilinear (the paper) or nearest (Captum)",
            choices=("bilinear", "nearest"),
        ),
    ),
)
def guided_gradcam(request: AttributionRequest, interpolation: str) -> torch.Tensor:
    """Selvaraju et al. 2017: guided backpropagation times Grad-CAM upsampled to the input
    (bilinear, align_corners=False, as in the paper; "nearest" reproduces Captum's
    GuidedGradCam), broadcast over colour channels. Signed, shaped like the input; zero
    wherever Grad-CAM is zero. The product is formed in float32 (half models too)."""
    heat = gradcam(request)
    size = tuple(request.x.shape[-2:])
    if interpolation == "bilinear":
        heat = F.interpolate(heat, size=size, mode="bilinear", align_corners=False)
    else:
        heat = F.interpolate(heat, size=size, mode="nearest")
    # In float32: the product of two small float16 maps would fall below float16's range.
    return guided_backprop(request).float() * heat.float()
