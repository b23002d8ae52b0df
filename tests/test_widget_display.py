"""What the Explorer shows: the map after a channel was looked at, and a note when a method
could not do what it promises (guided backprop / DeconvNet on a model without ReLU modules)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support import forwards_of
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.encode import decode_payload


class FunctionalReluNet(nn.Module):
    """A small CNN whose ReLUs are ``F.relu`` calls: no ``nn.ReLU`` module to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def functional_net() -> nn.Module:
    torch.manual_seed(0)
    return FunctionalReluNet().eval()


@pytest.fixture
def small_explorer(tiny) -> cv.Explorer:
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    return cv.Explorer(tiny.float(), image, labels=[f"c{i}" for i in range(10)])


def test_a_class_or_method_choice_shows_the_map_again_after_a_channel(small_explorer) -> None:
    explorer = small_explorer
    assert explorer.overlay_source == "map"
    explorer.selected_channel = 3  # a tile click
    assert explorer.overlay_source == "channel"
    explorer.selected_class = next(p["index"] for p in explorer.predictions[1:])
    assert explorer.overlay_source == "map", "a class choice must show its map"
    assert explorer.selected_channel == 3  # still the synthesis panel's channel

    explorer.selected_channel = 5
    assert explorer.overlay_source == "channel"
    explorer.method = "saliency"
    assert explorer.overlay_source == "map", "a method choice must show its map"

    explorer.selected_channel = 2
    explorer.method_params = {}  # unchanged settings: no new map, the channel stays
    assert explorer.overlay_source == "channel"
    explorer.selected_channel = -1  # the tile clicked again
    assert explorer.overlay_source == "map"


def test_the_overlay_source_is_display_only(small_explorer) -> None:
    with forwards_of(small_explorer.session.bundle.module) as forwards:
        small_explorer.overlay_source = "channel"
        small_explorer.map_sign = "signed"
    assert forwards == []


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_a_relu_rule_without_relu_modules_is_noted_in_the_widget(functional_net, method) -> None:
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    explorer = cv.Explorer(functional_net, image, labels=[f"c{i}" for i in range(10)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explorer.method = method
    assert explorer.message is None and explorer.overlay_method == method
    note = explorer.overlay_map.get("note", "")
    assert "FunctionalReluNet" in note and "plain gradient" in note
    # The warning names the user's model too, not a stand-in the engine built for it.
    texts = [str(w.message) for w in caught]
    assert any("FunctionalReluNet" in t for t in texts), texts
    assert not any("MeasuredLayout" in t or "GraphModule" in t for t in texts)
    # The same note travels with a comparison cell of the method.
    explorer.compare([method, "saliency"])
    explorer.wait()
    cells = {row["method"]: row for row in explorer.comparison}
    assert "FunctionalReluNet" in cells[method]["map"].get("note", "")
    assert "note" not in cells["saliency"]["map"]
    assert decode_payload(cells[method]["map"]).shape == decode_payload(explorer.image).shape[:2]


def test_a_model_with_relu_modules_gets_no_note(small_explorer) -> None:
    small_explorer.method = "guided_backprop"
    assert small_explorer.message is None
    assert "note" not in small_explorer.overlay_map
