"""A unit's card: what one channel responds to over a data set, as one payload for the widget
(its top examples cropped at its receptive field with its activation over each crop, the
histogram of its per-image maxima, its mean response per class, and where the image in the
Explorer falls among the data set's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..dataset_pass import class_names, split_item
from ..encode import ndarray_payload
from ..layers import activations
from ..models import AnyPreprocess, ModelBundle, to_model_input
from ..protocol import ClassResponse, UnitCard, UnitExample
from ..receptive_field import ReceptiveField
from .result import Example, UnitAtlas

CROP_SIZE = 96
"""Side of each example's crop in the card, in screen pixels."""
TOP_CLASSES = 5
"""Classes shown as bars, by mean response."""
PAD_GREY = 128


def image_and_label(item: Any) -> tuple[Any, int]:
    """A data set item as (image, label): the label is the item's target when it is a class
    index, else -1 (unlabelled, or a target such as concept masks)."""
    image, target = split_item(item)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return image, int(target)
    return image, -1


def unit_card(
    bundle: ModelBundle,
    atlas: UnitAtlas,
    data: Any,
    layer: str,
    unit: int,
    current: torch.Tensor,
    field: ReceptiveField | None,
    crop_size: int = CROP_SIZE,
    preprocess: AnyPreprocess | None = None,
) -> UnitCard:
    """The card of channel ``unit`` of ``layer``. ``data`` is the data set the atlas was
    computed on (its items are loaded again for the crops, with ``preprocess``: the one the
    atlas was computed with, default the bundle's); ``current`` the model input
    (1, C, H, W) shown in the Explorer; ``field`` the layer's receptive field (None: the
    layer has no spatial map, each crop is the whole image)."""
    examples = atlas.top(layer, unit)
    stats = atlas.stats[layer]
    images, labels, seen = load_examples(bundle, data, examples, preprocess)
    batch = torch.cat([*images, current.to(images[0].dtype) if images else current])
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    raw = unit_outputs(bundle, batch, layer, unit)  # (n + 1, h, w)
    maps = upsampled(raw, size)  # (n + 1, H, W)
    scale = examples[0].value if examples and examples[0].value > 0 else 1.0
    names = class_names(data)
    rows: list[UnitExample] = []
    crops, crop_maps = [], []
    for example, label, rgb, unit_map in zip(examples, labels, seen, maps, strict=False):
        box = crop_box(field, example.y, example.x, size)
        crops.append(crop_image(rgb, box, crop_size))
        crop_maps.append(crop_map(unit_map, box, crop_size, scale))
        rows.append({
            "index": example.index, "label": names[label] if 0 <= label < len(names) else "",
            "value": example.value, "y": example.y, "x": example.x, "box": list(box),
        })  # fmt: skip
    edges, counts = stats.histogram.bins(unit)
    current_max = float(raw[-1].max())
    summary = atlas.summary(layer)
    return {
        "layer": layer,
        "unit": unit,
        "images": atlas.images,
        "complete": atlas.complete,
        "examples": rows,
        "crops": ndarray_payload(_stack(crops, (0, crop_size, crop_size, 3)), "uint8"),
        "crop_maps": ndarray_payload(_stack(crop_maps, (0, crop_size, crop_size)), "uint8"),
        "scale": float(scale),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "classes": _class_responses(summary["class_means"][:, unit], stats, names),
        "mean": float(summary["mean"][unit]),
        "max": float(summary["max"][unit]),
        "q": atlas.q,
        "quantile": float(summary["quantile"][unit]),
        "current": current_max,
        "current_below": fraction_below(edges, counts, current_max),
        "field_size": list(field.size) if field is not None else list(size),
        "field_method": field.method if field is not None else "whole image",
        "dissection": None,
    }


