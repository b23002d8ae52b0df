"""The units panel: a unit's card from a unit atlas (given, or computed in the background with
Stop and resume), checked against the atlas and brute force; one message per card."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import cnnvis_widget as cv
from cnnvis_widget.atlas.fingerprint import model_fingerprint
from cnnvis_widget.widgets.units import UnitsPanel
from tests.support import hook_count, send_from_browser, sent_to_browser

LAYER = "features.relu3"  # 32 x 14 x 14
IMAGES = 300


@pytest.fixture(scope="module")
def bundle():
    return cv.load_model("fashion_cnn")


@pytest.fixture(scope="module")
def data():
    return Subset(cv.datasets.fashion_mnist(split="test"), range(IMAGES))


@pytest.fixture(scope="module")
def atlas(bundle, data):
    return cv.unit_atlas(bundle, data, [LAYER], k=6, progress=False)


def brute_force_maxima(bundle, data) -> torch.Tensor:
    """(N, C) each image's maximum of each unit of LAYER, one image at a time."""
    rows = []
    for i in range(len(data)):
        x = bundle.preprocess(data[i][0])
        rows.append(cv.activations(bundle.module, x, [LAYER])[LAYER].amax(dim=(2, 3))[0])
    return torch.stack(rows)


def test_card_shows_the_atlas_top_k_as_crops_centred_on_the_maximum(bundle, data, atlas):
    explorer = cv.Explorer(bundle, data[IMAGES - 1][0], atlas=atlas, data=data, layer=LAYER)
    assert explorer.atlas_layers == [{"name": LAYER, "images": IMAGES, "complete": True}]
    sent = sent_to_browser(explorer)
    weights, hooks = model_fingerprint(bundle.module), hook_count(bundle.module)
    training = [m.training for m in bundle.module.modules()]
    explorer.show_unit(5)
    assert model_fingerprint(bundle.module) == weights
    assert hook_count(bundle.module) == hooks
    assert [m.training for m in bundle.module.modules()] == training
    card = explorer.unit_card
    assert card is not None and card["layer"] == LAYER and card["unit"] == 5
    top = atlas.top(LAYER, 5)
    assert [(e["index"], e["y"], e["x"]) for e in card["examples"]] == [
        (e.index, e.y, e.x) for e in top
    ]
    assert [e["label"] for e in card["examples"]] == [
        data.dataset.classes[data[e.index][1]] for e in top
    ]
    crops = np.frombuffer(card["crops"]["data"], np.uint8).reshape(card["crops"]["shape"])
    maps = np.frombuffer(card["crop_maps"]["data"], np.uint8).reshape(card["crop_maps"]["shape"])
    assert crops.shape == (6, 96, 96, 3) and maps.shape == (6, 96, 96)
    for crop, unit_map in zip(crops, maps, strict=True):
        assert crop.std() > 5, "a crop is blank"
        peak = np.unravel_index(unit_map.argmax(), unit_map.shape)
        # the example's maximum is at the centre of its receptive field, so of the crop
        assert abs(peak[0] - 48) <= 14 and abs(peak[1] - 48) <= 14, peak
    # the scale is the top example's value (bilinear upsampling lowers an isolated peak)
    assert card["scale"] == pytest.approx(top[0].value)
    assert 128 < maps[0].max() <= 255
    # the receptive field of relu3 (conv 3x3, conv 3x3, pool 2, conv 3x3): 10 px
    assert card["field_size"] == [10, 10] and card["field_method"] == "geometry"
    # one message carries the card, with its arrays as binary buffers
    carrying = [m for m in sent if "unit_card" in m["state"]]
    assert len(carrying) == 1 and len(carrying[0]["buffers"]) >= 2


def test_histogram_current_value_and_classes_equal_brute_force(bundle, data, atlas):
    image = data[IMAGES - 1][0]
    explorer = cv.Explorer(bundle, image, atlas=atlas, data=data, layer=LAYER)
    explorer.show_unit(11)
    card = explorer.unit_card
    maxima = brute_force_maxima(bundle, data)[:, 11].double()
    edges, counts = np.array(card["histogram"]["edges"]), np.array(card["histogram"]["counts"])
    assert counts.sum() == IMAGES
    assert np.array_equal(np.histogram(maxima.numpy(), bins=edges)[0], counts)
    current = float(
        cv.activations(bundle.module, bundle.preprocess(image), [LAYER])[LAYER][0, 11].max()
    )
    assert card["current"] == pytest.approx(current, rel=1e-5)
    exact_below = float((maxima < current).double().mean())
    bin_share = counts.max() / IMAGES
    assert abs(card["current_below"] - exact_below) <= bin_share
    labels = torch.tensor([data[i][1] for i in range(IMAGES)])
    pooled = torch.stack([
        cv.activations(bundle.module, bundle.preprocess(data[i][0]), [LAYER])[LAYER][0, 11].mean()
        for i in range(IMAGES)
    ])  # fmt: skip
    means = {c: float(pooled[labels == c].mean()) for c in labels.unique().tolist()}
    expected = sorted(means, key=lambda c: -means[c])[:5]
    assert [row["name"] for row in card["classes"]] == [data.dataset.classes[c] for c in expected]
    for row, c in zip(card["classes"], expected, strict=True):
        assert row["mean"] == pytest.approx(means[c], rel=1e-4)


