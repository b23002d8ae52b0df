"""The dissection's standalone HTML report (self-contained, parseable, the summary's counts and
each detector's IoU, escaped text, segmented top images with a model only) and its plot."""

from __future__ import annotations

import base64
import io
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

import cnnvis_widget as cv
from cnnvis_widget.datasets.concept_format import concept_table
from cnnvis_widget.encode import decode_payload
from tests.support_concepts import TinyConcepts, tiny_cnn

LAYERS = ["1", "3"]
SIDE = 96  # the report's image side (the card's)


def preprocess() -> cv.Preprocess:
    return cv.Preprocess(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class OddNames(TinyConcepts):
    """TinyConcepts with markup in names: one colour, "<b>x</b>", on 3/4 of every image (units
    pick it), the objects "<script>" and "dog" in the category "<i>object</i>"."""

    concepts = concept_table(
        {"color": ["<b>x</b>"], "<i>object</i>": ["<script>", "dog"], "scene": ["beach"]}
    )

    def __init__(self, count: int = 24, seed: int = 0) -> None:
        super().__init__(count, seed)
        for labels in self.labels:
            labels.pixels["color"] = [np.minimum(m, 1) for m in labels.pixels["color"]]
            if "object" in labels.pixels:
                labels.pixels["<i>object</i>"] = [
                    m - 2 * (m > 0) for m in labels.pixels.pop("object")
                ]
            if "scene" in labels.whole:
                labels.whole["scene"] = [4]


def dissect(data, model, iou_threshold=0.0):
    return cv.dissect(model, data, LAYERS, q=0.02, top_k=3, progress=False,
                      preprocess=preprocess(), iou_threshold=iou_threshold)  # fmt: skip


@pytest.fixture(scope="module")
def dissected():
    """The tiny CNN's dissection, its IoU threshold the median of its last layer's best IoUs
    (some detectors, not all)."""
    model = tiny_cnn()
    result = dissect(TinyConcepts(16), model)
    threshold = float(np.median([row.iou for row in result.units("3")]))
    result = cv.DissectionResult(
        result.layers, result.table, q=result.q, iou_threshold=threshold, images=result.images,
        total=result.total, atlas=result.atlas, data=result.data,
    )  # fmt: skip
    return model, result


class Page(HTMLParser):
    """What the tests read of the report: the start tags, the text, the layer sections' unit
    rows (cell texts), the overview table's rows, the SVG bars' titles and the images."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.layer: str | None = None
        self.units: dict[str, list[list[str]]] = {}
        self.overview: list[list[str]] = []
        self.bars: dict[str, list[str]] = {}
        self.images: dict[str, list[str]] = {}
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.heading: list[str] | None = None
        self.title: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "h2":
            self.heading = []
        elif tag == "tr":
            self.row = []
        elif tag == "td":
            self.cell = []
        elif tag == "title" and self.layer is not None:
            self.title = []
        elif tag == "img":
            assert self.layer is not None
            self.images.setdefault(self.layer, []).append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag == "h2" and self.heading is not None:
            heading, self.heading = "".join(self.heading), None
            self.layer = heading.removeprefix("Layer ") if heading.startswith("Layer ") else None
        elif tag == "td" and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row:
            if self.layer is None:
                self.overview.append(self.row)
            else:
                self.units.setdefault(self.layer, []).append(self.row)
            self.row = None
        elif tag == "title" and self.title is not None:
            self.bars.setdefault(str(self.layer), []).append("".join(self.title))
            self.title = None

    def handle_data(self, data):
        self.text.append(data)
        for part in (self.heading, self.cell, self.title):
            if part is not None:
                part.append(data)


def report(result, tmp_path, *args, **kwargs) -> tuple[str, Page]:
    path = result.to_html(tmp_path / "report.html", *args, **kwargs)
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_the_report_is_self_contained_and_parses(dissected, tmp_path):
    model, result = dissected
    text, page = report(result, tmp_path, model, preprocess=preprocess())
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "http" not in text and "url(" not in text and "href" not in text
    assert text.count("src=") == text.count('src="data:image/png;base64,') > 0
    assert "script" not in page.tags and "link" not in page.tags
    assert {"html", "head", "style", "body", "svg", "table", "img"} <= set(page.tags)
    assert "<svg" in text and 'src="data:image/png;base64,' in text


def test_counts_and_ious_are_the_results(dissected, tmp_path):
    _, result = dissected
    summary = result.summary()
    assert any(summary["3"].values()) and not all(r.detector for r in result.units("3"))
    _, page = report(result, tmp_path)
    categories = list(result.table.categories)
    assert [row[0] for row in page.overview[-2:]] == LAYERS
    for row in page.overview[-2:]:
        layer, counts = row[0], [int(cell) for cell in row[1 : 1 + len(categories)]]
        assert counts == [summary[layer][c] for c in categories]
        assert row[-1] == f"{len(result.detectors(layer))} / {len(result.units(layer))}"
        assert page.bars[layer] == [f"{c}: {summary[layer][c]}" for c in categories]
    for layer in LAYERS:
        rows = page.units[layer]
        assert len(rows) == len(result.units(layer))  # all units without units_per_layer
        detectors = result.detectors(layer)
        # detectors first, by IoU, each with its IoU's text
        for cells, unit in zip(rows, detectors, strict=False):
            assert cells[:5] == [str(unit.unit), unit.concept, unit.category,
                                 f"{unit.iou:.4f}", "yes"]  # fmt: skip
        assert all(cells[4] == "no" for cells in rows[len(detectors) :])
        # tiny concepts flagged by their pixel count
        for cells in rows:
            label = result.units(layer)[int(cells[0])]
            assert cells[5].startswith(str(label.concept_pixels))
            small = bool(label.concept) and label.concept_pixels < 1000
            assert ("unreliable" in cells[5]) == small
    assert any("unreliable" in cells[5] for cells in page.units["1"] + page.units["3"])


def test_units_per_layer_keeps_the_best(dissected, tmp_path):
    _, result = dissected
    _, page = report(result, tmp_path, units_per_layer=2)
    for layer in LAYERS:
        best = sorted(result.units(layer), key=lambda r: (not r.detector, -r.iou, r.unit))[:2]
        assert [int(cells[0]) for cells in page.units[layer]] == [r.unit for r in best]


def test_text_from_the_data_is_escaped(tmp_path):
    model = tiny_cnn()
    result = dissect(OddNames(16), model, iou_threshold=0.0)
    shown = {r.concept for layer in LAYERS for r in result.units(layer)}
    assert "<b>x</b>" in shown  # units did pick the odd names
    bundle = cv.ModelBundle(model, preprocess(), list("abcd"), name="tiny<net>")
    text, page = report(result, tmp_path, bundle)
    assert "<b>" not in text and "<script>" not in text and "<i>" not in text
    assert "b" not in page.tags and "script" not in page.tags and "i" not in page.tags
    words = "".join(page.text)
    for name in shown | {"<i>object</i>", "tiny<net>"}:
        assert name in words
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in text and "<td>&lt;i&gt;object&lt;/i&gt;</td>" in text
    if "<script>" in shown:
        assert "<td>&lt;script&gt;</td>" in text


def test_images_are_the_units_segmentations(dissected, tmp_path):
    model, result = dissected
    _, page = report(result, tmp_path, model, preprocess=preprocess(), top=2)
    for layer in LAYERS:
        images = page.images[layer]
        assert len(images) == 2 * len(result.units(layer))
        assert all(src.startswith("data:image/png;base64,") for src in images)
    # the layer's first row's unit: its first image, against its card segmentation
    unit = int(page.units["3"][0][0])
    bundle = cv.ModelBundle(model, preprocess(), list("abcd"))
    part = cv.dissection.card.unit_segments(bundle, result, "3", unit)
    plain, mask = decode_payload(part["images"])[0], decode_payload(part["masks"])[0]
    data = base64.b64decode(page.images["3"][0].removeprefix("data:image/png;base64,"))
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (SIDE, SIDE) and image.mode == "RGB"
    drawn = np.asarray(image).astype(int)
    inside, outside = mask.astype(bool), ~mask.astype(bool)
    assert inside.any() and outside.any()
    assert (drawn[outside] <= plain[outside].astype(int) + 1).all()  # dimmed outside
    assert drawn[outside].mean() < 0.5 * plain[outside].mean()
    # inside: the image itself, or the outline
    same = (drawn[inside] == plain[inside]).all(axis=1)
    outline = (drawn[inside] == (255, 214, 0)).all(axis=1)
    assert (same | outline).all() and same.any() and outline.any()


def test_without_a_model_there_are_no_images(dissected, tmp_path):
    _, result = dissected
    text, page = report(result, tmp_path)
    assert "img" not in page.tags and "data:image" not in text
    assert "No images" in "".join(page.text)
    assert "not given" in "".join(page.text)


def test_another_model_is_refused(dissected, tmp_path):
    _, result = dissected
    with pytest.raises(ValueError, match="another model"):
        result.to_html(tmp_path / "r.html", tiny_cnn(seed=3), preprocess=preprocess())


def test_plot_draws_the_summary(dissected):
    pytest.importorskip("matplotlib")
    _, result = dissected
    figure = result.plot()
    summary = result.summary()
    bars = figure.axes[0].patches
    categories = list(result.table.categories)
    assert len(bars) == len(categories) * len(LAYERS)
    heights = [bar.get_height() for bar in bars]  # category by category, layer by layer
    assert heights == [summary[layer][c] for c in categories for layer in LAYERS]


def test_plot_without_matplotlib_says_how_to_get_it(dissected, monkeypatch):
    _, result = dissected
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        result.plot()
