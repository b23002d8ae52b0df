"""Neural style transfer (Gatys, Ecker, Bethge, CVPR 2016) with any CNN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_callback, check_input, check_number
from ..model_view import engine_call
from .network import ModelLike, SynthesisNet
from .render import check_steps
from .result import OnStep, SynthesisResult, run_steps, stack_trace


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices (N, C, C) of features (N, C, h, w), divided by C * h * w."""
    count, channels = features.shape[:2]
    flat = features.reshape(count, channels, -1)
    return torch.bmm(flat, flat.transpose(1, 2)) / flat[0].numel()


def default_style_layers(net: SynthesisNet, size: tuple[int, int]) -> tuple[list[str], str]:
    """(style layers, content layer) for any CNN: its convolutions in forward order grouped by
    output resolution; the first convolution of each of the first five resolutions carries
    style and the second convolution of the fourth (or last) resolution the content. On
    VGG-16/19 this is Gatys' choice: conv1_1 ... conv5_1 and conv4_2."""
    convs = [name for name, sub in net.module.named_modules() if isinstance(sub, nn.Conv2d)]
    with net.session(), torch.no_grad():
        probe = torch.full((1, net.channels, *size), 0.5, device=net.device, dtype=net.dtype)
        order: list[tuple[int, str, int]] = []
        hooks = []
        counter = [0]
        for name in convs:

            def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = name) -> None:
                order.append((counter[0], name, out.shape[-1]))
                counter[0] += 1

            hooks.append(net.module.get_submodule(name).register_forward_hook(hook))
        try:
            net.module(net.normalize(probe))
        finally:
            for handle in hooks:
                handle.remove()
    stages: list[list[str]] = []
    last_width = None
    for _, name, width in sorted(order):
        if width != last_width:
            stages.append([])
            last_width = width
        if name not in stages[-1]:
            stages[-1].append(name)
    if not stages:
        raise ValueError("the model has no Conv2d layer; pass style_layers and content_layer.")
    style = [stage[0] for stage in stages[:5]]
    content_stage = stages[min(3, len(stages) - 1)]
    return style, content_stage[min(1, len(content_stage) - 1)]


@engine_call
def style_transfer(
    model: ModelLike,
    content: torch.Tensor,
    style: torch.Tensor,
    *,
    style_layers: Sequence[str] | None = None,
    content_layer: str | None = None,
    style_weight: float = 1e5,
    content_weight: float = 1.0,
    steps: int = 300,
    lr: float = 0.02,
    on_step: OnStep | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """``content`` (model input (1, C, H, W)) repainted in the style of ``style`` (model input,
    resized to H x W).

    Minimizes ``content_weight`` * mean squared difference of the features at
    ``content_layer`` + ``style_weight`` * sum over ``style_layers`` of the mean squared
    difference of Gram matrices (each / C h w); default layers from
    :func:`default_style_layers`. Gatys used L-BFGS; this uses Adam on the [0, 1] pixels
    (``lr`` per step, clipped to [0, 1], starting from the content image) so every step can
    be streamed and stopped. ``trace`` is the total loss per step.
    """
    net = SynthesisNet.of(model, mean, std)
    check_steps(steps)
    check_input(content)
    check_input(style)
    check_number("lr", lr, low=0, low_open=True)
    check_number("style_weight", style_weight, low=0)
    check_number("content_weight", content_weight, low=0)
    check_callback("on_step", on_step)
    content_unit = net.unit_images(content).clamp(0, 1)
    style_unit = net.unit_images(style).clamp(0, 1)
    size = content_unit.shape[-2:]
    if style_unit.shape[-2:] != size:
        style_unit = nn.functional.interpolate(
            style_unit, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    if style_layers is None or content_layer is None:
        auto_style, auto_content = default_style_layers(net, (size[0], size[1]))
        style_layers = list(style_layers) if style_layers is not None else auto_style
        content_layer = content_layer or auto_content
    layers = sorted({*style_layers, content_layer})
    net.check_layers(layers)
    with net.session(), torch.no_grad():
        content_target = net.features(content_unit, layers)[content_layer].detach()
        style_features = net.features(style_unit, layers)
        style_targets = {name: gram(style_features[name]).detach() for name in style_layers}
    image = content_unit.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)

    def step(_index: int) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        features = net.features(image, layers)
        loss = content_weight * _per_image_mse(features[content_layer], content_target)
        for name in style_layers:
            loss = loss + style_weight * _per_image_mse(gram(features[name]), style_targets[name])
        (gradient,) = torch.autograd.grad(loss.sum(), image)
        image.grad = gradient
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)
        return loss.detach()

    with net.session():
        rows, stopped = run_steps(steps, step, lambda: image.detach(), on_step, "loss")
    info = {"style_layers": list(style_layers), "content_layer": content_layer}
    return SynthesisResult(
        image.detach().clone(), stack_trace(rows, image.shape[0], net.device), "loss", stopped, info
    )


def _per_image_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per image (N,); ``b`` broadcasts over the batch."""
    return (a - b).pow(2).flatten(1).mean(dim=1)
