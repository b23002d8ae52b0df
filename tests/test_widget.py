"""The Explorer widget's kernel side: state, routing, errors, and no recompute for display."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image
from support import forwards_of, send_from_browser, sent_to_browser

import cnnvis_widget as cv
from cnnvis_widget.encode import decode_payload


@pytest.fixture
def explorer(lite0):
    return cv.Explorer(lite0, cv.sample_image("coffee"))


def png_bytes(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_initial_state(explorer, lite0) -> None:
    assert explorer.model_name == "efficientnet_lite0"
    assert explorer.predictions[0]["label"] == "espresso" and len(explorer.predictions) == 5
    assert explorer.selected_class == 967
    assert decode_payload(explorer.image).shape == (224, 224, 3)
    assert explorer.selected_layer == "_swish" == explorer.overlay_layer == explorer.grid_layer
    assert decode_payload(explorer.overlay_map).shape == (7, 7)
    assert decode_payload(explorer.grid).shape == (1280, 7, 7)
    names = [row["name"] for row in explorer.layers]
    assert names == [name for name, _ in lite0.module.named_modules() if name]
    assert explorer.message is None and not explorer.busy
    assert explorer.image_name == "coffee"
    assert len(explorer.labels) == 1000 and explorer.labels[967] == "espresso"


def test_arrays_travel_as_binary_buffers(explorer) -> None:
    state = explorer.get_state()
    _, paths, buffers = _remove_buffers(state)
    assert (
        ["grid", "data"] in paths
        and ["overlay_map", "data"] in paths
        and ["image", "data"] in paths
    )
    assert sum(len(b) for b in buffers) >= 1280 * 49 + 224 * 224 * 3


def test_selecting_a_layer_updates_grid_and_cam(explorer, lite0) -> None:
    explorer.selected_layer = "_blocks.2"
    grid = decode_payload(explorer.grid)
    assert grid.shape == (24, 56, 56) and explorer.grid_layer == "_blocks.2"
    assert grid.max() == 255
    assert explorer.overlay_layer == "_blocks.2" and decode_payload(explorer.overlay_map).shape == (
        56,
        56,
    )
    x = lite0.preprocess(cv.sample_image("coffee"))
    acts = cv.activations(lite0.module, x, ["_blocks.2"])["_blocks.2"][0]
    assert np.allclose(decode_payload(explorer.grid_means), acts.mean((1, 2)).numpy(), atol=1e-5)
    # A non-spatial layer: no grid, a message, and Grad-CAM stays on the last spatial layer.
    explorer.selected_layer = "_fc"
    assert explorer.grid is None and explorer.message["level"] == "info"
    assert explorer.overlay_layer == "_blocks.2"


def test_grid_message_is_one_update(explorer) -> None:
    sent = sent_to_browser(explorer)
    explorer.selected_layer = "_blocks.4"
    grid_updates = [m for m in sent if "grid" in m["state"]]
    assert len(grid_updates) == 1
    message = grid_updates[0]
    buffers = message["buffers"]
    assert {"grid", "grid_lo", "grid_hi", "grid_means", "overlay_map"} <= set(message["state"])
    assert ["grid", "data"] in message["buffer_paths"]
    assert sum(len(b) for b in buffers) >= 40 * 28 * 28


def test_clicking_a_class_changes_only_the_cam(explorer, lite0) -> None:
    before = decode_payload(explorer.overlay_map).copy()
    sent = sent_to_browser(explorer)
    with forwards_of(lite0.module) as forwards:
        explorer.selected_class = explorer.predictions[2]["index"]
    assert not np.array_equal(decode_payload(explorer.overlay_map), before)
    assert len(forwards) == 1  # Grad-CAM's one forward: no grid recomputed
    assert not any("grid" in m["state"] for m in sent)


def test_display_changes_never_reach_the_engine(explorer, lite0) -> None:
    sent = sent_to_browser(explorer)
    with forwards_of(lite0.module) as forwards:
        explorer.colormap = "magma"
        explorer.opacity = 0.9
        explorer.sort_by = "mean"
        explorer.selected_channel = 3
    assert forwards == []
    changed = [set(m["state"]) - {"busy"} for m in sent]
    assert changed == [
        {"colormap"},
        {"opacity"},
        {"sort_by"},
        {"selected_channel"},
        {"overlay_source"},
    ]


def test_sample_picker_and_upload(explorer) -> None:
    explorer.image_name = "cat"
    assert any("cat" in p["label"] or p["label"] == "tabby" for p in explorer.predictions[:3])
    send_from_browser(explorer, {"type": "upload", "name": "red.png"}, [png_bytes("red")])
    assert explorer.image_name == "upload:red.png" and explorer.message is None
    assert tuple(decode_payload(explorer.image)[100, 100]) == (255, 0, 0)


def test_bad_upload_shows_a_message_and_keeps_the_image(explorer) -> None:
    image, predictions = explorer.image, explorer.predictions
    send_from_browser(explorer, {"type": "upload", "name": "notes.txt"}, [b"hello"])
    assert explorer.message["level"] == "error" and "notes.txt" in explorer.message["text"]
    assert explorer.image is image and explorer.predictions == predictions and not explorer.busy
    explorer.selected_layer = "_blocks.1"  # still usable
    assert explorer.grid_layer == "_blocks.1"


def test_unknown_layer_from_the_browser_shows_a_message(explorer) -> None:
    explorer.selected_layer = "no.such.layer"
    assert explorer.message["level"] == "error" and "no.such.layer" in explorer.message["text"]


def test_bare_module_and_greyscale_image(tiny) -> None:
    widget = cv.Explorer(
        tiny.float(), np.zeros((50, 70), dtype=np.uint8), labels=[f"c{i}" for i in range(10)]
    )
    assert widget.predictions[0]["label"].startswith("c")
    assert widget.selected_layer == "relu2"


def test_failed_actions_revert_and_keep_the_widget_consistent(explorer) -> None:
    good_class, good_layer = explorer.selected_class, explorer.selected_layer
    cam = explorer.overlay_map
    explorer.selected_class = 5000  # out of range
    assert explorer.message["level"] == "error" and "out of range" in explorer.message["text"]
    assert explorer.selected_class == good_class and explorer.overlay_map is cam
    explorer.selected_layer = "no.such.layer"
    assert explorer.selected_layer == good_layer == explorer.grid_layer
    assert "Valid layer names" in explorer.message["text"]
    # The next successful action clears the error and everything follows it.
    explorer.selected_class = explorer.predictions[1]["index"]
    assert explorer.message is None
    explorer.selected_layer = "_blocks.3"
    assert explorer.grid_layer == explorer.overlay_layer == "_blocks.3"


def test_reused_module_calls_in_the_widget(residual) -> None:
    widget = cv.Explorer(residual, np.zeros((20, 20, 3), dtype=np.uint8), layer="relu@0")
    assert widget.grid_layer == "relu@0" and decode_payload(widget.grid).shape[0] == 8
    widget.selected_layer = "relu@2"
    assert decode_payload(widget.grid).shape[0] == 16 and widget.message is None


def test_bare_module_labels_follow_its_class_count(tiny, lite0) -> None:
    widget = cv.Explorer(tiny, np.zeros((50, 70), dtype=np.uint8))
    assert all(p["label"].startswith("class ") for p in widget.predictions)
    imagenet = cv.Explorer(lite0.module, cv.sample_image("coffee"), preprocess=lite0.preprocess)
    assert imagenet.predictions[0]["label"] == "espresso"


def test_method_picker_recomputes_the_overlay(explorer, lite0) -> None:
    assert {row["name"] for row in explorer.methods} == set(cv.METHODS)
    smooth = next(row for row in explorer.methods if row["name"] == "smoothgrad")
    assert {p["name"] for p in smooth["params"]} == {
        "n_samples",
        "noise_level",
        "batch_size",
        "seed",
    }
    explorer.method = "integrated_gradients"
    explorer.method_params = {"steps": 8}
    assert explorer.wait()  # a long method: computed in the background
    cam = decode_payload(explorer.overlay_map)
    assert (
        cam.shape == (224, 224)
        and explorer.overlay_signed
        and explorer.overlay_method == "integrated_gradients"
    )
    x = lite0.preprocess(cv.sample_image("coffee"))
    expected = cv.attribute(  # batched as in the widget: a listener gets the first point alone
        lite0.module, x, "integrated_gradients", target=967, steps=8, on_step=lambda m, f: None
    )[0].sum(0)
    assert np.allclose(cam, expected.numpy(), rtol=1e-5, atol=1e-7)
    # A bad parameter is refused with a message and the last good state stays.
    explorer.method_params = {"steps": 0}
    assert explorer.message["level"] == "error" and "steps" in explorer.message["text"]
    assert explorer.method_params == {"steps": 8} and np.array_equal(
        decode_payload(explorer.overlay_map), cam
    )
    explorer.method = "layercam"
    explorer.method_params = {}
    assert decode_payload(explorer.overlay_map).shape == (7, 7) and not explorer.overlay_signed
    assert explorer.message is None
