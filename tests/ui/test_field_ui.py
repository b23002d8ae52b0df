"""The unit card's empirical receptive field in JupyterLab: the card's button computes it in
the background, then the averaged map is drawn (pixels, not blank), the empirical size against
the theoretical is shown as text, and the top images with the field are drawn."""

from __future__ import annotations

import json

import pytest
from test_explorer_ui import ARTIFACTS, EXPLORER, kernel_print, run_notebook, wait_idle
from test_map_display_ui import ADD_CELL
from test_units_ui import LEVELS

pytestmark = pytest.mark.ui

LAYER = "features.relu3"
UNIT = 7
FIELD_CELL = f"""
import cnnvis_widget as cv
from torch.utils.data import Subset
field_data = Subset(cv.datasets.fashion_mnist(split="test"), range(300))
field_bundle = cv.load_model("fashion_cnn")
field_atlas = cv.unit_atlas(field_bundle, field_data, ["{LAYER}"], k=9, progress=False)
fields = cv.Explorer(field_bundle, field_data[0][0], atlas=field_atlas, data=field_data,
                     layer="{LAYER}")
fields
"""
EXPECTED = (
    "import json; from cnnvis_widget.widgets.units import UnitsPanel\n"
    "_f = fields.panel(UnitsPanel).empirical.of("
    f'"{LAYER}", {UNIT}); print(json.dumps([_f["size"], _f["theoretical"], _f["indices"]]))'
)


def test_empirical_field_on_the_unit_card(page, jupyter_server) -> None:
    run_notebook(page, f"{jupyter_server}/lab/tree/tour.ipynb")
    page.evaluate(ADD_CELL, FIELD_CELL)
    explorer = page.locator(EXPLORER).last
    explorer.locator(f'[data-testid="grid"][data-layer="{LAYER}"][data-sheet="ready"]').wait_for(
        timeout=240_000
    )
    explorer.scroll_into_view_if_needed()
    wait_idle(page, explorer)
    explorer.locator(f'[data-testid="tile"][data-channel="{UNIT}"]').click()
    card = explorer.locator('[data-testid="unit-card"]')
    card.wait_for(state="visible", timeout=60_000)
    button = card.locator('[data-testid="unit-field-compute"]')
    assert button.inner_text() == "Empirical field (top 5 images)"
    field_map = card.locator('[data-testid="unit-field-map"]')
    assert field_map.is_hidden()

    button.click()
    page.wait_for_function(
        "(c) => c.dataset.drawn === 'true'", arg=field_map.element_handle(), timeout=120_000
    )
    field_map.scroll_into_view_if_needed()
    assert field_map.evaluate(LEVELS) > 8, "the field's map is blank"
    size, theoretical, indices = json.loads(kernel_print(page, EXPECTED))
    text = card.locator('[data-testid="unit-field-size"]').inner_text()
    assert text == (
        f"empirical {size[0]} x {size[1]} px of {theoretical[0]} x {theoretical[1]} theoretical"
    )
    assert theoretical == [10, 10]
    segments = card.locator('[data-testid="unit-field-segment"]')
    assert [int(segments.nth(i).get_attribute("data-index")) for i in range(5)] == indices
    for i in range(5):
        assert segments.nth(i).evaluate(LEVELS) > 2, f"segment {i} is blank"
    assert button.is_hidden()  # complete: nothing more to compute
    card.screenshot(path=str(ARTIFACTS / "unit_card_field.png"))

    # another unit's card shows no field; back on this one it is shown again (kept)
    explorer.locator('[data-testid="tile"][data-channel="3"]').click()
    page.wait_for_function(
        "(c) => c.closest('[data-testid=\"unit-field\"]').querySelector("
        "'[data-testid=\"unit-field-size\"]').offsetParent === null",
        arg=field_map.element_handle(),
        timeout=60_000,
    )
    assert button.is_visible()
    explorer.locator(f'[data-testid="tile"][data-channel="{UNIT}"]').click()
    page.wait_for_function(
        "(c) => c.offsetParent !== null", arg=field_map.element_handle(), timeout=60_000
    )
    assert card.locator('[data-testid="unit-field-size"]').inner_text() == text
