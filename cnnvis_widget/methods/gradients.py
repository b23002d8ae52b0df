"""Gradient-based pixel attribution: saliency, guided backprop, DeconvNet, gradient x input,
SmoothGrad, Integrated Gradients. All return a signed map shaped like the input."""

from __future__ import annotations

import contextlib
import functools
import itertools

import numpy as np
import torch

from ..capture import capture
from .context import AttributionRequest
from .registry import Param, batch_size_param, register, resolve_batch_size
from .relu_rules import Rule, relu_rule
from .stride_fix import STRIDE_FIXES, StrideFix, stride_correction


def input_gradient(request: AttributionRequest, x: torch.Tensor | None = None) -> torch.Tensor:
    """d(target logit)/d(input) for ``x`` (default: the request's input), shaped like it."""
    leaf = (request.x if x is None else x).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        score, _ = request.scores(request.network(leaf))
        if not score.requires_grad:  # the output does not depend on the input at all
            return torch.zeros_like(leaf)
        (gradient,) = torch.autograd.grad(score, leaf)
    return gradient.contiguous()


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
    return input_gradient(request)


def _modified_gradient(
    request: AttributionRequest,
    rule: Rule,
    correct_strides: bool = False,
    stride_fix: StrideFix = "nearest",
) -> torch.Tensor:
    # request.network may be a stand-in: the warning names the user's model class.
    with relu_rule(request.network, rule, type(request.module).__name__):
        if not correct_strides:
            return input_gradient(request)
        with stride_correction(request.network, stride_fix):
            return input_gradient(request)


@register(
    name="guided_backprop",
    title="Guided backpropagation",
    family="gradient",
    output="pixel",
    signed=True,
    uses_layer=False,
    cost="1F+1B",
)
def guided_backprop(request: AttributionRequest) -> torch.Tensor:
    """Springenberg et al. 2015: the gradient with every ``nn.ReLU`` passing back only positive
    signals where its input was positive: relu(g) * [x > 0]. Insensitive to the class and to
    the weights (Adebayo et al. 2018): it shows edges the network detects, not evidence."""
    return _modified_gradient(request, "guided")


@register(
    name="deconvnet",
    title="DeconvNet",
    family="gradient",
    output="pixel",
    signed=True,
    uses_layer=False,
    cost="1F+1B",
    params=(
        Param(
            "stride_correction",
            False,
            "bool",
            "remove the grid that strided convs print on the map (Oramas et al. 2019); "
            "stride_fix says how",
        ),
        Param(
            "stride_fix",
            "nearest",
            "choice",
            "nearest: the authors' code (nearest resize, then back at stride 1); coverage: "
            "divide by the window overlap count",
            choices=STRIDE_FIXES,
        ),
    ),
)
def deconvnet(
    request: AttributionRequest, stride_correction: bool, stride_fix: StrideFix
) -> torch.Tensor:
    """Zeiler & Fergus 2014: backward pass where every ``nn.ReLU`` applies relu to the signal
    coming back (relu(g)) instead of the forward mask; max-pool switches are kept. Without
    max-pooling the map does not depend on the input. ``stride_correction=True`` removes the
    grid that overlapping strided windows print (Oramas et al., ICLR 2019), the way
    ``stride_fix`` says (:mod:`~cnnvis_widget.methods.stride_fix`): ``"nearest"``, the authors'
    released code (the signal resized by nearest neighbour to the stride-1 output size and sent
    back at stride 1), or ``"coverage"``, each input pixel divided by the number of windows
    covering it. Default off: Zeiler & Fergus's plain DeconvNet."""
    return _modified_gradient(
        request, "deconvnet", correct_strides=stride_correction, stride_fix=stride_fix
    )


@register(
    name="gradient_x_input",
    title="Gradient x input",
    family="gradient",
    output="pixel",
    signed=True,
    uses_layer=False,
    cost="1F+1B",
)
def gradient_x_input(request: AttributionRequest) -> torch.Tensor:
    """Shrikumar et al. 2016: input * d(target logit)/d(input), element-wise."""
    return request.x * input_gradient(request)


@register(
    name="smoothgrad",
    title="SmoothGrad",
    family="gradient",
    output="pixel",
    signed=True,
    uses_layer=False,
    streams=True,
    cost="n_samples x (1F+1B), batched",
    params=(
        Param("n_samples", 50, "int", "noisy copies averaged (paper: about 50)", 1, 1000),
        Param(
            "noise_level",
            0.15,
            "float",
            "noise std as a fraction of each input's value range (paper: 0.10-0.20)",
            0.0,
            1.0,
        ),
        batch_size_param("noisy copies"),
        Param("seed", 0, "int", "seed of the noise", 0, 2**31 - 1),
    ),
)
def smoothgrad(
    request: AttributionRequest, n_samples: int, noise_level: float, batch_size: int, seed: int
) -> torch.Tensor:
    """Smilkov et al. 2017: mean over ``n_samples`` of the gradient at x + N(0, sigma^2), with
    sigma = noise_level * (max(x) - min(x)) per sample. Defaults are the paper's (n = 50,
    15% noise), not Captum's NoiseTunnel defaults."""
    x = request.x
    n = x.shape[0]
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(n, *([1] * (x.ndim - 1)))
    sigma = noise_level * span
    generator = torch.Generator(device=x.device).manual_seed(seed)
    total = torch.zeros_like(x)
    targets = _targets_for(request)
    batch_size = resolve_batch_size(batch_size, x.device)
    for start, stop in batches(n_samples, batch_size, first_alone=request.on_step is not None):
        # One draw per noisy copy, so the noise (and the map) does not depend on batching.
        noise = torch.stack(
            [
                torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                for _ in range(stop - start)
            ]
        )
        noisy = (x.unsqueeze(0) + noise * sigma.unsqueeze(0)).flatten(0, 1)
        gradients = input_gradient(request.sub(noisy, targets.repeat(stop - start)))
        total += gradients.view(stop - start, *x.shape).sum(0)
        request.report(functools.partial(torch.div, total, stop), stop / n_samples)
    return total / n_samples


