"""Network Dissection end to end on the offline concept set: a unit that is a smoothed map of the
colour "red" is labelled red, with IoU above 0.8 and below 0.1 for every other colour."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.datasets.concept_colors import COLOR_TERMS, name_colors

SIZE = 128  # images; label maps are 64 x 64, pixel 2i + 1 of each row and column


class RedUnit(nn.Module):
    """Unit 0 of ``unit``: each pixel's "red" (as the concept set's colour namer calls it),
    smoothed over 3 x 3 and sampled where the label maps sample the image; unit 1: the same
    for "green"."""

    def __init__(self) -> None:
        super().__init__()
        self.unit = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        named = np.stack([name_colors(image) for image in rgb])
        colours = [named == COLOR_TERMS.index(term) for term in ("red", "green")]
        mask = torch.from_numpy(np.stack(colours, axis=1)).float()
        smooth = F.avg_pool2d(mask, 3, stride=1, padding=1, count_include_pad=False)
        # a touch of wider context breaks the ties of large uniform regions
        context = F.avg_pool2d(mask, 9, stride=1, padding=4, count_include_pad=False)
        maps = (0.5 * mask + 0.5 * smooth + 0.01 * context)[:, :, 1::2, 1::2]
        return self.unit(maps).mean(dim=(2, 3))


def test_a_red_unit_is_dissected_as_red():
    data = cv.datasets.concepts(per_concept=2, whole_per_concept=0, size=SIZE, progress=False)
    table = data.concepts
    red = table.index_of("red", "color")
    # q = the share of red pixels, so the unit's top-q positions can be exactly the red ones;
    # the Preprocess resizes and center-crops by default: dissect must show the image whole
    share = float(data.pixel_counts()[red]) / (len(data) * (SIZE // 2) ** 2)
    preprocess = cv.Preprocess(input_size=(SIZE, SIZE), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    result = cv.dissect(RedUnit(), data, ["unit"], q=share, progress=False, preprocess=preprocess)
    iou = result.iou("unit")[0]
    assert float(iou[red]) > 0.8, float(iou[red])
    others = [c.index for c in table.concepts if c.category == "color" and c.index != red]
    assert float(iou[others].max()) < 0.1
    label = result.units("unit")[0]
    assert (label.concept, label.category, label.detector) == ("red", "color", True)
    assert float(result.iou("unit")[1, red]) < 0.1  # the green unit is not a red detector
