"""A dissection as one self-contained HTML file, like NetDissect's report, readable without a
kernel: a header (model, data set, q, IoU threshold), per layer the unique detectors by category
as an inline SVG bar chart and a table, and per unit its concept, IoU, the concept's pixels and
its top images with its segmentation (outside the unit's region dimmed, the region outlined).
Images are inlined as base64 PNG, the style is inline; no JavaScript, no external URL. Every
piece of text from the data or the model is escaped. :func:`plot_summary` draws the same counts
with matplotlib (optional)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from torch import nn

from ..atlas import model_fingerprint
from ..dataset_pass import model_and_preprocess
from ..encode import decode_payload
from ..models import AnyPreprocess, ModelBundle
from .card import SEGMENT_SIZE, unit_segments
from .report import DissectionResult, UnitLabel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TOP_IMAGES = 5
"""Top images shown per unit (at most the dissection's top_k)."""
MIN_CONCEPT_PIXELS = 1000
"""Concepts with fewer positive pixels over the data set are flagged: their IoU rests on few
pixels and is unreliable."""
DIM = 0.3
"""Brightness kept outside the unit's region."""
OUTLINE = (255, 214, 0)
"""Colour of the region's outline."""
COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f")
"""Bar colour of each category, in the table's category order (cycled)."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.detector td.unit { font-weight: bold; }
.small { color: #b00; font-size: 0.85em; }
.note { color: #555; font-style: italic; }
.images img { margin: 0 2px; border: 1px solid #ddd; image-rendering: auto; }
section.layer { border-top: 2px solid #888; margin-top: 2em; }
"""


def esc(text: Any) -> str:
    """``text`` as HTML text (also safe in attribute values)."""
    return html.escape(str(text), quote=True)


def report_html(
    result: DissectionResult,
    model: ModelBundle | nn.Module | None = None,
    *,
    preprocess: AnyPreprocess | None = None,
    units_per_layer: int | None = None,
    top: int = TOP_IMAGES,
    side: int = SEGMENT_SIZE,
    min_pixels: int = MIN_CONCEPT_PIXELS,
) -> str:
    """The report of ``result`` as one HTML document (a string). With ``model`` (the model the
    dissection ran on: a ModelBundle, or a module with ``preprocess`` as given to cv.dissect),
    each unit shows its ``top`` images of the concept data set with its segmentation, ``side``
    pixels square; without it, no images. Units: detectors first, by IoU, then the others by
    IoU; the first ``units_per_layer`` of each layer (None: all). Concepts with fewer than
    ``min_pixels`` positive pixels are flagged."""
    if units_per_layer is not None and units_per_layer < 0:
        raise ValueError(f"units_per_layer must be None or >= 0; got {units_per_layer}.")
    if top < 0 or side < 1:
        raise ValueError(f"top must be >= 0 and side >= 1; got top={top}, side={side}.")
    bundle = _bundle(result, model, preprocess)
    summary = result.summary()
    scale = max([1, *(n for counts in summary.values() for n in counts.values())])
    name = bundle.name if bundle is not None else getattr(model, "name", None)
    title = f"Network Dissection of {name}" if name else "Network Dissection"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        _header(result, name, bundle is not None, min_pixels),
        _overview(result, summary),
    ]
    for layer in result.layers:
        parts.append(
            _layer_section(
                result, layer, summary[layer], scale, bundle, units_per_layer, top, side, min_pixels
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(result: DissectionResult, path: str | Path, *args: Any, **kwargs: Any) -> Path:
    """:func:`report_html` written to ``path`` (UTF-8); returns the path."""
    target = Path(path)
    target.write_text(report_html(result, *args, **kwargs), encoding="utf-8")
    return target


def _bundle(
    result: DissectionResult,
    model: ModelBundle | nn.Module | None,
    preprocess: AnyPreprocess | None,
) -> ModelBundle | None:
    if model is None:
        return None
    module, prepare = model_and_preprocess(model, preprocess)
    if isinstance(model, ModelBundle):
        bundle = model if preprocess is None else replace(model, preprocess=prepare)
    else:
        bundle = ModelBundle(module, prepare, [], name=type(module).__name__)
    if result.atlas is None or result.data is None:
        raise ValueError(
            "this dissection has no top images or data attached, so the report cannot show "
            "the units' segmentations; use the result of cv.dissect, or pass model=None."
        )
    if result.atlas.model_fingerprint != model_fingerprint(module):
        raise ValueError(
            "this dissection was computed on another model (or other weights); pass the model "
            "cv.dissect ran on."
        )
    return bundle


def _header(result: DissectionResult, name: str | None, images: bool, min_pixels: int) -> str:
    rows: list[tuple[str, str]] = [("model", esc(name) if name else "not given")]
    size = f"{result.total} images"
    if not result.complete:
        size += f" ({result.images} tallied: the dissection is incomplete)"
    rows += [
        ("concept data set", esc(size)),
        ("concepts", esc(f"{len(result.table.concepts)} in {len(result.table.categories)} "
                         f"categories ({', '.join(result.table.categories)})")),
        ("q (top quantile of each unit's activations)", esc(f"{result.q:g}")),
        ("IoU threshold (detector above)", esc(f"{result.iou_threshold:g}")),
    ]  # fmt: skip
    unions = {part.tally.union for part in result.layers.values()}
    union = getattr(result, "union", None) or (unions.pop() if len(unions) == 1 else None)
    for label, value in (("union rule", union), ("upsampling", getattr(result, "upsample", None))):
        if value is not None:
            rows.append((label, esc(value)))
    rows.append(("small concepts", esc(f"flagged below {min_pixels} positive pixels")))
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    note = (
        ""
        if images
        else '<p class="note">No images: the report was made without the model '
        "(to_html(path, model=...) shows each unit's top images with its segmentation).</p>"
    )
    return f"<table>{table}</table>{note}"


def _overview(result: DissectionResult, summary: dict[str, dict[str, int]]) -> str:
    categories = result.table.categories
    head = "".join(f"<th>{esc(c)}</th>" for c in categories)
    rows = []
    for layer, counts in summary.items():
        cells = "".join(f'<td class="num">{counts[c]}</td>' for c in categories)
        detectors = len(result.detectors(layer))
        units = len(result.units(layer))
        rows.append(
            f'<tr><td>{esc(layer)}</td>{cells}<td class="num">{sum(counts.values())}</td>'
            f'<td class="num">{detectors} / {units}</td></tr>'
        )
    return (
        "<h2>Unique detectors per layer</h2><table><tr><th>layer</th>"
        f"{head}<th>total</th><th>detector units</th></tr>{''.join(rows)}</table>"
    )


def summary_svg(counts: dict[str, int], categories: Sequence[str], scale: int | None = None) -> str:
    """The unique detectors of one layer per category (``counts``) as an inline SVG bar chart,
    one horizontal bar per category; bar lengths relative to ``scale`` (default: the largest
    count), so several layers' charts compare."""
    top = max([1, scale or 0, *counts.values()])
    bar, label_width, width, gap = 18, 110, 260, 6
    height = len(categories) * (bar + gap) + gap
    total = label_width + width + 50
    lines = [f'<svg width="{total}" height="{height}" viewBox="0 0 {total} {height}" role="img">']
    for i, category in enumerate(categories):
        y = gap + i * (bar + gap)
        count = counts.get(category, 0)
        length = round(width * count / top, 1)
        color = COLORS[i % len(COLORS)]
        lines.append(
            f'<text x="{label_width - 6}" y="{y + bar - 5}" text-anchor="end" '
            f'font-size="12">{esc(category)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar}" fill="{color}">'
            f"<title>{esc(category)}: {count}</title></rect>"
            f'<text x="{label_width + length + 4}" y="{y + bar - 5}" font-size="12">{count}</text>'
        )
    lines.append("</svg>")
    return "".join(lines)


def _layer_section(
    result: DissectionResult,
    layer: str,
    counts: dict[str, int],
    scale: int,
    bundle: ModelBundle | None,
    units_per_layer: int | None,
    top: int,
    side: int,
    min_pixels: int,
) -> str:
    rows = sorted(result.units(layer), key=lambda row: (not row.detector, -row.iou, row.unit))
    shown = rows if units_per_layer is None else rows[:units_per_layer]
    detectors = sum(row.detector for row in rows)
    head = f"{len(rows)} units, {detectors} detectors"
    if len(shown) < len(rows):
        head += f"; the first {len(shown)} shown"
    images_head = "<th>top images (segmentation)</th>" if bundle is not None else ""
    body = "".join(_unit_row(result, row, bundle, top, side, min_pixels) for row in shown)
    return (
        f'<section class="layer"><h2>Layer {esc(layer)}</h2><p>{esc(head)}</p>'
        f"{summary_svg(counts, result.table.categories, scale)}"
        "<table><tr><th>unit</th><th>concept</th><th>category</th><th>IoU</th>"
        f"<th>detector</th><th>concept pixels</th>{images_head}</tr>{body}</table></section>"
    )


def _unit_row(
    result: DissectionResult,
    row: UnitLabel,
    bundle: ModelBundle | None,
    top: int,
    side: int,
    min_pixels: int,
) -> str:
    pixels = f"{row.concept_pixels}"
    if row.concept and row.concept_pixels < min_pixels:
        pixels += ' <span class="small">small concept: IoU unreliable</span>'
    images = ""
    if bundle is not None:
        images = f'<td class="images">{_unit_images(result, bundle, row, top, side)}</td>'
    return (
        f'<tr class="{"detector" if row.detector else "unit"}">'
        f'<td class="num unit">{row.unit}</td><td>{esc(row.concept) or "&mdash;"}</td>'
        f'<td>{esc(row.category)}</td><td class="num">{row.iou:.4f}</td>'
        f'<td>{"yes" if row.detector else "no"}</td><td class="num">{pixels}</td>{images}</tr>'
    )


def _unit_images(
    result: DissectionResult, bundle: ModelBundle, row: UnitLabel, top: int, side: int
) -> str:
    if top == 0:
        return ""
    part = unit_segments(bundle, result, row.layer, row.unit, side)
    images, masks = decode_payload(part["images"]), decode_payload(part["masks"])
    tags = []
    for index, image, mask in zip(part["indices"][:top], images, masks, strict=False):
        alt = f"unit {row.unit}, data set image {index}"
        tags.append(
            f'<img src="{png_data_uri(segmented(image, mask))}" width="{side}" '
            f'height="{side}" alt="{esc(alt)}" title="{esc(alt)}">'
        )
    return "".join(tags) or '<span class="note">no top images</span>'


def segmented(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with outside ``mask`` (H, W; nonzero: the unit's region)
    dimmed and the region's border drawn in the outline colour."""
    inside = mask.astype(bool)
    out = image.astype(np.float32)
    out[~inside] *= DIM
    padded = np.pad(inside, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inside
    out[inside & ~interior] = OUTLINE
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def png_data_uri(image: np.ndarray) -> str:
    """``image`` (H, W, 3) uint8 as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_summary(result: DissectionResult) -> Figure:
    """A matplotlib Figure of the unique detectors per category (grouped bars) per layer.
    matplotlib is optional: ImportError with how to install it when it is missing (the HTML
    report draws its charts as SVG without it)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError(
            "DissectionResult.plot() draws with matplotlib, which cnnvis-widget does not "
            "install: pip install matplotlib (to_html() needs no matplotlib)."
        ) from error
    summary = result.summary()
    layers, categories = list(summary), list(result.table.categories)
    figure = Figure(figsize=(max(4.0, 1.2 * len(layers) + 2), 3.5), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(categories))
    for i, category in enumerate(categories):
        xs = [j + (i - (len(categories) - 1) / 2) * width for j in range(len(layers))]
        heights = [summary[layer][category] for layer in layers]
        axes.bar(xs, heights, width, label=category, color=COLORS[i % len(COLORS)])
    axes.set_xticks(range(len(layers)), layers)
    axes.set_xlabel("layer")
    axes.set_ylabel("unique detectors")
    axes.set_title(f"Unique detectors per category (IoU > {result.iou_threshold:g})")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if categories:
        axes.legend(title="category")
    return figure
