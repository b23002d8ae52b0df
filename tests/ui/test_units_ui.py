"""The unit card in JupyterLab: a tile click opens the unit's card, whose crops are drawn, not
blank, and are the atlas's top-k; computing another layer's atlas shows progress and Stop."""

from __future__ import annotations

import json

import pytest
from test_explorer_ui import ARTIFACTS, EXPLORER, kernel_print, run_notebook, wait_idle
from test_map_display_ui import ADD_CELL

pytestmark = pytest.mark.ui

LAYER = "features.relu3"
UNIT = 7
IMAGES = 3000  # a pass of another layer lasts long enough to be stopped by a click
UNITS_CELL = f"""
IMAGES = {IMAGES}
import cnnvis_widget as cv
from torch.utils.data import Subset
units_data = Subset(cv.datasets.fashion_mnist(split="test"), range(IMAGES))
units_bundle = cv.load_model("fashion_cnn")
units_atlas = cv.unit_atlas(units_bundle, units_data, ["{LAYER}"], k=9, progress=False)
units = cv.Explorer(units_bundle, units_data[0][0], atlas=units_atlas, data=units_data,
                    layer="{LAYER}")
units
"""

# Distinct grey levels of a canvas (red channel): a blank or one-colour canvas has 1.
LEVELS = """(c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  return new Set(d.filter((_, i) => i % 4 === 0)).size;
}"""


def test_unit_card_in_jupyterlab(page, jupyter_server) -> None:
    run_notebook(page, f"{jupyter_server}/lab/tree/tour.ipynb")
    page.evaluate(ADD_CELL, UNITS_CELL)
    explorer = page.locator(EXPLORER).last
    tour = page.locator(EXPLORER).first
    assert tour.locator('[data-testid="units-panel"]').is_hidden()  # no data: no panel
    explorer.locator(f'[data-testid="grid"][data-layer="{LAYER}"][data-sheet="ready"]').wait_for(
        timeout=240_000
    )
    explorer.scroll_into_view_if_needed()
    wait_idle(page, explorer)
    status = explorer.locator('[data-testid="atlas-status"]')
    assert LAYER in status.inner_text()
    assert explorer.locator('[data-testid="atlas-compute"]').is_hidden()

    explorer.locator(f'[data-testid="tile"][data-channel="{UNIT}"]').click()
    card = explorer.locator('[data-testid="unit-card"]')
    card.wait_for(state="visible", timeout=60_000)
    crops = card.locator('[data-testid="unit-crop"]')
    assert crops.count() == 9
    expected = json.loads(
        kernel_print(
            page,
            f'import json; print(json.dumps([e.index for e in units_atlas.top("{LAYER}", {UNIT})]))',
        )
    )
    shown = [int(crops.nth(i).get_attribute("data-index")) for i in range(9)]
    assert shown == expected, (shown, expected)
    for i in range(9):
        canvas = crops.nth(i)
        assert canvas.evaluate("(c) => [c.width, c.height]") == [96, 96]
        assert canvas.evaluate(LEVELS) > 8, f"crop {i} is blank"
    assert card.locator('[data-testid="unit-histogram"]').evaluate(LEVELS) > 1
    assert f"unit {UNIT}" in card.locator('[data-testid="unit-card-title"]').inner_text()
    assert card.locator(".cv-units-class").count() == 5  # the top classes as bars
    card.screenshot(path=str(ARTIFACTS / "unit_card.png"))

    # The colormap is applied in the browser: changing it redraws the crops, nothing is sent.
    before = crops.first.evaluate("(c) => c.toDataURL()")
    explorer.locator('select[data-testid="colormap"]').select_option("gray")
    page.wait_for_function(
        "([c, before]) => c.toDataURL() !== before", arg=[crops.first.element_handle(), before]
    )

    # Its feature visualization, from the card's button, is drawn in the card as it runs.
    card.locator('[data-testid="unit-visualize"]').click()
    feature = card.locator('[data-testid="unit-feature"]')
    feature.wait_for(state="visible", timeout=120_000)
    page.wait_for_function("(c) => c.width > 1", arg=feature.element_handle(), timeout=60_000)
    assert feature.evaluate(LEVELS) > 8

    # Another layer has no atlas: its button computes one over the data, with progress + Stop.
    other = "features.relu5"
    explorer.locator('[data-testid="layer-filter"]').fill(other)
    explorer.locator(f'[data-testid="layer"][data-name="{other}"]').click()
    assert card.is_hidden() or card.wait_for(state="hidden", timeout=30_000) is None
    compute = explorer.locator('[data-testid="atlas-compute"]')
    compute.wait_for(state="visible", timeout=30_000)
    compute.click()
    progress = explorer.locator('[data-testid="atlas-progress"]')
    progress.wait_for(state="visible", timeout=60_000)
    explorer.locator('[data-testid="atlas-cancel"]').click()
    page.wait_for_function(
        "(e) => e.dataset.state === 'cancelled'", arg=progress.element_handle(), timeout=60_000
    )
    partial = kernel_print(
        page,
        "from cnnvis_widget.widgets.units import UnitsPanel\n"
        f'print(units.panel(UnitsPanel).units.atlas_of("{other}").images)',
    )
    assert 0 < int(partial) < IMAGES, partial
    assert "Resume" in compute.inner_text() and "so far" in status.inner_text()
    compute.click()  # resumes
    compute.wait_for(state="hidden", timeout=120_000)
    assert "so far" not in status.inner_text()
    explorer.locator('[data-testid="tile"][data-channel="3"]').click()
    card.wait_for(state="visible", timeout=60_000)
    assert crops.count() == 9


