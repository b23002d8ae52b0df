"""The dissection part of a unit's card: its label, and its top images of the concept data set
with its segmentation (where its upsampled map is above its threshold), as one payload."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..atlas.card import load_examples, unit_outputs, upsampled
from ..encode import ndarray_payload
from ..models import ModelBundle
from ..preprocess import WholeImage
from ..protocol import UnitDissection, UnitTag
from .report import DissectionResult, UnitLabel

SEGMENT_SIZE = 96
"""Side of each segmented example in the card, pixels."""


def unit_tag(row: UnitLabel) -> UnitTag:
    return {
        "concept": row.concept,
        "category": row.category,
        "iou": row.iou,
        "detector": row.detector,
    }


def unit_tags(result: DissectionResult, layer: str) -> list[UnitTag]:
    """Every unit of ``layer``'s label, in unit order (the filter grid's tiles)."""
    return [unit_tag(row) for row in result.units(layer)]


def unit_segments(
    bundle: ModelBundle, result: DissectionResult, layer: str, unit: int, side: int = SEGMENT_SIZE
) -> UnitDissection:
    """Channel ``unit`` of ``layer``: its label, and its top images of the dissection's data
    (the first pass's top-k) with its mask (upsampled map > threshold), resized to ``side``."""
    if result.atlas is None or result.data is None:
        raise ValueError(
            "this dissection has no top images or data attached; use the result of cv.dissect."
        )
    row = result.units(layer)[unit]
    examples = result.atlas.top(layer, unit)
    inputs, _, seen = load_examples(bundle, result.data, examples, WholeImage(bundle.preprocess))
    maps = torch.zeros(0)
    if inputs:
        raw = unit_outputs(bundle, torch.cat(inputs), layer, unit)
        maps = upsampled(raw, (int(inputs[0].shape[-2]), int(inputs[0].shape[-1])))
    images, masks = [], []
    for rgb, unit_map in zip(seen, maps, strict=False):
        images.append(
            np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BILINEAR))
        )
        mask = Image.fromarray((unit_map > row.threshold).numpy().astype(np.uint8))
        masks.append(np.asarray(mask.resize((side, side), Image.Resampling.NEAREST)))
    empty = np.zeros((0, side, side, 3), np.uint8)
    return {
        **unit_tag(row),
        "threshold": row.threshold,
        "indices": [example.index for example in examples],
        "images": ndarray_payload(np.stack(images) if images else empty, "uint8"),
        "masks": ndarray_payload(np.stack(masks) if masks else empty[..., 0], "uint8"),
    }
