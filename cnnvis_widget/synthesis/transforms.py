"""Transformation robustness (Olah et al. 2017): a fresh random view of each image every step.

Lucid's chain (pad 12 with grey, jitter 8, scale 0.90..1.10, rotate -10..10 degrees, jitter 4,
upsample to the model's size) is applied here as one affine resampling per image: pad, then a
single ``grid_sample`` whose matrix composes both jitters, the scale and the rotation, written
straight at the output size. One resampling instead of four keeps the image sharper and
costs one pass over the pixels; every image of a batch gets its own draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SCALES = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.90, 0.92, ..., 1.10
ANGLES = tuple(range(-10, 11)) + (0,) * 5  # degrees; Lucid adds five extra zeros


@dataclass(frozen=True)
class Robustness:
    """Random view parameters. ``pad`` in pixels (filled with ``pad_value``), ``jitter`` the
    two maximal integer translations in pixels, ``scales`` / ``angles`` (degrees) drawn
    uniformly; ``out_size`` the side the model sees (images smaller than it are upsampled)."""

    pad: int = 12
    pad_value: float = 0.5
    jitter: tuple[int, int] = (8, 4)
    scales: tuple[float, ...] = SCALES
    angles: tuple[float, ...] = ANGLES
    out_size: int | None = 224

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(K, C, H, W) in [0, 1] -> (K, C, S, S') views, differentiable."""
        count = images.shape[0]
        padded = F.pad(images, [self.pad] * 4, value=self.pad_value) if self.pad else images
        ph, pw = padded.shape[-2:]
        # The chain's crops shrink the canvas by the jitters; keep that view size.
        vh, vw = ph - sum(self.jitter), pw - sum(self.jitter)
        out_h, out_w = vh, vw
        if self.out_size is not None and min(vh, vw) < self.out_size:
            factor = self.out_size / min(vh, vw)
            out_h, out_w = round(vh * factor), round(vw * factor)
        device = images.device
        shift = torch.zeros(count, 2, device=device)
        for amount in self.jitter:
            if amount:
                shift += torch.randint(
                    -amount, amount + 1, (count, 2), generator=generator, device=generator.device
                ).to(device)
        scale = _choose(self.scales, count, generator).to(device)
        angle = _choose(self.angles, count, generator).to(device) * (math.pi / 180)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # affine_grid works in [-1, 1] units of the input canvas; the view covers vw/pw of it.
        sx, sy = vw / pw, vh / ph
        theta = torch.zeros(count, 2, 3, device=device, dtype=images.dtype)
        theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin * sy * ph / pw
        theta[:, 1, 0], theta[:, 1, 1] = sin * sx * pw / ph, cos * sy
        theta[:, 0, 2] = shift[:, 0] * 2 / pw
        theta[:, 1, 2] = shift[:, 1] * 2 / ph
        grid = F.affine_grid(theta, [count, images.shape[1], out_h, out_w], align_corners=False)
        return F.grid_sample(
            padded, grid, mode="bilinear", padding_mode="border", align_corners=False
        )


def _choose(values: tuple[float, ...], count: int, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(len(values), (count,), generator=generator, device=generator.device)
    return torch.tensor(values, device=generator.device)[index]
