"""Network Dissection's paper upsampling: a unit's map resized to the labels' resolution with
each map position anchored at the centre of its receptive field (Bau et al. 2017, section
2.2), rather than spread evenly over the image as a plain bilinear resize does (NetDissect-
Lite's default; its receptive-field code is commented out). Between anchors the values are
interpolated bilinearly; past the first and last anchors they hold the border value."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..receptive_field import ReceptiveField


@dataclass(frozen=True)
class FieldAnchors:
    """Along each axis (y, x), map position ``i``'s receptive-field centre is at input pixel
    coordinate ``first + i * jump`` (pixel centres at integers); ``input_size`` (H, W) is the
    model input those coordinates belong to."""

    first: tuple[float, float]
    jump: tuple[float, float]
    input_size: tuple[int, int]

    @classmethod
    def of(cls, field: ReceptiveField) -> FieldAnchors:
        """The centres of ``field``'s boxes: ``start + i * jump + (size - 1) / 2``."""
        first = tuple(float(field.start[a]) + (field.size[a] - 1) / 2 for a in (0, 1))
        jump = (float(field.jump[0]), float(field.jump[1]))
        return cls((first[0], first[1]), jump, field.input_size)

    def grid(self, map_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """(1, H', W', 2) sampling grid for ``F.grid_sample(..., align_corners=True)``: label
        pixel ``j`` of ``size`` (H', W') covers input coordinate ``(j + 0.5) * H / H' - 0.5``,
        which lies at fractional map index ``(coordinate - first) / jump``."""
        axes = []
        for a in (0, 1):
            j = torch.arange(size[a], dtype=torch.float64)
            coordinate = (j + 0.5) * self.input_size[a] / size[a] - 0.5
            index = (coordinate - self.first[a]) / self.jump[a]
            positions = map_size[a]
            axes.append(index * 2 / (positions - 1) - 1 if positions > 1 else index * 0)
        gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
        return torch.stack([gx, gy], dim=-1).float()[None]


def anchored_resize(
    maps: torch.Tensor, anchors: FieldAnchors, size: tuple[int, int]
) -> torch.Tensor:
    """(B, C, h, w) maps resized to ``size`` (H', W'), each position at its field's centre."""
    grid = anchors.grid((int(maps.shape[-2]), int(maps.shape[-1])), size).to(maps.device)
    grid = grid.expand(maps.shape[0], -1, -1, -1)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=True)
