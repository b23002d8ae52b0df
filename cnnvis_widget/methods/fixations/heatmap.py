"""CNN Fixations' heatmap: from ``(P, 2)`` long ``(y, x)`` input-pixel fixations to a
``(height, width)`` map scaled to max 1, as in the reference code (outlier removal within
0.1 x the image diagonal, unit impulses, OpenCV-style Gaussian blur, ``sigma`` in pixels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .steps import CHUNK


def remove_outliers(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The reference's outlier rule: keep a fixation only if more than 5% of all fixations
    (itself included) lie closer than 0.1 x the image diagonal. Where that would drop every
    fixation (a few dozen spread over the image, as ``conv_position="anchor"`` gives on
    EfficientNet-Lite0), all are kept: an empty map would explain nothing."""
    if points.shape[0] == 0:
        return points
    radius = 0.1 * math.hypot(height, width)
    coords = points.to(torch.float64)
    neighbours = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    step = max(1, CHUNK // max(1, points.shape[0]))
    for start in range(0, points.shape[0], step):
        distance = torch.cdist(coords[start : start + step], coords)
        neighbours[start : start + step] = (distance < radius).sum(1)
    kept = points[neighbours > 0.05 * points.shape[0]]
    return kept if kept.shape[0] else points


def fixation_map(
    points: torch.Tensor,
    height: int,
    width: int,
    sigma: float = 20.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(height, width)`` heatmap of ``(P, 2)`` ``(y, x)`` fixations: outlier removal, unit
    impulses, Gaussian blur (kernel side = the shorter image side made odd, reflected borders
    as in OpenCV, ``sigma`` clamped to a sixth of the kernel side) and scaling to max 1."""
    kept = remove_outliers(points, height, width)
    impulses = torch.zeros(height * width, dtype=dtype, device=points.device)
    if kept.shape[0]:
        flat = kept[:, 0] * width + kept[:, 1]
        impulses.index_add_(0, flat, torch.ones(flat.shape[0], dtype=dtype, device=points.device))
    heat = _gaussian_blur(impulses.view(height, width), sigma)
    peak = heat.max()
    return heat / peak if peak > 0 else heat


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """OpenCV-style GaussianBlur: kernel side = the shorter side made odd, BORDER_REFLECT_101."""
    side = min(image.shape)
    size = side if side % 2 else side - 1
    sigma = min(float(sigma), (size - 1) / 6)
    if sigma <= 0 or size < 3:
        return image
    offsets = torch.arange(size, dtype=image.dtype, device=image.device) - size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    pad = size // 2
    padded = F.pad(image[None, None], (pad, pad, pad, pad), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1))
    return blurred[0, 0]
