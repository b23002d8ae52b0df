"""cv.examples_sheet: a unit's top dataset examples as one PIL image, whose crops are the
widget's unit card's crops (same receptive-field box, same pixels), with the activation drawn
over them as the card draws it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

import cnnvis_widget as cv
from cnnvis_widget.atlas.sheet import LINE, PAD, crop_origin, sheet_size

LAYERS = ["features.relu3", "features.relu5"]  # 32 x 14 x 14, 64 x 7 x 7
IMAGES = 300
K = 6
UNITS = [0, 5, 11]


@pytest.fixture(scope="module")
def bundle():
    return cv.load_model("fashion_cnn")


@pytest.fixture(scope="module")
def data():
    return Subset(cv.datasets.fashion_mnist(split="test"), range(IMAGES))


@pytest.fixture(scope="module")
def atlas(bundle, data):
    return cv.unit_atlas(bundle, data, LAYERS, k=K, progress=False)


def card_arrays(explorer, unit: int) -> tuple[np.ndarray, np.ndarray]:
    """The card's crops (k, S, S, 3) and activation crops (k, S, S), decoded."""
    explorer.show_unit(unit)
    card = explorer.unit_card
    assert card is not None and card["unit"] == unit
    crops = np.frombuffer(card["crops"]["data"], np.uint8).reshape(card["crops"]["shape"])
    maps = np.frombuffer(card["crop_maps"]["data"], np.uint8).reshape(card["crop_maps"]["shape"])
    return crops, maps


def region(sheet: Image.Image, row: int, column: int, side: int) -> np.ndarray:
    left, top = crop_origin(row, column, side)
    return np.asarray(sheet)[top : top + side, left : left + side]


def test_sheet_size_follows_k_units_and_crop_size(bundle, data, atlas):
    sheet = cv.examples_sheet(bundle, atlas, data, LAYERS[0], UNITS)
    assert isinstance(sheet, Image.Image) and sheet.mode == "RGB"
    # label column 64 + 6 crops of 96 with 4 px gaps; title 17 + 3 rows of 96 + caption 26
    assert sheet.size == (4 + 64 + K * (96 + 4), 4 + 17 + 3 * (96 + 26 + 4)) == (668, 399)
    assert sheet.size == sheet_size(len(UNITS), K, 96)
    small = cv.unit_atlas(bundle, data, LAYERS[1], k=2, progress=False)
    one = cv.examples_sheet(bundle, small, data, LAYERS[1], 7, crop_size=48)
    assert one.size == (4 + 64 + 2 * (48 + 4), 4 + 17 + 1 * (48 + 26 + 4)) == (172, 99)
    # between the crops and in the margins: background; every crop and caption: drawn
    pixels = np.asarray(sheet)
    left, top = crop_origin(0, 1, 96)
    assert (pixels[top : top + 96, left - PAD : left] == 255).all()
    assert (pixels[:, -PAD:] == 255).all() and (pixels[-PAD:] == 255).all()
    for row in range(len(UNITS)):
        label_column = pixels[crop_origin(row, 0)[1] : crop_origin(row, 0)[1] + 96, :64]
        assert (label_column < 128).any(), "the row's unit label is missing"
        for column in range(K):
            x, y = crop_origin(row, column, 96)
            assert region(sheet, row, column, 96).std() > 5, "a crop is blank"
            for line in range(2):  # class name, then value
                caption = pixels[y + 96 + line * LINE : y + 96 + (line + 1) * LINE, x : x + 96]
                assert (caption < 160).any(), f"caption line {line} is missing"


@pytest.mark.parametrize("layer", LAYERS)
def test_crops_are_the_unit_cards_crops(bundle, data, atlas, layer):
    explorer = cv.Explorer(bundle, data[IMAGES - 1][0], atlas=atlas, data=data, layer=layer)
    plain = cv.examples_sheet(bundle, atlas, data, layer, UNITS, overlay=False)
    drawn = cv.examples_sheet(bundle, atlas, data, layer, UNITS, colormap="viridis", opacity=0.45)
    lut = viridis_table()
    for row, unit in enumerate(UNITS):
        crops, maps = card_arrays(explorer, unit)
        assert crops.shape == (K, 96, 96, 3)
        for column in range(K):
            assert np.array_equal(region(plain, row, column, 96), crops[column]), (unit, column)
            # with overlay: the card's activation crop in viridis over its crop at 0.45 (the
            # card's maps come from a batch that also holds the Explorer's image: allow
            # rounding)
            expected = 0.55 * crops[column] + 0.45 * lut[maps[column]].astype(float)
            difference = np.abs(region(drawn, row, column, 96).astype(float) - expected)
            assert difference.max() <= 3, (unit, column, difference.max())
        assert not np.array_equal(region(drawn, row, 0, 96), crops[0])


def viridis_table() -> np.ndarray:
    """matplotlib's viridis as (256, 3) uint8, as the widget's lookup table is built."""
    import matplotlib

    return np.round(matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(
        np.uint8
    )


def test_viridis_table_has_the_widgets_ends():
    lut = viridis_table()  # js/colormaps.test.ts: d3's viridis anchors
    assert lut[0].tolist() == [0x44, 0x01, 0x54] and lut[255].tolist() == [0xFD, 0xE7, 0x25]


def test_bad_layer_unit_or_data_are_refused_clearly(bundle, data, atlas):
    with pytest.raises(ValueError, match=r"no layer 'features\.relu9'.*features\.relu3"):
        cv.examples_sheet(bundle, atlas, data, "features.relu9", [0])
    with pytest.raises(ValueError, match=r"features\.relu3 has units 0\.\.31; got \[32\]"):
        cv.examples_sheet(bundle, atlas, data, LAYERS[0], [0, 32])
    with pytest.raises(ValueError, match=r"has units 0\.\.63; got \[-1\]"):
        cv.examples_sheet(bundle, atlas, data, LAYERS[1], -1)
    with pytest.raises(ValueError, match="units is empty"):
        cv.examples_sheet(bundle, atlas, data, LAYERS[0], [])
    with pytest.raises(TypeError, match="unit"):
        cv.examples_sheet(bundle, atlas, data, LAYERS[0], ["5"])
    with pytest.raises(ValueError, match="crop_size must be an int >= 32"):
        cv.examples_sheet(bundle, atlas, data, LAYERS[0], [0], crop_size=8)
    with pytest.raises(ValueError, match="opacity"):
        cv.examples_sheet(bundle, atlas, data, LAYERS[0], [0], opacity=2)
    with pytest.raises(ValueError, match="unknown colormap 'viridiss'"):
        cv.examples_sheet(bundle, atlas, data, LAYERS[0], [0], colormap="viridiss")
    with pytest.raises(ValueError, match="not the data set this atlas was computed on"):
        cv.examples_sheet(bundle, atlas, Subset(data, range(1, IMAGES)), LAYERS[0], [0])
    changed = cv.load_model("fashion_cnn")
    with torch.no_grad():
        changed.module.fc.bias += 1
    with pytest.raises(ValueError, match="another model"):
        cv.examples_sheet(changed, atlas, data, LAYERS[0], [0])
