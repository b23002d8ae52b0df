"""A sheet of units' top dataset examples as one PIL image, for notebooks and reports: one row
per unit, its top-k examples cropped at the unit's receptive field around its maximum (the
crops of the widget's unit card, :mod:`cnnvis_widget.atlas.card`), the unit's activation
over each crop, and plain-text labels (unit number; class name and value per crop)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..checks import check_flag, check_int, check_number
from ..dataset_pass import class_names
from ..layers import activations
from ..models import ModelBundle
from ..receptive_field import ReceptiveField, receptive_field
from .card import (
    CROP_SIZE,
    crop_box,
    crop_image,
    crop_map,
    load_examples,
    unit_outputs,
    upsampled,
)
from .result import UnitAtlas

PAD = 4
"""Pixels between crops, rows and the sheet's border."""
LINE = 13
"""Height of one line of text, pixels."""
LABEL_WIDTH = 64
"""Width of the column of row labels ("unit 12"), pixels."""
HEADER = LINE + PAD
"""Height of the title line (layer, images), pixels."""
CAPTION = 2 * LINE
"""Height of each crop's caption (class name; value) under it, pixels."""
MIN_CROP_SIZE = 32
FONT_SIZE = 11
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MUTED = (90, 90, 90)


def sheet_size(rows: int, columns: int, crop_size: int = CROP_SIZE) -> tuple[int, int]:
    """(width, height) of a sheet of ``rows`` units with ``columns`` examples each."""
    return (
        PAD + LABEL_WIDTH + columns * (crop_size + PAD),
        PAD + HEADER + rows * (crop_size + CAPTION + PAD),
    )


def crop_origin(row: int, column: int, crop_size: int = CROP_SIZE) -> tuple[int, int]:
    """(left, top) of the crop of example ``column`` of unit ``row`` in the sheet."""
    return (
        PAD + LABEL_WIDTH + column * (crop_size + PAD),
        PAD + HEADER + row * (crop_size + CAPTION + PAD),
    )


