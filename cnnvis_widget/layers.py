"""Layer discovery: every named module with its type and output shape, from one dry forward."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .capture import capture, resolve_layer
from .checks import check_input, check_module, check_names
from .model_view import eval_view
from .models import logits_of, size_errors_explained, to_model_input


@dataclass(frozen=True)
class LayerInfo:
    """One named submodule.

    ``output_shape`` is the shape of its (last) output tensor for the probed input, ``None`` if
    it did not run or returned something other than a tensor. ``calls`` counts how often it ran
    in one forward pass (torchvision ResNet reuses ``relu``: address one call as ``"name@k"``).
    ``grid`` is the (h, w) of its maps over the image when its output has them (see
    :func:`layer_grid`), ``None`` otherwise; ``tokens`` says they come from a token layer
    (N, 1 + h*w, C) through :func:`spatial_maps`.
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    calls: int
    finished: int | None = None  # rank of its last call's completion in the forward pass
    grid: tuple[int, int] | None = None
    tokens: bool = False

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1

    @property
    def spatial(self) -> bool:
        """True when the output is a map over the image with more than one position:
        (N, C, h, w) maps, or tokens (N, 1 + h*w, C) of a vision transformer."""
        return self.grid is not None


def layers(module: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    """All named submodules of ``module`` in definition order, probed with one forward of ``x``
    (``(N, C, H, W)`` model input; the model is left as found)."""
    check_module(module)
    check_input(x, module)
    names = [name for name, _ in module.named_modules() if name]
    types = {name: type(sub).__name__ for name, sub in module.named_modules() if name}
    view = eval_view(module)
    with torch.no_grad(), capture(view, names) as recorded, size_errors_explained(module, x):
        view(to_model_input(x, module))
    shapes = {}
    for name in names:
        output = recorded.taps[name].output
        shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    size = (int(x.shape[-2]), int(x.shape[-1]))
    token_counts = {
        shape[1]
        for shape in shapes.values()
        if shape is not None and len(shape) == 3 and token_grid(shape[1], size) is not None
    }
    result = []
    for name in names:
        tap, shape = recorded.taps[name], shapes[name]
        grid = layer_grid(shape, size, token_counts) if shape is not None else None
        tokens = grid is not None and shape is not None and len(shape) == 3
        result.append(LayerInfo(name, types[name], shape, tap.calls, tap.finished, grid, tokens))
    return result


def _same_aspect(h: int, w: int, height: int, width: int) -> bool:
    """Whether an h x w grid can tile an H x W image with about the same stride along both
    axes: H/h and W/w within a factor 1.5 of each other (padding and rounding change a side
    by a pixel or so). Channels-last outputs (N, h, w, C) of ConvNeXt or Swin, and tokens x
    head-dim arrays (N, heads, T, d) of attention, fail it."""
    return h >= 1 and w >= 1 and 2 / 3 <= (height / h) / (width / w) <= 3 / 2


def token_grid(tokens: int, size: tuple[int, int]) -> tuple[int, int] | None:
    """(h, w) when ``tokens`` = 1 + h*w, a class token plus an h x w grid of patch tokens
    with the aspect ratio of the input ``size`` (H, W) (both sides >= 2); else ``None``."""
    patches = tokens - 1
    if patches < 4:
        return None
    height, width = size
    guess = round(math.sqrt(patches * height / width))
    for h in (guess, guess - 1, guess + 1):
        if h >= 2 and patches % h == 0 and patches // h >= 2:
            w = patches // h
            if _same_aspect(h, w, height, width) and abs(h / w - height / width) <= 0.5 * (
                height / width
            ):
                return h, w
    return None


def layer_grid(
    shape: tuple[int, ...], size: tuple[int, int], token_counts: Iterable[int] = ()
) -> tuple[int, int] | None:
    """The (h, w) grid of a layer output of ``shape`` over an input of ``size`` (H, W), or
    ``None`` when it is not a map over the image:

    - (N, C, h, w) with h*w > 1 and about the input's aspect ratio (see :func:`_same_aspect`),
      and neither side equal to a token count of the model (``token_counts``: attention
      weights (N, heads, T, T) are not maps over the image);
    - (N, 1 + h*w, C) tokens of a vision transformer (:func:`token_grid`), C > 1.
    """
    if len(shape) == 4:
        h, w = shape[2], shape[3]
        counts = set(token_counts)
        if h * w > 1 and _same_aspect(h, w, *size) and h not in counts and w not in counts:
            return h, w
        return None
    if len(shape) == 3 and shape[2] > 1:
        return token_grid(shape[1], size)
    return None


def spatial_maps(output: torch.Tensor, size: tuple[int, int], layer: str) -> torch.Tensor:
    """A layer output as maps over the image (N, C, h, w): (N, C, h, w) maps as they are,
    tokens (N, 1 + h*w, C) with the class token dropped and the patch tokens laid out
    row-major on their h x w grid (pytorch-grad-cam's ``reshape_transform`` for ViT: the
    same numbers). ``size`` is the model input's (H, W). Anything else raises ``ValueError``
    saying which layers to pick."""
    grid = layer_grid(tuple(output.shape), size)
    if grid is None:
        raise ValueError(
            f"layer {layer!r} gives {tuple(output.shape)}, not a map over the "
            f"{size[0]}x{size[1]} image: a CNN layer gives (N, C, h, w), a vision "
            "transformer's token layer (N, 1 + h*w, C) (class token + patch grid). Pick such "
            "a layer (cv.layers(module, x) lists them; LayerInfo.spatial)."
        )
    if output.ndim == 4:
        return output
    h, w = grid
    return output[:, 1:, :].reshape(output.shape[0], h, w, output.shape[2]).permute(0, 3, 1, 2)


def activations(
    module: nn.Module, x: torch.Tensor, names: Sequence[str] | str
) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for input ``x`` (``(N, C, H, W)``), detached, on the model's
    device. Names are as in ``named_modules()``; ``"name@k"`` picks call ``k`` of a reused one."""
    check_module(module)
    check_input(x, module)
    wanted = check_names("names", names)
    for name in wanted:
        resolve_layer(module, name)
    view = eval_view(module)
    with torch.no_grad(), capture(view, wanted) as recorded, size_errors_explained(module, x):
        view(to_model_input(x, module))
    return {name: recorded.tensor(name).detach() for name in wanted}


def default_cam_layer(
    infos: Sequence[LayerInfo], module: nn.Module | None = None, x: torch.Tensor | None = None
) -> str:
    """The spatial layer (:attr:`LayerInfo.spatial`) that finished last in the forward pass:
    the end of the last convolutional stage of a classifier (``layer4`` in ResNet), where CAM
    methods look. Never a layer without maps over the image.

    When that is a token layer (a vision transformer) and ``module`` and its input ``x``
    (N, C, H, W) are given, the last token layer whose patch tokens still reach the logits
    (non-zero gradient of the top logit; one forward and backward pass): after the last
    attention block only the class token is read, so the layers there give all-zero maps.
    On torchvision's ViT this is the last block's ``ln_1``, pytorch-grad-cam's choice."""
    spatial = [info for info in infos if info.spatial and info.finished is not None]
    if not spatial:
        raise ValueError(
            "the model has no layer with maps over the image: neither (N, C, h, w) "
            "convolutional maps nor (N, 1 + h*w, C) vision-transformer tokens."
        )
    ordered = sorted(spatial, key=lambda info: info.finished or 0, reverse=True)
    if not ordered[0].tokens or module is None or x is None:
        return ordered[0].name
    tokens = [info.name for info in ordered if info.tokens]
    return _reaching_logits(module, x[:1], tokens) or ordered[0].name


def _reaching_logits(module: nn.Module, x: torch.Tensor, names: list[str]) -> str | None:
    """The first of the token layers ``names`` whose patch-token outputs have a non-zero
    gradient of the top logit (None when none has, or the probe fails). ``x``: model input
    (1, C, H, W)."""
    view = eval_view(module)
    try:
        with torch.enable_grad(), capture(view, names) as recorded:
            probe = to_model_input(x, module).detach().requires_grad_(True)
            logits = logits_of(view(probe))
        outputs = {name: recorded.output(name) for name in names}
        found = [
            (name, output)
            for name, output in outputs.items()
            if output is not None and output.requires_grad
        ]
        top = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
        gradients = torch.autograd.grad(top, [output for _, output in found], allow_unused=True)
    except Exception:  # a model this probe cannot differentiate: keep the plain rule
        return None
    for (name, _), gradient in zip(found, gradients, strict=True):
        if gradient is not None and bool(gradient[:, 1:].abs().sum() > 0):
            return name
    return None
