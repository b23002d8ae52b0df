"""The "Why this class?" panel in JupyterLab: an Explorer given relevant filters shows the
predicted class, the explanation's heatmap drawn over the image (pixels, not a blank canvas),
the top relevant filters that fired as tiles in score order with their average
visualizations; a tile click opens the filter's unit card, or selects the channel in the
filter grid when no atlas covers its layer; "Explain:" another class explains that class (the
title names it, the heatmap is redrawn, the kernel's ``chosen`` is it)."""

from __future__ import annotations

import json

import pytest
from test_explorer_ui import ARTIFACTS, EXPLORER, kernel_print, run_notebook, wait_idle
from test_map_display_ui import ADD_CELL

pytestmark = pytest.mark.ui

ATLAS_LAYER = "features.conv5"
WHY_CELL = f"""
import cnnvis_widget as cv
from torch.utils.data import Subset
from cnnvis_widget.interpretation import relevant_features
why_data = Subset(cv.datasets.fashion_mnist(split="test"), range(300))
why_bundle = cv.load_model("fashion_cnn")
why_features = relevant_features(why_bundle, why_data, standardize=True, progress=False)
why_atlas = cv.unit_atlas(why_bundle, why_data, ["{ATLAS_LAYER}"], k=9, progress=False)
why = cv.Explorer(why_bundle, why_data[0][0], interpretation=why_features, atlas=why_atlas,
                  data=why_data)
why
"""
SHOWN = (
    "import json; print(json.dumps([why.why_class['label'], "
    "[[t['layer'], t['channel']] for t in why.why_class['filters']]]))"
)
# A class to choose: not the prediction, and some of its relevant filters fire on the image
# (else its heatmap would be empty).
PICK = """
import json
from cnnvis_widget.interpretation import explain as _explain
_why = why.why_class
print(json.dumps(next(
    c for c in _why['choices'] if c['label'] != _why['model_predicted']
    and _explain(why_bundle, why_features, why.session.input, label=c['label']).filters
)))
"""
CHOSEN = (
    "import json; print(json.dumps([why.why_class['chosen'], "
    "[[t['layer'], t['channel']] for t in why.why_class['filters']]]))"
)

# Distinct red levels of a canvas: a blank or one-colour canvas has 1.
LEVELS = """(c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  return new Set(d.filter((_, i) => i % 4 === 0)).size;
}"""