def load_examples(
    bundle: ModelBundle,
    data: Any,
    examples: Sequence[Example],
    preprocess: AnyPreprocess | None = None,
) -> tuple[list[torch.Tensor], list[int], list[np.ndarray]]:
    """The data set items of ``examples``, loaded again: per example its model input
    (1, C, H, W), its label (-1: unlabelled) and the preprocessed image as the model sees it
    (H, W, 3) uint8, which the crops are cut from; with ``preprocess`` (default: the
    bundle's)."""
    images, labels, seen = [], [], []
    for example in examples:
        image, label = image_and_label(data[example.index])
        x, view = (preprocess or bundle.preprocess).prepare(image)
        images.append(to_model_input(x, bundle.module))
        labels.append(label)
        seen.append(np.asarray(view.convert("RGB"), dtype=np.uint8))
    return images, labels, seen


def unit_outputs(bundle: ModelBundle, batch: torch.Tensor, layer: str, unit: int) -> torch.Tensor:
    """The unit's output for each input of ``batch`` (n, C, H, W): (n, h, w) float32 (a
    vector layer's value as a 1 x 1 map)."""
    channel = activations(bundle.module, batch, [layer])[layer].float().cpu()[:, unit]
    return channel[:, None, None] if channel.ndim == 1 else channel


def upsampled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, h, w) maps bilinearly resized to the input ``size``: (n, H, W)."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def crop_box(
    field: ReceptiveField | None, y: int, x: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in input pixels: the receptive field at (y, x), unclipped
    (the crop keeps the unit's centre in its middle); the whole image when the field covers
    it or the layer has no map."""
    height, width = size
    if field is None:
        return (0, 0, height, width)
    top, left, bottom, right = field.box(y, x, clip=False)
    if bottom - top >= height and right - left >= width:
        return (0, 0, height, width)
    return (top, left, bottom, right)


def _padded_slice(array: np.ndarray, box: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """``array[top:bottom, left:right]`` (first two axes), filled with ``fill`` outside."""
    top, left, bottom, right = box
    height, width = array.shape[:2]
    out = np.full((bottom - top, right - left, *array.shape[2:]), fill, dtype=array.dtype)
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(bottom, height), min(right, width)
    if src_bottom > src_top and src_right > src_left:
        out[src_top - top : src_bottom - top, src_left - left : src_right - left] = array[
            src_top:src_bottom, src_left:src_right
        ]
    return out


def crop_image(rgb: np.ndarray, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 cut to ``box`` (grey outside the image), resized to
    ``side`` x ``side``."""
    crop = Image.fromarray(_padded_slice(rgb, box, PAD_GREY))
    return np.asarray(crop.resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8)


def crop_map(
    unit_map: torch.Tensor, box: tuple[int, int, int, int], side: int, scale: float
) -> np.ndarray:
    """The map over the crop as uint8: 255 * value / scale, clipped to [0, 255]."""
    crop = torch.from_numpy(_padded_slice(unit_map.numpy(), box, 0.0))
    resized = F.interpolate(crop[None, None], size=(side, side), mode="bilinear")[0, 0]
    return (resized / scale * 255).clamp(0, 255).round().to(torch.uint8).numpy()


def _stack(arrays: Sequence[np.ndarray], empty: tuple[int, ...]) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros(empty, dtype=np.uint8)


def _class_responses(
    means: torch.Tensor, stats: Any, names: Sequence[str], top: int = TOP_CLASSES
) -> list[ClassResponse]:
    """The ``top`` classes by mean response of the unit (classes without images left out)."""
    counts = stats.classes.counts
    order = [int(i) for i in torch.argsort(means.nan_to_num(float("-inf")), descending=True)]
    rows: list[ClassResponse] = []
    for label in order:
        if int(counts[label]) == 0:
            continue
        name = names[label] if label < len(names) else f"class {label}"
        rows.append({"name": name, "mean": float(means[label]), "images": int(counts[label])})
        if len(rows) == top:
            break
    return rows


def fraction_below(edges: torch.Tensor, counts: torch.Tensor, value: float) -> float:
    """The fraction of images whose value is below ``value``, from a histogram (``edges``
    (n + 1,), ``counts`` (n,)), linear inside the bin that holds ``value``."""
    total = int(counts.sum())
    if total == 0:
        return float("nan")
    below = 0.0
    for low, high, count in zip(
        edges[:-1].tolist(), edges[1:].tolist(), counts.tolist(), strict=True
    ):
        if value >= high:
            below += count
        elif value > low:
            below += count * (value - low) / (high - low)
    return below / total
