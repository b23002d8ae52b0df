"""The Explorer with a dissection: tile labels for the selected layer, the card's dissection
part (label, top images with the unit's segmentation), a dissection of another model refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnnvis_widget as cv
from tests.support_concepts import TinyConcepts, tiny_cnn

LAYER = "3"


def preprocess() -> cv.Preprocess:
    return cv.Preprocess(
        input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize=32
    )


@pytest.fixture(scope="module")
def dissected():
    data = TinyConcepts(24)
    model = tiny_cnn()
    result = cv.dissect(model, data, ["1", LAYER], q=0.02, top_k=4, progress=False,
                        preprocess=preprocess(), iou_threshold=0.0)  # fmt: skip
    return model, data, result


def explorer_of(model, data, result, layer=LAYER) -> cv.Explorer:
    return cv.Explorer(model, data[0][0], preprocess=preprocess(), labels=list("abcd"),
                       layer=layer, dissection=result)  # fmt: skip


def test_tiles_carry_the_selected_layers_labels(dissected):
    model, data, result = dissected
    explorer = explorer_of(model, data, result)
    rows = result.units(LAYER)
    assert [tag["concept"] for tag in explorer.unit_labels] == [row.concept for row in rows]
    assert [tag["iou"] for tag in explorer.unit_labels] == [row.iou for row in rows]
    assert explorer.atlas_images == 24 and explorer.atlas_layers[0]["name"] == "1"
    explorer.selected_layer = "1"
    assert len(explorer.unit_labels) == 6
    explorer.selected_layer = "0"  # not dissected: no labels
    assert explorer.unit_labels == []


def test_the_card_shows_the_units_segmentation_of_its_top_images(dissected):
    model, data, result = dissected
    explorer = explorer_of(model, data, result)
    explorer.show_unit(5)
    part = explorer.unit_card["dissection"]
    row = result.units(LAYER)[5]
    assert part["concept"] == row.concept and part["iou"] == row.iou
    assert part["indices"] == [e.index for e in result.atlas.top(LAYER, 5)]
    masks = np.frombuffer(part["masks"]["data"], np.uint8).reshape(part["masks"]["shape"])
    assert masks.shape == (4, 96, 96)
    # the first top image's mask, computed here: its map upsampled to the input, > threshold
    x = preprocess()(data[part["indices"][0]][0])
    unit_map = cv.activations(model, x, [LAYER])[LAYER][:, 5:6]
    up = F.interpolate(unit_map, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    expected = (up > row.threshold).numpy().astype(np.uint8)
    nearest = expected[np.arange(96) * 32 // 96][:, np.arange(96) * 32 // 96]
    assert (masks[0] == nearest).mean() > 0.97
    assert 0 < masks[0].mean() < 1  # a region, not everything or nothing


def test_a_dissection_of_another_model_is_refused(dissected):
    _, data, result = dissected
    with pytest.raises(ValueError, match="another model"):
        explorer_of(tiny_cnn(seed=3), data, result)
    with pytest.raises(TypeError, match=r"cv\.dissect"):
        cv.Explorer(tiny_cnn(), data[0][0], preprocess=preprocess(), dissection=object())


def test_find_units_by_concept(dissected):
    _, _, result = dissected
    concept = result.detectors(LAYER)[0].concept
    found = result.find(concept[:3])
    assert found and all(concept[:3] in row.concept for row in found)
    assert any(row.layer == LAYER and row.concept == concept for row in found)
    assert all(row.category == "scene" for row in result.find("scene"))
    assert torch.is_tensor(result.iou(LAYER))


def test_crops_of_a_dissection_are_cut_where_its_pass_saw_the_maximum():
    """The dissection saw each concept image whole; a preprocess that resizes and crops (the
    default: short side to 256, centre 32 x 32) must not shift the card's crops."""
    data = TinyConcepts(24)
    model = tiny_cnn()
    cropping = cv.Preprocess(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    result = cv.dissect(model, data, [LAYER], q=0.02, top_k=4, progress=False, preprocess=cropping)
    explorer = cv.Explorer(model, data[0][0], preprocess=cropping, labels=list("abcd"),
                           layer=LAYER, dissection=result)  # fmt: skip
    for unit in range(8):
        explorer.show_unit(unit)
        card = explorer.unit_card
        maps = np.frombuffer(card["crop_maps"]["data"], np.uint8).reshape(
            card["crop_maps"]["shape"]
        )
        for unit_map in maps:  # each example's maximum is at the centre of its crop
            peak = np.unravel_index(unit_map.argmax(), unit_map.shape)
            assert abs(peak[0] - 48) <= 20 and abs(peak[1] - 48) <= 20, (unit, peak)
        explorer.selected_channel = -1


def test_find_matches_words_of_concepts_not_parts_of_them():
    from cnnvis_widget.datasets.concept_format import concept_table
    from cnnvis_widget.dissection import DissectionResult, IoUTally, LayerDissection

    table = concept_table({"color": ["red"], "texture": ["checkered", "stone wall"]})
    tally = IoUTally(3, table)
    tally.intersection[:, 1:] = torch.tensor([[0, 50, 0], [50, 0, 0], [0, 0, 50]])
    tally.label_area[1:] = 100
    result = DissectionResult({"x": LayerDissection(tally, torch.zeros(3))}, table, q=0.005)
    assert [row.concept for row in result.find("red")] == ["red"]
    assert [row.concept for row in result.find("wall")] == ["stone wall"]
    assert [row.unit for row in result.find("texture")] == [0, 2]