def examples_sheet(
    bundle: ModelBundle,
    atlas: UnitAtlas,
    data: Any,
    layer: str,
    units: int | Sequence[int],
    *,
    crop_size: int = CROP_SIZE,
    overlay: bool = True,
    colormap: str = "viridis",
    opacity: float = 0.45,
) -> Image.Image:
    """One row per unit of ``units`` (channels of ``layer``): its top-k examples from
    ``atlas`` (best first), each cropped at the unit's receptive field around its maximum
    and resized to ``crop_size`` pixels, as the Explorer's unit card shows them. With
    ``overlay``, the unit's activation (upsampled bilinearly, divided by the row's top value,
    so 1 = the unit's best example's maximum) is drawn over each crop in ``colormap`` (a
    matplotlib colormap name) at ``opacity``. Labels: the unit per row, the class name and
    the unit's value under each crop. ``data`` is the data set the atlas was computed on
    (its items are loaded again); a model or data set whose fingerprint differs from the
    atlas's is refused.

    Returns an RGB image of :func:`sheet_size` (len(units), atlas.k, crop_size); a unit with
    fewer examples than k (a small data set) leaves its last cells empty.
    """
    if not isinstance(atlas, UnitAtlas):
        raise TypeError(
            f"atlas must be a cv.UnitAtlas (from cv.unit_atlas or cv.UnitAtlas.load); got "
            f"{type(atlas).__name__}."
        )
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (str); got {type(layer).__name__}.")
    if layer not in atlas.stats:
        raise ValueError(
            f"the atlas has no layer {layer!r}; it has {atlas.layers}. Compute one with "
            f"cv.unit_atlas(bundle, data, layers=[{layer!r}])."
        )
    chosen = _units(units, atlas.stats[layer].units, layer)
    crop_size = check_int("crop_size", crop_size, low=MIN_CROP_SIZE)
    check_flag("overlay", overlay)
    opacity = check_number("opacity", opacity, low=0, high=1)
    lut = _lut(colormap) if overlay else None
    _check_provenance(bundle, atlas, data)

    names = class_names(data)
    font = _font()
    width, height = sheet_size(len(chosen), atlas.k, crop_size)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    done = "" if atlas.complete else f" (stopped after {atlas.images:,})"
    title = f"{layer}: top {atlas.k} of {atlas.total:,} images{done}"
    draw.text((PAD, PAD), title, fill=TEXT, font=font)
    fields: dict[tuple[int, ...], ReceptiveField | None] = {}
    for row, unit in enumerate(chosen):
        top = crop_origin(row, 0, crop_size)[1]
        draw.text((PAD, top + crop_size // 2 - LINE // 2), f"unit {unit}", fill=TEXT, font=font)
        examples = atlas.top(layer, unit)
        if not examples:
            continue
        images, labels, seen = load_examples(bundle, data, examples)
        batch = torch.cat(images)
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        raw = unit_outputs(bundle, batch, layer, unit)  # (n, h, w)
        maps = upsampled(raw, size)
        field = _field(bundle, layer, batch[:1], fields)
        scale = examples[0].value if examples[0].value > 0 else 1.0
        for column, (example, label, rgb, unit_map) in enumerate(
            zip(examples, labels, seen, maps, strict=True)
        ):
            box = crop_box(field, example.y, example.x, size)
            crop = crop_image(rgb, box, crop_size)
            if lut is not None:
                crop = _blend(crop, lut[crop_map(unit_map, box, crop_size, scale)], opacity)
            x, y = crop_origin(row, column, crop_size)
            sheet.paste(Image.fromarray(crop), (x, y))
            name = names[label] if 0 <= label < len(names) else ""
            if name:
                text = _fit(draw, name, font, crop_size)
                draw.text((x, y + crop_size + 1), text, fill=TEXT, font=font)
            value = f"{format_value(example.value)}  #{example.index}"
            draw.text((x, y + crop_size + 1 + LINE), value, fill=MUTED, font=font)
    return sheet


def format_value(value: float) -> str:
    """A unit's value as the widget writes it: 3 decimals below 1, 2 above, exponent for
    the very small and very large."""
    size = abs(value)
    if size != 0 and (size < 1e-3 or size >= 1e4):
        return f"{value:.2e}"
    return f"{value:.3f}" if size < 1 else f"{value:.2f}"


def _units(units: object, count: int, layer: str) -> list[int]:
    """``units`` (an int or a sequence of ints) as a list, each a channel of the layer."""
    items: Any = [units] if isinstance(units, numbers.Integral) else units
    if not isinstance(items, Sequence | np.ndarray | torch.Tensor) or isinstance(items, str):
        raise TypeError(f"units must be a unit number or a list of them; got {units!r}.")
    chosen = [check_int("each unit", u) for u in items]
    if not chosen:
        raise ValueError("units is empty: pass the unit numbers to show, e.g. [0, 5, 11].")
    bad = [u for u in chosen if not 0 <= u < count]
    if bad:
        raise ValueError(f"{layer} has units 0..{count - 1}; got {bad}.")
    return chosen


def _check_provenance(bundle: ModelBundle, atlas: UnitAtlas, data: Any) -> None:
    """The atlas was computed with this model on this data set (fingerprints)."""
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__") or len(data) == 0:
        raise TypeError(
            "data must be the non-empty map-style data set the atlas was computed on "
            "(len() and data[i] giving an image or (image, label))."
        )
    atlas.check_source(bundle.module, data, bundle.preprocess)


def _field(
    bundle: ModelBundle,
    layer: str,
    x: torch.Tensor,
    cache: dict[tuple[int, ...], ReceptiveField | None],
) -> ReceptiveField | None:
    """The layer's receptive field for inputs shaped like ``x``; None for a layer without a
    spatial map (each crop is then the whole image)."""
    key = tuple(x.shape)
    if key not in cache:
        output = activations(bundle.module, x, [layer])[layer]
        cache[key] = receptive_field(bundle.module, layer, x) if output.ndim == 4 else None
    return cache[key]


def _lut(colormap: str) -> np.ndarray:
    """``colormap`` as a (256, 3) uint8 lookup table (entry i: the colour at i / 255)."""
    if not isinstance(colormap, str):
        raise TypeError(f"colormap must be a colormap name (str); got {colormap!r}.")
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - matplotlib is in the dev environment
        raise ImportError(
            "examples_sheet(overlay=True) draws the activation with a matplotlib colormap: "
            "pip install matplotlib, or pass overlay=False."
        ) from error
    name = {"gray": "gray", "grey": "gray", "jet": "turbo"}.get(colormap, colormap)
    if name not in matplotlib.colormaps:
        raise ValueError(
            f"unknown colormap {colormap!r}; use a matplotlib colormap such as 'viridis', "
            "'magma', 'inferno', 'plasma', 'turbo', 'cividis' or 'gray'."
        )
    table = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
    return np.round(table * 255).astype(np.uint8)


def _blend(crop: np.ndarray, colour: np.ndarray, opacity: float) -> np.ndarray:
    """The coloured map drawn over the crop at ``opacity``, as the widget's canvas does."""
    mixed = (1 - opacity) * crop.astype(np.float32) + opacity * colour.astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text`` shortened with '..' to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."
