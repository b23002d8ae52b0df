"""The worked examples of docs/architecture.md run as written: a new method, a new synthesis
kind and a new panel, each added from its one block of code, work in the engine and in the
widget (through its public surface)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from support import send_from_browser
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.encode import decode_payload
from cnnvis_widget.layers import activations
from cnnvis_widget.methods import METHODS
from cnnvis_widget.synthesis.kinds import KINDS

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def example(name: str) -> str:
    """The Python block that follows ``<!-- example: name -->`` in docs/architecture.md."""
    found = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/architecture.md has no example {name!r}"
    return found.group(1)


def run_example(name: str, registry: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
    """Execute the example; its registry entry is removed afterwards."""
    namespace: dict[str, Any] = {"__name__": f"architecture_example_{name}"}
    exec(compile(example(name), f"docs/architecture.md:{name}", "exec"), namespace)
    try:
        yield namespace
    finally:
        registry.pop(key, None)


@pytest.fixture
def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip


def explorer_of(model: nn.Module, explorer_type: type[cv.Explorer] | None = None) -> Any:
    widget_type = explorer_type or cv.Explorer
    return widget_type(model, preprocess=cv.Preprocess(input_size=(32, 32)), labels=list("abcde"))


def test_the_method_example(small_model) -> None:
    for _ in run_example("method", METHODS, "squared_gradient"):
        x = torch.rand(2, 3, 32, 32)
        squared = cv.attribute(small_model, x, "squared_gradient", target=[1, 3])
        saliency = cv.attribute(small_model, x, "saliency", target=[1, 3])
        assert torch.allclose(squared, saliency**2) and squared.shape == x.shape
        widget = explorer_of(small_model)
        assert "squared_gradient" in [row["name"] for row in widget.methods]
        widget.method = "squared_gradient"
        assert widget.message is None and widget.overlay_method == "squared_gradient"
        expected = cv.attribute(
            small_model, widget.session.input, "saliency", target=widget.selected_class
        )
        assert torch.allclose(
            torch.from_numpy(decode_payload(widget.overlay_map).copy()),
            (expected[0] ** 2).sum(0), atol=1e-6,
        )  # fmt: skip
    assert "squared_gradient" not in METHODS


def test_the_synthesis_kind_example(small_model) -> None:
    for _ in run_example("kind", KINDS, "neuron"):
        widget = explorer_of(small_model)
        assert "neuron" in [row["name"] for row in widget.synth_kinds]
        widget.selected_layer = "2"
        widget.selected_channel = 5
        widget.synthesize("neuron", steps=4, size=32)
        assert widget.wait(120) and widget.synth_job["state"] == "done", widget.message
        assert widget.synthesis["label"] == "Neuron (channel centre): 2 channel 5"
        direct = cv.visualize_feature(small_model, "2", 5, kind="neuron", steps=4, size=32)
        shown = decode_payload(widget.synthesis["images"])
        assert shown.shape == (1, 32, 32, 3)
        assert (shown == (direct.images[0].permute(1, 2, 0) * 255).round().byte().numpy()).all()
    assert "neuron" not in KINDS


def test_the_panel_example(small_model) -> None:
    for namespace in run_example("panel", {}, ""):
        traits, panel = namespace["LayerStatsTraits"], namespace["LayerStatsPanel"]

        class StatsExplorer(cv.Explorer, traits):  # type: ignore[misc, valid-type]
            panel_types = (*cv.Explorer.panel_types, panel)

        widget = explorer_of(small_model, StatsExplorer)
        widget.selected_layer = "2"
        send_from_browser(widget, {"type": "layer_stats"})
        assert widget.wait(60) and widget.layer_stats_job["state"] == "done"
        maps = activations(small_model, widget.session.input, ["2"])["2"][0].flatten(1)
        stats = widget.layer_stats
        assert stats["layer"] == "2" and len(stats["mean"]) == 8
        assert torch.allclose(torch.tensor(stats["mean"]), maps.mean(1), atol=1e-6)
        assert torch.allclose(torch.tensor(stats["active"]), (maps > 0).float().mean(1))
        widget.selected_layer = "0"  # another layer: its statistics are not these
        assert widget.layer_stats is None and widget.layer_stats_job is None
        # The panels the Explorer ships work as before beside it.
        widget.compare(["gradcam", "saliency"])
        assert widget.wait(60) and [c["state"] for c in widget.comparison] == ["done", "done"]
