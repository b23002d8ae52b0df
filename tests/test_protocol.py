"""The kernel <-> browser protocol has one source (cnnvis_widget/protocol.py): js/protocol.ts is
generated from it, the widget declares exactly its traits, and every value the widget sends
(after real actions, jobs included) has the declared shape."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal, NotRequired, get_args, get_origin, get_type_hints

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget import protocol
from cnnvis_widget.protocol_ts import render
from cnnvis_widget.widgets.explorer import Explorer

ROOT = Path(__file__).resolve().parent.parent


def test_js_protocol_is_generated_from_the_python_types() -> None:
    committed = (ROOT / "js" / "protocol.ts").read_text()
    assert committed == render(), "js/protocol.ts is stale: run `make protocol`"


def test_the_generated_types_follow_a_renamed_field(monkeypatch) -> None:
    # The check above can fail: rename a field on the Python side and the output changes.
    class Prediction(typing.TypedDict):
        index: int
        name: str  # was "label"
        prob: float

    renamed = Prediction
    types_ = tuple(renamed if t is protocol.Prediction else t for t in protocol.EXPORTED_TYPES)
    monkeypatch.setattr(protocol, "EXPORTED_TYPES", types_)
    assert "  name: string;" in render() and render() != (ROOT / "js/protocol.ts").read_text()


def test_the_widget_declares_exactly_the_protocol_traits() -> None:
    widget_base = set(cv.Explorer.__mro__[1].class_traits(sync=True))  # anywidget's own
    declared = set(cv.Explorer.class_traits(sync=True)) - widget_base
    assert declared == set(get_type_hints(protocol.ExplorerTraits))


def conforms(value: Any, hint: Any, where: str) -> list[str]:
    """Where ``value`` does not have the type ``hint`` (recursively), as messages."""
    origin = get_origin(hint)
    if origin is NotRequired:
        return conforms(value, get_args(hint)[0], where)
    if hint is Any:
        return []
    if origin in (types.UnionType, typing.Union):
        options = [conforms(value, arg, where) for arg in get_args(hint)]
        return [] if any(not o for o in options) else min(options, key=len)
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r:.40} is not None"]
    if origin is Literal:
        return [] if value in get_args(hint) else [f"{where}: {value!r} not in {get_args(hint)}"]
    if typing.is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} is not a {hint.__name__}"]
        hints = get_type_hints(hint, include_extras=True)
        problems = [f"{where}.{k}: not in {hint.__name__}" for k in value if k not in hints]
        for key, field in hints.items():
            if key in value:
                problems += conforms(value[key], field, f"{where}.{key}")
            elif get_origin(field) is not NotRequired:
                problems.append(f"{where}.{key}: missing")
        return problems
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} is not a list"]
        return [
            p for i, v in enumerate(value) for p in conforms(v, get_args(hint)[0], f"{where}[{i}]")
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} is not a dict"]
        return [
            p for k, v in value.items() for p in conforms(v, get_args(hint)[1], f"{where}[{k}]")
        ]
    if hint is float:
        return (
            []
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else [f"{where}: {value!r} is not a number"]
        )
    if hint is int:
        return (
            []
            if isinstance(value, int) and not isinstance(value, bool)
            else [f"{where}: {value!r} is not an int"]
        )
    return (
        []
        if isinstance(value, hint)
        else [f"{where}: {type(value).__name__} is not {hint.__name__}"]
    )


def sent_values(widget: Explorer) -> list[str]:
    hints = get_type_hints(protocol.ExplorerTraits, include_extras=True)
    return [p for name, hint in hints.items() for p in conforms(getattr(widget, name), hint, name)]


@pytest.fixture
def widget() -> Explorer:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    )  # fmt: skip
    noise = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    data = [(Image.fromarray(image), i % 4) for i, image in enumerate(noise)]  # atlas + cards
    return Explorer(
        model, preprocess=cv.Preprocess(input_size=(32, 32)), labels=list("abcd"), data=data, k=3
    )


def test_every_value_the_widget_sends_has_the_declared_shape(widget: Explorer) -> None:
    assert sent_values(widget) == []
    widget.method = "integrated_gradients"  # a streamed map: overlay_job
    widget.wait()
    widget.compare(["gradcam", "saliency"])
    widget.wait()
    widget.selected_channel = 2
    widget.synthesize("feature", steps=3, size=16)
    widget.wait()
    widget.pin()
    widget.synthesize("adversarial", attack="fgsm")
    widget.wait()
    widget.visualize_layer(steps=2, size=16)
    widget.wait()
    widget.method_params = {"steps": -4}  # refused: a message
    assert widget.overlay_job and widget.compare_job and widget.feature_grid_job
    assert widget.atlas_job and widget.atlas_layers and widget.unit_card
    assert widget.synthesis and widget.synthesis["adversarial"] and widget.synth_pins
    assert widget.message and widget.message["level"] == "error"
    assert sent_values(widget) == []


def test_the_shape_check_can_fail(widget: Explorer) -> None:
    widget.wait()
    with widget.hold_trait_notifications():
        widget.overlay_job = {"id": 1, "label": "x", "state": "finished", "fraction": 1.0}
    assert sent_values(widget) == [
        "overlay_job.state: 'finished' not in ('running', 'done', 'cancelled', 'error')"
    ]