def test_why_this_class_in_jupyterlab(page, jupyter_server) -> None:
    run_notebook(page, f"{jupyter_server}/lab/tree/tour.ipynb")
    page.evaluate(ADD_CELL, WHY_CELL)
    explorer = page.locator(EXPLORER).last
    panel = explorer.locator('[data-testid="why-class"]')
    heatmap = panel.locator('canvas[data-testid="why-heatmap"][data-drawn="true"]')
    heatmap.wait_for(state="visible", timeout=300_000)
    assert page.locator(EXPLORER).first.locator('[data-testid="why-class"]').is_hidden()
    explorer.scroll_into_view_if_needed()
    wait_idle(page, explorer)
    panel.locator('[data-testid="why-progress"][data-state="done"]').wait_for(
        state="attached", timeout=120_000
    )
    label, shown = json.loads(kernel_print(page, SHOWN))
    assert label in panel.locator('[data-testid="why-class-label"]').inner_text()
    assert "Why this class?" in panel.locator("summary").inner_text()

    # The heatmap is drawn over the image: many colours, at the image's size (28 x 28).
    assert heatmap.evaluate("(c) => [c.width, c.height]") == [28, 28]
    assert heatmap.evaluate(LEVELS) > 8, "the heatmap canvas is blank"

    # The tiles: the kernel's filters, highest score first, each with its average drawn.
    tiles = panel.locator('[data-testid="why-tile"]')
    assert tiles.count() == len(shown) >= 1
    rows = [
        [tiles.nth(i).get_attribute("data-layer"), int(tiles.nth(i).get_attribute("data-channel"))]
        for i in range(len(shown))
    ]
    assert rows == shown
    scores = [float(tiles.nth(i).get_attribute("data-score")) for i in range(len(shown))]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    for i, (layer, channel) in enumerate(shown):
        tile = tiles.nth(i)
        assert f"{layer} · channel {channel}" in tile.inner_text()
        assert "score" in tile.inner_text() and "weight" in tile.inner_text()
        average = tile.locator('[data-testid="why-average"]')
        average.wait_for(state="visible", timeout=60_000)
        assert average.evaluate(LEVELS) > 8, f"average visualization {i} is blank"
    panel.screenshot(path=str(ARTIFACTS / "why_class.png"))

    # The colormap is applied in the browser: the heatmap is redrawn with it.
    before = heatmap.evaluate("(c) => c.toDataURL()")
    explorer.locator('select[data-testid="colormap"]').select_option("gray")
    page.wait_for_function(
        "([c, before]) => c.toDataURL() !== before", arg=[heatmap.element_handle(), before]
    )

    # A tile of the atlas's layer opens its unit card.
    covered = [i for i, (layer, _) in enumerate(shown) if layer == ATLAS_LAYER]
    others = [i for i, (layer, _) in enumerate(shown) if layer != ATLAS_LAYER]
    assert covered, f"no tile of {ATLAS_LAYER} among {shown}: pick another image"
    layer, channel = shown[covered[0]]
    tiles.nth(covered[0]).click()
    card = explorer.locator('[data-testid="unit-card"]')
    card.wait_for(state="visible", timeout=60_000)
    assert (
        f"{layer} · unit {channel}" in card.locator('[data-testid="unit-card-title"]').inner_text()
    )
    assert card.locator('[data-testid="unit-crop"]').count() == 9
    grid = explorer.locator(f'[data-testid="grid"][data-layer="{layer}"]')
    grid.wait_for(state="attached", timeout=60_000)
    selected = explorer.locator(f'.cv-tile[data-channel="{channel}"][data-selected="true"]')
    selected.wait_for(state="attached", timeout=60_000)

    # A tile of a layer without atlas selects its layer and channel in the filter grid.
    if others:
        layer, channel = shown[others[0]]
        tiles.nth(others[0]).click()
        explorer.locator(f'[data-testid="grid"][data-layer="{layer}"]').wait_for(
            state="attached", timeout=60_000
        )
        explorer.locator(f'.cv-tile[data-channel="{channel}"][data-selected="true"]').wait_for(
            state="attached", timeout=60_000
        )
        assert card.is_hidden()
        channel_view = explorer.locator(f'[data-testid="channel-view"][data-channel="{channel}"]')
        channel_view.wait_for(state="visible", timeout=60_000)

    # "Explain:" another class: the kernel explains that class on this image.
    choice = json.loads(kernel_print(page, PICK))
    choose = panel.locator('select[data-testid="why-choose"]')
    assert choose.locator("option").first.inner_text() == "the prediction"
    assert choose.input_value() == ""
    before = heatmap.evaluate("(c) => c.toDataURL()")
    choose.select_option(str(choice["label"]))
    title = panel.locator('[data-testid="why-class-label"]')
    page.wait_for_function(
        "([el, text]) => el.textContent.startsWith(text)",
        arg=[title.element_handle(), f"Explaining: {choice['name']} (the model predicts"],
        timeout=120_000,
    )
    heatmap.wait_for(state="visible", timeout=60_000)
    page.wait_for_function(
        "([c, before]) => c.toDataURL() !== before", arg=[heatmap.element_handle(), before]
    )
    panel.locator('[data-testid="why-progress"][data-state="done"]').wait_for(
        state="attached", timeout=120_000
    )
    chosen, shown = json.loads(kernel_print(page, CHOSEN))
    assert chosen == choice["label"] and choose.input_value() == str(chosen)
    rows = [[t.get_attribute("data-layer"), int(t.get_attribute("data-channel"))]
            for t in tiles.all()]  # fmt: skip
    assert rows == shown and len(shown) >= 1
    panel.screenshot(path=str(ARTIFACTS / "why_class_chosen.png"))
