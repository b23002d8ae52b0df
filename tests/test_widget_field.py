"""The unit card's empirical receptive field: the card's button starts a background job
(``field_job``) whose payload (``unit_field``) is :func:`cv.empirical_receptive_field` of the
card's unit over its top atlas images; Stop keeps a partial field; a field is kept per unit
for the session; a field finished while another card is open is not shown on it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from torch.utils.data import Subset

import cnnvis_widget as cv
from cnnvis_widget.atlas.fingerprint import model_fingerprint
from cnnvis_widget.empirical_field import field_segments
from cnnvis_widget.encode import decode_payload
from cnnvis_widget.protocol import FIELD_TOP_K, JobState, UnitField
from cnnvis_widget.widgets.units import UnitsPanel
from tests.support import forwards_of, hook_count, send_from_browser, sent_to_browser
from tests.test_protocol import conforms

LAYER = "features.relu3"  # 32 x 14 x 14, theoretical field 10 x 10 px
IMAGES = 300
UNIT = 5


@pytest.fixture(scope="module")
def bundle():
    return cv.load_model("fashion_cnn")


@pytest.fixture(scope="module")
def data():
    return Subset(cv.datasets.fashion_mnist(split="test"), range(IMAGES))


@pytest.fixture(scope="module")
def atlas(bundle, data):
    return cv.unit_atlas(bundle, data, [LAYER], k=6, progress=False)


@pytest.fixture
def explorer(bundle, data, atlas):
    return cv.Explorer(bundle, data[IMAGES - 1][0], atlas=atlas, data=data, layer=LAYER)


def reference(bundle, atlas, data, unit, k=FIELD_TOP_K):
    return cv.empirical_receptive_field(
        bundle, LAYER, unit, atlas=atlas, data=data, k=k, progress=False
    )


def cut(field, window):
    top, left, bottom, right = window
    return field.mean_map[top:bottom, left:right]


def test_the_button_computes_the_empirical_field_of_the_cards_unit(bundle, data, atlas, explorer):
    explorer.show_unit(UNIT)
    assert explorer.unit_field is None and explorer.field_job is None
    weights, hooks = model_fingerprint(bundle.module), hook_count(bundle.module)
    training = [m.training for m in bundle.module.modules()]
    sent = sent_to_browser(explorer)
    send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": UNIT})
    assert explorer.field_job is not None
    assert explorer.field_job["label"] == f"empirical field of unit {UNIT} of {LAYER}"
    assert explorer.wait(120)
    assert explorer.field_job["state"] == "done"
    # the user's model is untouched
    assert model_fingerprint(bundle.module) == weights
    assert hook_count(bundle.module) == hooks
    assert [m.training for m in bundle.module.modules()] == training

    shown = explorer.unit_field
    assert conforms(shown, UnitField, "unit_field") == []
    assert conforms(explorer.field_job, JobState, "field_job") == []
    expected = reference(bundle, atlas, data, UNIT)
    assert shown is not None and (shown["layer"], shown["unit"]) == (LAYER, UNIT)
    assert shown["complete"] is True and shown["images"] == shown["requested"] == FIELD_TOP_K
    # the card's first examples, as the field's images
    top = [e.index for e in atlas.top(LAYER, UNIT)[:FIELD_TOP_K]]
    assert shown["indices"] == top == expected.indices
    # the map is the function's averaged map, cut at the window around the peak's centre
    window = shown["window"]
    assert np.array_equal(decode_payload(shown["map"]), cut(expected, window), equal_nan=True)
    cy, cx = expected.centre
    assert shown["centre"] == [cy - window[0], cx - window[1]]
    # the theoretical field (10 px) widened by the occluder (11 px) on each side
    assert window == [cy - 5 - 11, cx - 5 - 11, cy + 5 + 11, cx + 5 + 11]
    assert np.nanmax(decode_payload(shown["map"])) == pytest.approx(np.nanmax(expected.mean_map))
    # sizes: empirical (threshold) against theoretical, the card's receptive field
    assert shown["size"] == list(expected.size) and shown["box"] == list(expected.box)
    assert shown["theoretical"] == [10, 10] == explorer.unit_card["field_size"]
    assert min(shown["size"]) > 0
    # each top image with the field placed at its peak
    masks = decode_payload(shown["masks"])
    assert np.array_equal(masks, field_segments(expected).masks.astype(np.uint8))
    assert 0 < masks.sum() < masks.size
    seen = decode_payload(shown["images_seen"])
    assert seen.shape == (FIELD_TOP_K, 28, 28, 3)
    assert np.array_equal(seen, np.repeat(expected.pixels, 3, axis=-1))
    # the backdrop is the top image at its peak: its centre pixel is the peak's centre pixel
    backdrop = decode_payload(shown["backdrop"])
    py, px = expected.centres[0]
    if 0 <= py < 28 and 0 <= px < 28:
        assert np.array_equal(backdrop[shown["centre"][0], shown["centre"][1]], seen[0, py, px])
    # the field travels as one message with binary buffers
    carrying = [m for m in sent if "unit_field" in m["state"]]
    assert len(carrying) == 1 and len(carrying[0]["buffers"]) >= 4


def stop_at_report(panel, stop_at):
    """Make the next field job cancel itself at its ``stop_at``-th progress report."""
    runner = panel.empirical.jobs._runner
    original = runner.start
    reports = {"n": 0}

    def start(label, work):
        def counting(step):
            def step_and_stop(partial, fraction):
                reports["n"] += 1
                if reports["n"] == stop_at:
                    panel.empirical.jobs.cancel()
                return step(partial, fraction)

            return work(step_and_stop)

        runner.start = original
        return original(label, counting)

    runner.start = start
    return reports


def test_stop_keeps_a_partial_field_marked_incomplete(bundle, data, atlas, explorer):
    panel = explorer.panel(UnitsPanel)
    explorer.show_unit(UNIT)
    stop_at_report(panel, 2)  # one batch per image here: the second image is cut short
    send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": UNIT})
    assert explorer.wait(120)
    assert explorer.field_job["state"] == "cancelled"
    shown = explorer.unit_field
    assert shown is not None and shown["complete"] is False
    assert shown["images"] == 1 and shown["requested"] == FIELD_TOP_K
    assert "stopped after 1 of 5 images" in explorer.message["text"]
    one = reference(bundle, atlas, data, UNIT, k=1)
    # (the unpadded forward of 1 image, not 5, may differ in the last bits)
    partial = decode_payload(shown["map"])
    assert np.allclose(partial, cut(one, shown["window"]), rtol=1e-4, atol=1e-6, equal_nan=True)
    assert shown["size"] == list(one.size)
    assert decode_payload(shown["masks"]).shape == (1, 28, 28)
    # kept for the card, and computed again (all images) when asked again
    assert panel.empirical.of(LAYER, UNIT) == shown
    send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": UNIT})
    assert explorer.wait(120) and explorer.field_job["state"] == "done"
    assert explorer.unit_field["complete"] is True and explorer.unit_field["images"] == 5


def test_stop_before_the_first_image_shows_nothing(explorer):
    panel = explorer.panel(UnitsPanel)
    explorer.show_unit(UNIT)
    stop_at_report(panel, 1)
    send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": UNIT})
    assert explorer.wait(120) and explorer.field_job["state"] == "cancelled"
    assert explorer.unit_field is None and panel.empirical.of(LAYER, UNIT) is None
    assert "before its first image" in explorer.message["text"]


def test_a_kept_field_is_shown_again_without_recomputing(bundle, explorer):
    first = bundle.module.features.conv1
    explorer.show_unit(UNIT)
    with forwards_of(first) as computing:
        send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": UNIT})
        assert explorer.wait(120)
    kept = explorer.unit_field
    # the counter sees the field's forwards (one batch of occluded copies per image at least)
    assert kept is not None and len(computing) > FIELD_TOP_K
    job = explorer.field_job
    explorer.show_unit(9)
    assert explorer.unit_field is None  # another unit: none computed
    with forwards_of(first) as card_only:
        explorer.show_unit(11)
    with forwards_of(first) as reopened:
        explorer.show_unit(UNIT)
    assert explorer.unit_field == kept
    assert len(reopened) == len(card_only)  # the card's own forwards, none for the field
    # the button on a card whose field is kept shows it, no job runs
    explorer.unit_field = None
    with forwards_of(first) as clicked:
        send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": UNIT})
        assert explorer.wait(120)
    assert clicked == [] and explorer.field_job == job and explorer.unit_field == kept
    # another layer closes the card and its field
    explorer.selected_layer = "features.relu5"
    assert explorer.unit_card is None and explorer.unit_field is None


def test_a_field_finished_while_another_card_is_open_is_kept_not_shown(explorer):
    panel = explorer.panel(UnitsPanel)
    explorer.show_unit(UNIT)
    gate = threading.Event()
    runner = panel.empirical.jobs._runner
    original = runner.start

    def start(label, work):
        def gated(step):
            gate.wait(60)
            return work(step)

        return original(label, gated)

    runner.start = start
    send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": UNIT})
    explorer.show_unit(9)  # while the job runs
    assert explorer.field_job["state"] == "running"
    gate.set()
    assert explorer.wait(120) and explorer.field_job["state"] == "done"
    assert explorer.unit_card["unit"] == 9 and explorer.unit_field is None
    kept = panel.empirical.of(LAYER, UNIT)
    assert kept is not None and (kept["layer"], kept["unit"]) == (LAYER, UNIT)
    explorer.show_unit(UNIT)
    assert explorer.unit_field == kept


def test_stop_message_and_a_unit_without_atlas_are_refused(explorer):
    with pytest.raises(ValueError, match="no atlas covers"):
        explorer.panel(UnitsPanel).compute_field("features.relu5", 1)
    explorer.show_unit(UNIT)
    send_from_browser(explorer, {"type": "field", "layer": LAYER, "unit": 99})
    assert explorer.message["level"] == "error" and "units 0..31" in explorer.message["text"]
    assert explorer.field_job is None