@register(
    name="integrated_gradients",
    title="Integrated Gradients",
    family="gradient",
    output="pixel",
    signed=True,
    uses_layer=False,
    streams=True,
    cost="steps x (1F+1B), batched",
    params=(
        Param("steps", 50, "int", "quadrature points on the path (Gauss-Legendre)", 1, 1000),
        Param(
            "baseline",
            0.0,
            "float",
            "baseline value in model-input units (0 = the normalization mean, i.e. grey); "
            "a tensor shaped like the input is accepted from Python",
            -10.0,
            10.0,
        ),
        batch_size_param("path points"),
    ),
)
def integrated_gradients(
    request: AttributionRequest, steps: int, baseline: float | torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Sundararajan et al. 2017: (x - x') * integral_0^1 d y_c(x' + a (x - x')) / dx da,
    by ``steps``-point Gauss-Legendre quadrature (Captum's default rule, same nodes). Satisfies
    completeness: the sum equals y_c(x) - y_c(x') up to the quadrature error."""
    x = request.x
    reference = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor(0.5 * (nodes + 1), dtype=x.dtype, device=x.device)
    step_weights = torch.tensor(0.5 * weights, dtype=x.dtype, device=x.device)
    targets = _targets_for(request)
    total = torch.zeros_like(x)
    batch_size = resolve_batch_size(batch_size, x.device)
    for start, stop in batches(steps, batch_size, first_alone=request.on_step is not None):
        a = alphas[start:stop].view(-1, *([1] * x.ndim))
        w = step_weights[start:stop].view(-1, *([1] * x.ndim))
        path = (reference.unsqueeze(0) + a * (x - reference).unsqueeze(0)).flatten(0, 1)
        gradients = input_gradient(request.sub(path, targets.repeat(a.shape[0])))
        total += (w * gradients.view(a.shape[0], *x.shape)).sum(0)
        request.report(
            functools.partial(_partial_ig, x - reference, total, step_weights[:stop]), stop / steps
        )
    return (x - reference) * total


def batches(total: int, batch_size: int, *, first_alone: bool) -> list[tuple[int, int]]:
    """[start, stop) ranges covering ``total`` items ``batch_size`` at a time. With
    ``first_alone`` the first range holds one item, so a listener sees a first partial map
    after a single forward + backward instead of a whole batch."""
    edges = [0, 1] if first_alone and total > 1 else [0]
    edges += [*list(range(edges[-1] + batch_size, total, batch_size)), total]
    return list(itertools.pairwise(edges))


def _partial_ig(
    difference: torch.Tensor, total: torch.Tensor, weights_done: torch.Tensor
) -> torch.Tensor:
    """IG preview: the quadrature done so far, rescaled to the whole path (computed only when
    an ``on_step`` listener asks for it)."""
    return difference * total / weights_done.sum()


def _targets_for(request: AttributionRequest) -> torch.Tensor:
    """The explicit targets, or the predicted classes of the unperturbed input."""
    if request.targets is not None:
        return request.targets
    with torch.no_grad():
        _, targets = request.scores(request.network(request.x))
    return targets


def unit_projection(
    view: torch.nn.Module,
    x: torch.Tensor,
    layer: str,
    channel: int,
    *,
    rule: Rule = "deconvnet",
    correct_strides: bool = True,
    stride_fix: StrideFix = "nearest",
) -> torch.Tensor:
    """Zeiler & Fergus 2014's projection of one channel's map to pixel space: a backward pass
    started at ``layer``'s output with the channel's own activations there and every other
    channel zero, through ``rule``'s ReLUs (``"deconvnet"``: relu of the signal; ``"guided"``:
    also the forward mask, as the default of Oramas et al.'s released code) and, with
    ``correct_strides``, the stride correction ``stride_fix`` of :func:`deconvnet`. ``view`` is an eval view
    (:func:`~cnnvis_widget.model_view.eval_view`: hooks go on it only), ``x`` the model input
    (N, C, H, W); returns the signed projection (N, C, H, W) (the gradient of 1/2 the channel's
    squared map, under the rules). Samples do not interact (eval mode), so a batch is one forward + backward."""
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), relu_rule(view, rule, type(view).__name__):
        corrections = (
            stride_correction(view, stride_fix) if correct_strides else contextlib.nullcontext()
        )
        with corrections, capture(view, [layer]) as taps:
            view(leaf)
        acts = taps.tensor(layer)
        if acts.ndim != 4 or not 0 <= channel < acts.shape[1]:
            raise ValueError(
                f"{layer} gives {tuple(acts.shape)}; a unit projection needs channel maps "
                f"(N, C, h, w) and a channel in 0..{acts.shape[1] - 1 if acts.ndim > 1 else 0}."
            )
        start = torch.zeros_like(acts)
        start[:, channel] = acts[:, channel].detach()
        if not acts.requires_grad:  # the layer does not depend on the input
            return torch.zeros_like(leaf)
        (projection,) = torch.autograd.grad(acts, leaf, grad_outputs=start)
    return projection.contiguous()