DISSECTION_CELL = """
from torch.utils.data import Subset
concept_part = Subset(cv.datasets.concepts(progress=False), range(0, 2440, 20))
lite = cv.load_model()
dissection = cv.dissect(lite, concept_part, ["_blocks.4"], progress=False, iou_threshold=0.01)
dissected = cv.Explorer(lite, cv.sample_image("cat"), dissection=dissection, layer="_blocks.4")
dissected
"""
BEST_DETECTOR = (
    'import json; _d = dissection.detectors("_blocks.4")[0]; '
    "print(json.dumps([_d.unit, _d.concept, "
    'sum(r.concept == _d.concept for r in dissection.detectors("_blocks.4"))]))'
)


def test_dissection_labels_and_segmentations_in_jupyterlab(page, jupyter_server) -> None:
    run_notebook(page, f"{jupyter_server}/lab/tree/tour.ipynb")
    page.evaluate(ADD_CELL, UNITS_CELL.replace("IMAGES = 3000", "IMAGES = 300"))
    page.evaluate(ADD_CELL, DISSECTION_CELL)
    explorer = page.locator(EXPLORER).last
    grid = explorer.locator('[data-testid="grid"][data-layer="_blocks.4"][data-sheet="ready"]')
    grid.wait_for(timeout=300_000)
    explorer.scroll_into_view_if_needed()
    wait_idle(page, explorer)
    unit, concept, count = json.loads(kernel_print(page, BEST_DETECTOR))
    # tiles are captioned with their concept; the filter keeps the units of one concept
    caption = explorer.locator(f'.cv-tile[data-channel="{unit}"] .cv-tile-caption')
    assert caption.inner_text() == f"{unit} {concept}"
    search = explorer.locator('[data-testid="unit-filter"]')
    search.fill(concept)
    visible = explorer.locator(".cv-tile:not([hidden])")
    page.wait_for_function(
        "([g, n]) => g.querySelectorAll('.cv-tile:not([hidden])').length === n",
        arg=[explorer.locator('[data-testid="grid"]').element_handle(), count],
    )
    assert visible.count() == count
    # the card shows the label and the unit's segmentation of its top concept images
    explorer.locator(f'[data-testid="tile"][data-channel="{unit}"]').click()
    card = explorer.locator('[data-testid="unit-card"]')
    card.wait_for(state="visible", timeout=60_000)
    assert concept in card.locator('[data-testid="unit-concept"]').inner_text()
    segments = card.locator('[data-testid="unit-segment"]')
    assert segments.count() == 10
    for i in range(10):
        assert segments.nth(i).evaluate(LEVELS) > 8, f"segment {i} is blank"
    card.screenshot(path=str(ARTIFACTS / "unit_card_dissection.png"))
