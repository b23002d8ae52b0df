"""Image priors: penalties added to the objective and per-step projections.

Penalties take images (K, 3, H, W) and return one value per image (K,). The per-step
operations of Yosinski et al. 2015 act in place on a raw image after each update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def alpha_norm(images: torch.Tensor, alpha: float = 6.0, scale: float = 1.0) -> torch.Tensor:
    """Mean over pixels of (||x_p|| / scale)^alpha, with ||x_p|| the RGB norm of pixel p
    (Mahendran & Vedaldi: per-pixel colour norm, not per scalar). (K,)"""
    norms = images.pow(2).sum(dim=1).clamp_min(1e-20).sqrt()
    return (norms / scale).pow(alpha).mean(dim=(1, 2))


def total_variation(images: torch.Tensor, beta: float = 2.0, scale: float = 1.0) -> torch.Tensor:
    """Mean over pixels of (||grad x_p|| / scale)^beta with forward differences and a
    replicated last row/column (difference 0 there), as the pre-image code. (K,)"""
    dy = F.pad(images[:, :, 1:, :] - images[:, :, :-1, :], (0, 0, 0, 1))
    dx = F.pad(images[:, :, :, 1:] - images[:, :, :, :-1], (0, 1, 0, 0))
    squared = (dx.pow(2) + dy.pow(2)).sum(dim=1)
    if beta == 2.0:
        return (squared / scale**2).mean(dim=(1, 2))
    return (squared.clamp_min(1e-20).sqrt() / scale).pow(beta).mean(dim=(1, 2))


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel (reflect padding, radius 3 sigma)."""
    if sigma <= 0:
        return images
    radius = max(1, int(3 * sigma + 0.5))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    horizontal = F.conv2d(
        padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels
    )
    padded = F.pad(horizontal, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(padded, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


@dataclass(frozen=True)
class YosinskiPreset:
    """One row of Yosinski et al. 2015, Table 1 (decay, blur every / width, norm and
    contribution percentile clipping, iterations; learning rate as the paper's in [0, 255]
    Caffe units, ``progress`` for the gradient-norm policy)."""

    decay: float
    blur_every: int
    blur_width: float
    norm_percentile: float
    contribution_percentile: float
    steps: int
    lr: float
    progress: bool = False
    desired: float = 2.0


YOSINSKI_PRESETS = {
    1: YosinskiPreset(0.0, 4, 0.5, 50, 0, 500, 100.0, progress=True),
    2: YosinskiPreset(0.3, 0, 0.0, 20, 0, 750, 100.0),
    3: YosinskiPreset(1e-4, 4, 1.0, 0, 0, 1000, 100.0),
    4: YosinskiPreset(0.0, 4, 0.5, 0, 90, 1000, 1e8, progress=True),
}
"""Table 1 rows; row 3 is the one "used for most images"."""


def yosinski_step(
    centred: torch.Tensor, gradient: torch.Tensor, preset: YosinskiPreset, step: int
) -> None:
    """Yosinski's r_theta, in place, on mean-subtracted images (K, 3, H, W): decay, blur every
    ``blur_every`` steps, zero pixels below the norm / contribution percentiles."""
    with torch.no_grad():
        if preset.decay:
            centred.mul_(1 - preset.decay)
        if preset.blur_every and step % preset.blur_every == 0:
            centred.copy_(gaussian_blur(centred, preset.blur_width))
        if preset.norm_percentile:
            norms = centred.norm(dim=1, keepdim=True)
            cut = torch.quantile(norms.flatten(1), preset.norm_percentile / 100, dim=1)
            centred.mul_((norms >= cut.view(-1, 1, 1, 1)).to(centred.dtype))
        if preset.contribution_percentile:
            contribution = (-centred * gradient).sum(dim=1, keepdim=True).abs()
            cut = torch.quantile(
                contribution.flatten(1), preset.contribution_percentile / 100, dim=1
            )
            centred.mul_((contribution >= cut.view(-1, 1, 1, 1)).to(centred.dtype))
