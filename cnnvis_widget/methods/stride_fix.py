"""Fixes for the grid that strided windows print on DeconvNet projections (Oramas, Wang &
Tuytelaars, ICLR 2019, "Visual Explanation by Interpretation").

A stride-s convolution sends its backward signal through a stride-s transposed convolution:
input pixels under more overlapping windows receive more, and the map shows a periodic grid.
Two fixes, chosen with ``how``:

- ``"nearest"`` (the authors' released code, ``simplenn_deconvolution_mod_brandNew.m``): the
  signal at the layer's output (h, w) is resized by nearest neighbour to the size the layer's
  output would have at stride 1, divided by the stride's area (s_h * s_w, so its sum is kept),
  and sent back through the same weights at stride 1. Applied to strided convolutions only;
  max-pools keep their switches, as in the authors' code.
- ``"coverage"`` (our earlier reading of the paper's text): the backward signal into every
  strided convolution's or max-pool's input is divided by the number of windows covering each
  pixel. A flat signal comes back exactly flat, also at the borders, where fewer windows
  cover a pixel and the division is by less.

Both work on the model's own modules through removable hooks (an eval view in practice:
the user's model is never hooked) and handle TensorFlow-"same" layers that pad inside their
``forward`` (EfficientNet's ``Conv2dStaticSamePadding``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input
from torch.utils.hooks import RemovableHandle

from .fixations.steps import pair

StrideFix = Literal["nearest", "coverage"]
STRIDE_FIXES: tuple[str, ...] = ("nearest", "coverage")


def _padding(module: nn.Module) -> tuple[int, int]:
    """The module's own symmetric padding (a string padding is "valid" for strided layers)."""
    padding = getattr(module, "padding", 0)
    return (0, 0) if isinstance(padding, str) else pair(padding)


def _static_padding(module: nn.Module) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zeros that ``module`` adds to its input before its window
    runs: TensorFlow-style "same" convolutions and pools (EfficientNet's
    ``Conv2dStaticSamePadding``) hold an ``nn.ZeroPad2d`` child ``static_padding`` applied
    inside ``forward``, so a hook sees the input before it. The windows cover the padded
    input; counted on the unpadded one, the last rows and columns looked uncovered (count 1
    against 2-3 inside) and a corrected projection piled up on the bottom/right border."""
    pad = getattr(module, "static_padding", None)
    if isinstance(pad, nn.ZeroPad2d | nn.ConstantPad2d):
        left, right, top, bottom = (int(p) for p in pad.padding)
        return left, right, top, bottom
    return 0, 0, 0, 0


class _DivideGradient(torch.autograd.Function):
    """Identity forward; backward divides the gradient by a fixed coverage map."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(coverage)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (coverage,) = ctx.saved_tensors
        return grad / coverage, None


def coverage(
    input_size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    like: torch.Tensor,
) -> torch.Tensor:
    """(1, 1, H, W): how many output positions of a KxK, stride-S window read each input pixel
    (at least 1)."""
    height, width = input_size
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    ones_out = torch.ones((1, 1, out_h, out_w), dtype=like.dtype, device=like.device)
    ones_kernel = torch.ones((1, 1, *kernel), dtype=like.dtype, device=like.device)
    counts = conv2d_input((1, 1, height, width), ones_kernel, ones_out, stride, padding, dilation)
    return counts.clamp(min=1)


def _divide_by_coverage(m: Any, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook of the "coverage" fix."""
    x = inputs[0]
    height, width = int(x.shape[-2]), int(x.shape[-1])
    left, right, top, bottom = _static_padding(m)
    counts = coverage(
        (height + top + bottom, width + left + right), pair(m.kernel_size), pair(m.stride),
        _padding(m), pair(m.dilation), x,
    )[..., top : top + height, left : left + width]  # fmt: skip
    return (_DivideGradient.apply(x, counts), *inputs[1:])


class _StrideOneBackward(torch.autograd.Function):
    """Forward: the convolution's output as it is. Backward: the signal resized by nearest
    neighbour to the stride-1 output size, divided by the stride's area, sent back through
    the weights at stride 1 and cropped to the unpadded input; nothing flows through the
    strided convolution's own backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, output: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        ctx.conv = conv
        ctx.input_shape = tuple(x.shape)
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        conv: nn.Conv2d = ctx.conv
        batch, channels, height, width = ctx.input_shape
        left, right, top, bottom = _static_padding(conv)
        padded = (height + top + bottom, width + left + right)
        kernel, dilation, padding = pair(conv.kernel_size), pair(conv.dilation), _padding(conv)
        stride = pair(conv.stride)
        size = tuple(padded[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) for i in range(2))
        # "nearest-exact" maps output pixel centres like MATLAB's imresize (the authors' code).
        resized = F.interpolate(grad, size=size, mode="nearest-exact") / (stride[0] * stride[1])
        weight = conv.weight.detach().to(grad.dtype)
        back = conv2d_input(
            (batch, channels, *padded), weight, resized, 1, padding, dilation, conv.groups
        )
        return back[..., top : top + height, left : left + width], None, None


def _send_back_at_stride_one(m: Any, inputs: tuple[Any, ...], output: Any) -> Any:
    """Forward hook of the "nearest" fix."""
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        return output
    return _StrideOneBackward.apply(inputs[0], output, m)


def _strided(module: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kinds) and max(pair(m.stride)) > 1]


@contextmanager
def stride_correction(module: nn.Module, how: StrideFix = "nearest") -> Iterator[int]:
    """Within the block, backward passes through ``module``'s strided layers use the fix
    ``how`` (module docstring). Yields the number of layers fixed; the hooks are removed on
    exit, also after an error."""
    if how not in STRIDE_FIXES:
        raise ValueError(f"stride_fix must be one of {STRIDE_FIXES}; got {how!r}.")
    handles: list[RemovableHandle] = []
    try:
        if how == "coverage":
            for layer in _strided(module, (nn.Conv2d, nn.MaxPool2d)):
                handles.append(layer.register_forward_pre_hook(_divide_by_coverage))
        else:
            for layer in _strided(module, (nn.Conv2d,)):
                handles.append(layer.register_forward_hook(_send_back_at_stride_one))
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