def test_an_atlas_of_other_data_or_another_model_or_without_data_is_refused(bundle, data, atlas):
    other = Subset(data, range(1, IMAGES))
    with pytest.raises(ValueError, match="not the data set this atlas was computed on"):
        cv.Explorer(bundle, atlas=atlas, data=other, layer=LAYER)
    with pytest.raises(ValueError, match="needs data="):
        cv.Explorer(bundle, atlas=atlas, layer=LAYER)
    changed = cv.load_model("fashion_cnn")
    with torch.no_grad():
        changed.module.fc.bias += 1
    with pytest.raises(ValueError, match="another model"):
        cv.Explorer(changed, atlas=atlas, data=data, layer=LAYER)


def test_background_pass_stops_shows_the_partial_atlas_and_resumes_to_the_full_result(
    bundle, data, atlas
):
    explorer = cv.Explorer(bundle, data[0][0], data=data, layer=LAYER, k=6)
    panel = explorer.panel(UnitsPanel)
    assert explorer.wait(120)
    assert explorer.atlas_layers == [{"name": LAYER, "images": IMAGES, "complete": True}]
    assert explorer.atlas_job["state"] == "done"
    full = panel.units.atlas_of(LAYER)
    assert full is not None and full.complete
    for unit in (0, 7, 31):
        assert full.top(LAYER, unit) == atlas.top(LAYER, unit)

    # Another layer, stopped after its first batches, then resumed.
    other = "features.relu5"
    stop_after = {"batches": 0}
    original = panel.jobs._runner.start

    def start(label, work, stop_at=3):
        def slow(step):
            def counting(partial, fraction):
                stop_after["batches"] += 1
                if stop_after["batches"] == stop_at:
                    panel.jobs.cancel()
                return step(partial, fraction)

            return work(counting)

        return original(label, slow)

    panel.jobs._runner.start = start
    send_from_browser(explorer, {"type": "atlas", "layer": other})
    assert explorer.wait(120)
    assert explorer.atlas_job["state"] == "cancelled"
    stopped = panel.units.atlas_of(other)
    assert stopped is not None and 0 < stopped.images < IMAGES and not stopped.complete
    assert "stopped after" in explorer.message["text"]
    assert explorer.atlas_layers[-1] == {"name": other, "images": stopped.images, "complete": False}
    explorer.selected_layer = other
    explorer.show_unit(2)
    assert explorer.unit_card["complete"] is False
    stop_after["batches"] = 0
    panel.jobs._runner.start = lambda label, work: start(label, work, stop_at=-1)
    explorer.compute_atlas(other)
    assert explorer.wait(120) and explorer.atlas_job["state"] == "done"
    # it went on from the saved statistics: only the batches not yet done ran
    assert stop_after["batches"] == -(-(IMAGES - stopped.images) // 32)
    resumed = panel.units.atlas_of(other)
    assert resumed is not None and resumed.complete and resumed.images == IMAGES
    uninterrupted = cv.unit_atlas(bundle, data, [other], k=6, progress=False)
    for unit in range(0, 64, 9):
        assert resumed.top(other, unit) == uninterrupted.top(other, unit)
    assert explorer.unit_card["complete"] is True  # the open card was refreshed


def test_clicking_a_tile_of_a_layer_without_atlas_clears_the_card(bundle, data, atlas):
    explorer = cv.Explorer(bundle, data[0][0], atlas=atlas, data=data, layer=LAYER)
    explorer.show_unit(1)
    assert explorer.unit_card is not None
    explorer.show_unit(2, layer="features.relu5")
    assert explorer.unit_card is None
    with pytest.raises(ValueError, match="no atlas covers"):
        explorer.panel(UnitsPanel).card("features.relu5", 2)


def test_the_card_knows_its_feature_visualization(bundle, data, atlas):
    explorer = cv.Explorer(bundle, data[0][0], atlas=atlas, data=data, layer=LAYER)
    explorer.show_unit(4)
    explorer.synthesize("feature", steps=3, size=16)
    assert explorer.wait(120)
    assert explorer.synthesis["unit"] == {"layer": LAYER, "channel": 4}
    explorer.synthesize("class", steps=2)
    assert explorer.wait(120)
    assert "unit" not in explorer.synthesis
