"""What a new user sees in JupyterLab: the overlay goes back to the map when a class or method
is chosen after a channel was looked at, Enter in the class search picks the class, pixel-space
maps are visible at the default opacity (overlay and comparison thumbnails), and a method that
could not do what it promises says so beside the map."""

from __future__ import annotations

import pytest
from test_explorer_ui import ARTIFACTS, EXPLORER, PIXELS, run_notebook, wait_idle

pytestmark = pytest.mark.ui

# Share of the canvas's pixels whose colour differs from ``bare`` (the same canvas with no map
# drawn) by more than ``level`` grey levels in some channel.
CHANGED_SHARE = """(c, [bare, level]) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  if (d.length !== bare.length) return -1;
  let changed = 0;
  for (let i = 0; i < d.length; i += 4) {
    const diff = Math.max(Math.abs(d[i] - bare[i]), Math.abs(d[i + 1] - bare[i + 1]),
                          Math.abs(d[i + 2] - bare[i + 2]));
    if (diff > level) changed += 1;
  }
  return changed / (d.length / 4);
}"""
LEVEL = 24  # about a tenth of the range: a change one sees
# A map over the image at the default opacity shows over most of it, not only on its few
# strongest pixels (drawn with alpha proportional to |value|, a saliency map changed 11.5%).
VISIBLE_SHARE = 0.5

# A CNN whose ReLUs are F.relu calls: guided backprop has no nn.ReLU module to act on.
FUNCTIONAL_RELU_CELL = """
import torch, torch.nn as nn, torch.nn.functional as F
class FunctionalReluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(F.relu(self.conv2(x)).mean(dim=(2, 3)))
torch.manual_seed(0)
cv.Explorer(FunctionalReluNet().eval(), img, labels=[f"class {i}" for i in range(10)])
"""

ADD_CELL = """async (code) => {
  const app = window.jupyterapp;
  const notebook = app.shell.currentWidget.content;
  notebook.activeCellIndex = notebook.widgets.length - 1;
  await app.commands.execute('notebook:insert-cell-below');
  notebook.activeCell.model.sharedModel.setSource(code);
  await app.commands.execute('notebook:run-cell');
}"""


def wait_attr(page, locator, name: str, value: str, timeout: int = 60_000) -> None:
    page.wait_for_function(
        "([e, n, v]) => e.getAttribute(n) === v",
        arg=[locator.element_handle(), name, value],
        timeout=timeout,
    )


def test_map_display_in_jupyterlab(page, jupyter_server) -> None:
    run_notebook(page, f"{jupyter_server}/lab/tree/tour.ipynb")
    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    wait_idle(page, explorer)
    overlay = explorer.locator('canvas[data-testid="overlay"]')
    tiles = explorer.locator('[data-testid="tile"]')
    predictions = explorer.locator('[data-testid="prediction"]')
    picker = explorer.locator('select[data-testid="method-select"]')

    # 2. Enter in the class search picks the one class the text names, or says why not.
    search = explorer.locator('[data-testid="class-search"]')
    note = explorer.locator('[data-testid="class-search-note"]')
    search.click()
    page.keyboard.type("goldfish")
    page.keyboard.press("Enter")
    wait_attr(page, overlay, "data-class", "1")
    search.fill("")
    search.click()
    page.keyboard.type("shark")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(n) => n.textContent.includes('class names')", arg=note.element_handle()
    )
    assert overlay.get_attribute("data-class") == "1"
    wait_idle(page, explorer)

    # 1. After a tile click the overlay shows the channel; a class or a method brings the map back.
    tiles.nth(5).click()
    wait_attr(page, overlay, "data-mode", "channel")
    other = predictions.nth(2)
    other_index = other.get_attribute("data-index")
    other.click()
    wait_attr(page, overlay, "data-class", other_index)
    wait_attr(page, overlay, "data-mode", "cam")
    wait_idle(page, explorer)
    tiles.nth(7).click()
    wait_attr(page, overlay, "data-mode", "channel")
    picker.select_option("saliency")
    wait_attr(page, overlay, "data-method", "saliency")
    wait_attr(page, overlay, "data-mode", "cam")
    wait_idle(page, explorer)

    # 3. A pixel map at the default opacity changes a meaningful share of the image's pixels.
    opacity = explorer.locator('[data-testid="opacity"]')
    default_opacity = opacity.input_value()
    map_pixels = overlay.evaluate(PIXELS)
    opacity.fill("0")
    bare = overlay.evaluate(PIXELS)
    opacity.fill(default_opacity)
    page.wait_for_function(
        f"([c, m]) => ({PIXELS})(c).join() === m.join()", arg=[overlay.element_handle(), map_pixels]
    )
    share = overlay.evaluate(CHANGED_SHARE, [bare, LEVEL])
    sign = explorer.locator('select[data-testid="map-sign"]')
    sign.select_option("signed")
    wait_attr(page, overlay, "data-signed", "true")
    signed_share = overlay.evaluate(CHANGED_SHARE, [bare, LEVEL])
    sign.select_option("absolute")
    wait_attr(page, overlay, "data-signed", "false")
    (ARTIFACTS / "pixel_map_visibility.txt").write_text(
        f"saliency overlay at opacity {default_opacity}: {share:.1%} of pixels change by more "
        f"than {LEVEL} levels (|value| view); signed view: {signed_share:.1%}\n"
    )
    print(f"pixels changed by the saliency map: {share:.1%} (signed view {signed_share:.1%})")
    assert share > VISIBLE_SHARE, f"the saliency map changes only {share:.1%} of the pixels"

    # ... and so does each pixel map of the comparison.
    panel = explorer.locator('[data-testid="compare"]')
    panel.locator("summary").click()
    for name in ("saliency", "gradient_x_input"):
        panel.locator(f'[data-testid="compare-pick-{name}"]').check()
    panel.locator('[data-testid="compare-run"]').click()
    page.wait_for_function(
        '(p) => p.querySelectorAll(\'[data-testid="compare-cell"][data-state="done"]\').length === 2',
        arg=panel.element_handle(),
        timeout=180_000,
    )
    for i in range(2):
        cell = panel.locator('[data-testid="compare-cell"]').nth(i)
        cell_share = cell.locator("canvas").evaluate(CHANGED_SHARE, [bare, LEVEL])
        method = cell.get_attribute("data-method")
        print(f"pixels changed in the {method} thumbnail: {cell_share:.1%}")
        assert cell_share > VISIBLE_SHARE, f"{method}: only {cell_share:.1%} of the pixels"
    explorer.screenshot(path=str(ARTIFACTS / "explorer-pixel-map.png"))

    # 4. Guided backprop on a model without nn.ReLU modules: the map says it is the gradient.
    page.evaluate(ADD_CELL, FUNCTIONAL_RELU_CELL)
    functional = page.locator(EXPLORER).last
    functional.locator('[data-testid="prediction"]').first.wait_for(timeout=120_000)
    functional.scroll_into_view_if_needed()
    wait_idle(page, functional)
    map_note = functional.locator('[data-testid="map-note"]')
    assert map_note.is_hidden()
    functional.locator('select[data-testid="method-select"]').select_option("guided_backprop")
    map_note.wait_for(state="visible", timeout=60_000)
    text = map_note.inner_text()
    assert "FunctionalReluNet has no nn.ReLU" in text and "plain gradient" in text
    assert map_note.evaluate("(n) => n.children.length") == 0  # text, not markup
    functional.screenshot(path=str(ARTIFACTS / "explorer-relu-note.png"))
    functional.locator('select[data-testid="method-select"]').select_option("saliency")
    map_note.wait_for(state="hidden", timeout=60_000)
