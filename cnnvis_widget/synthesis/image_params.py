"""Image parameterizations (Olah et al. 2017): what the optimizer actually changes.

A parameterization owns leaf tensors (``params``) and renders them as a batch of images
(K, C, H, W) in [0, 1] (C = 3 for RGB models, 1 for greyscale ones, any count):

- ``fourier``: a half spectrum scaled by 1/f (natural-image statistics), inverse real FFT,
  optionally decorrelated colour (3 channels only), then a sigmoid.
- ``pixel``: one value per pixel and colour, optionally decorrelated, then a sigmoid.
- ``raw``: the [0, 1] pixels themselves, clamped by the method after each step (Simonyan,
  Yosinski, pre-images, attacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

ParamKind = Literal["fourier", "pixel", "raw"]

# A square root of ImageNet's colour covariance (Lucid), columns normalized to unit max norm.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_DECORRELATION = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
FFT_MAGIC = 4.0  # Lucid's divisor against saturation after the inverse FFT


def spectrum_scale(height: int, width: int, decay: float = 1.0) -> torch.Tensor:
    """1 / max(f, 1/max(H, W))^decay over the rfft2 frequency grid (H, W//2 + 1), f in cycles
    per pixel."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(freq, min=1.0 / max(height, width)) ** decay


def decorrelate_colors(z: torch.Tensor) -> torch.Tensor:
    """Apply the colour decorrelation matrix per pixel: (K, 3, H, W) -> (K, 3, H, W)."""
    matrix = COLOR_DECORRELATION.to(dtype=z.dtype, device=z.device)
    return torch.einsum("ij,kjhw->kihw", matrix, z)


@dataclass
class ImageParam:
    """Leaf tensors and how to render them as [0, 1] images (K, C, H, W)."""

    kind: ParamKind
    params: list[torch.Tensor]
    size: tuple[int, int]
    decorrelate: bool = True
    decay: float = 1.0

    def __call__(self) -> torch.Tensor:
        height, width = self.size
        tensor = self.params[0]
        if self.kind == "raw":
            return tensor
        if self.kind == "fourier":
            scale = spectrum_scale(height, width + (width % 2), self.decay).to(tensor.device)
            spectrum = torch.view_as_complex(tensor) * scale.to(tensor.dtype)
            z = torch.fft.irfft2(spectrum, s=(height, width + (width % 2)), norm="ortho")
            z = z[..., :height, :width] / FFT_MAGIC
        else:
            z = tensor
        if self.decorrelate:
            z = decorrelate_colors(z)
        return torch.sigmoid(z)


def make_param(
    kind: ParamKind,
    count: int,
    size: tuple[int, int],
    *,
    generator: torch.Generator,
    device: torch.device,
    decorrelate: bool = True,
    sd: float = 0.01,
    init: torch.Tensor | None = None,
    channels: int = 3,
) -> ImageParam:
    """A new parameterization of ``count`` images of ``size`` (H, W) with ``channels``
    channels (colour decorrelation applies to 3 only: it is ImageNet's RGB covariance).

    ``fourier`` / ``pixel`` start from N(0, sd^2) noise (Lucid); ``raw`` starts from ``init``
    ([0, 1] images (K, C, H, W)) or mid-grey.
    """
    height, width = size
    if kind == "fourier":
        shape = (count, channels, height, (width + (width % 2)) // 2 + 1, 2)
        tensor = torch.randn(shape, generator=generator, device=generator.device) * sd
    elif kind == "pixel":
        tensor = (
            torch.randn(
                (count, channels, height, width), generator=generator, device=generator.device
            )
            * sd
        )
    elif kind == "raw":
        tensor = (
            init.detach().clone()
            if init is not None
            else torch.full((count, channels, height, width), 0.5, device=device)
        )
    else:
        raise ValueError(f"param must be 'fourier', 'pixel' or 'raw'; got {kind!r}.")
    tensor = tensor.to(device).requires_grad_(True)
    decorrelated = decorrelate and kind != "raw" and channels == 3
    return ImageParam(kind, [tensor], size, decorrelate=decorrelated)


def restore_param(template: ImageParam, state: list[torch.Tensor]) -> ImageParam:
    """``template``'s parameterization with its tensors replaced by ``state`` (resume)."""
    tensors = [t.detach().clone().requires_grad_(True) for t in state]
    return ImageParam(template.kind, tensors, template.size, template.decorrelate, template.decay)
