"""The "Why this class?" panel: Visual Explanation by Interpretation of the Explorer's image (the
payload against cv.interpretation.explain and average_visualizations), a tile click opening the
unit card or selecting the channel, a new image recomputing it, the model untouched, and bad
``interpretation=`` refused at construction."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image
from test_interpretation_support import BarNet, bars

import cnnvis_widget as cv
from cnnvis_widget.atlas.fingerprint import model_fingerprint
from cnnvis_widget.encode import decode_payload
from cnnvis_widget.interpretation import average_visualizations, explain, relevant_features
from cnnvis_widget.widgets.interpretation import average_image
from tests.support import hook_count, send_from_browser, sent_to_browser

LABELS = ["vertical", "horizontal"]


def bar_bundle(model: torch.nn.Module | None = None) -> cv.ModelBundle:
    preprocess = cv.Preprocess(input_size=(12, 12), mean=(0.0,), std=(1.0,), resize=12)
    return cv.ModelBundle(model or BarNet().eval(), preprocess, LABELS, name="BarNet")


@pytest.fixture(scope="module")
def data() -> list[tuple[torch.Tensor, int]]:
    return [(image.clamp(0, 1), label) for image, label in bars(40)]


@pytest.fixture(scope="module")
def bundle() -> cv.ModelBundle:
    return bar_bundle()


@pytest.fixture(scope="module")
def features(bundle, data):
    # mu = 10: both layers' filters, three relevant per class (two fire on a bar)
    return relevant_features(bundle, data, mu=10.0, standardize=True, progress=False)


def png(image: torch.Tensor) -> bytes:
    pixels = (image[0].numpy() * 255).round().astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, format="PNG")
    return out.getvalue()


def test_payload_has_the_predicted_class_heatmap_and_tiles_in_score_order(
    bundle, data, features
) -> None:
    image = data[1][0]  # a horizontal bar
    explorer = cv.Explorer(bundle, image, interpretation=features, data=data)
    sent = sent_to_browser(explorer)
    assert explorer.wait(60)
    assert explorer.why_available is True
    why = explorer.why_class
    assert why is not None and explorer.why_class_job["state"] == "done"
    expected = explain(bundle, features, explorer.session.input)
    assert why["predicted"] == expected.predicted == 1 and why["label"] == "horizontal"
    assert why["relevant"] == len(features.relevant(1)) == 3
    heatmap = decode_payload(why["heatmap"])
    assert heatmap.dtype == np.float32 and heatmap.shape == (12, 12)
    assert np.allclose(heatmap, expected.heatmap.numpy(), atol=1e-6)
    assert heatmap.max() == pytest.approx(1.0)
    # the tiles: explain's filters, highest score first, with their weights and scores
    tiles = why["filters"]
    assert len(tiles) == len(expected.filters) >= 2
    assert [(t["layer"], t["channel"]) for t in tiles] == [
        (f.filter.layer, f.filter.channel) for f in expected.filters
    ]
    scores = [t["score"] for t in tiles]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0
    for tile, item in zip(tiles, expected.filters, strict=True):
        assert tile["weight"] == pytest.approx(item.filter.weight)
        assert tile["score"] == pytest.approx(item.score)
        assert tile["score"] == pytest.approx(tile["weight"] * tile["response"])
    # each tile's average visualization: average_visualizations' map of that filter
    averages = average_visualizations(bundle, features, data, k=20, classes=[1])
    for tile in tiles:
        shown = decode_payload(tile["average"])
        assert shown.shape == (12, 12, 3)
        reference = average_image(averages.of(1, tile["layer"], tile["channel"]))
        assert np.array_equal(shown, decode_payload(reference))
        assert shown.std() > 5  # not blank
    # the final payload went out with its arrays as binary buffers
    carrying = [m for m in sent if (m["state"].get("why_class") or {}).get("filters")]
    assert carrying and len(carrying[-1]["buffers"]) >= 1 + len(tiles)


def test_a_new_image_recomputes_the_explanation(bundle, data, features) -> None:
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features, data=data)
    assert explorer.wait(60) and explorer.why_class["predicted"] == 1
    first_job = explorer.why_class_job["id"]
    send_from_browser(explorer, {"type": "upload", "name": "vertical.png"}, [png(data[0][0])])
    assert explorer.wait(60)
    why = explorer.why_class
    assert why["predicted"] == 0 and why["label"] == "vertical"
    assert explorer.why_class_job["id"] > first_job
    expected = explain(bundle, features, explorer.session.input)
    assert [(t["layer"], t["channel"]) for t in why["filters"]] == [
        (f.filter.layer, f.filter.channel) for f in expected.filters
    ]
    assert np.allclose(decode_payload(why["heatmap"]), expected.heatmap.numpy(), atol=1e-6)


def test_a_tile_click_opens_the_unit_card(bundle, data, features) -> None:
    atlas = cv.unit_atlas(bundle, data, ["conv2"], k=3, progress=False)
    explorer = cv.Explorer(
        bundle, data[1][0], interpretation=features, atlas=atlas, data=data, layer="relu1"
    )
    assert explorer.wait(60)
    tiles = explorer.why_class["filters"]
    in_atlas = next(t for t in tiles if t["layer"] == "conv2")
    send_from_browser(
        explorer, {"type": "why", "layer": in_atlas["layer"], "channel": in_atlas["channel"]}
    )
    assert explorer.message is None
    assert explorer.selected_layer == "conv2"
    assert explorer.selected_channel == in_atlas["channel"]
    card = explorer.unit_card
    assert card is not None and card["layer"] == "conv2" and card["unit"] == in_atlas["channel"]
    assert [e["index"] for e in card["examples"]] == [
        e.index for e in atlas.top("conv2", in_atlas["channel"])
    ]

    # No atlas covers conv1: the click still selects the layer and the channel in the grid.
    other = next(t for t in tiles if t["layer"] == "conv1")
    send_from_browser(explorer, {"type": "why", "layer": "conv1", "channel": other["channel"]})
    assert explorer.selected_layer == "conv1" == explorer.grid_layer
    assert explorer.selected_channel == other["channel"]
    assert explorer.overlay_source == "channel"
    assert explorer.unit_card is None

    # A filter that is not a tile is refused in the banner; the selection stays.
    send_from_browser(explorer, {"type": "why", "layer": "conv1", "channel": 3})
    assert "not a filter of the shown explanation" in explorer.message["text"]
    assert explorer.selected_channel == other["channel"]


def test_without_data_the_tiles_have_no_average_and_say_why(bundle, data, features) -> None:
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features)
    assert explorer.wait(60)
    why = explorer.why_class
    assert why["filters"] and all(t["average"] is None for t in why["filters"])
    assert "pass data=" in why["note"]
    other = data[:20]  # not the data set the filters were selected on
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features, data=other)
    assert explorer.wait(60)
    assert "not the data set these filters were selected on" in explorer.why_class["note"]
    assert all(t["average"] is None for t in explorer.why_class["filters"])


def test_the_users_model_is_untouched(data) -> None:
    model = BarNet().train()
    bundle = bar_bundle(model)
    features = relevant_features(bundle, data, mu=10.0, standardize=True, progress=False)
    during: list[tuple[int, bool]] = []
    model.conv1.register_forward_hook(lambda *_: during.append((hook_count(model), model.training)))
    weights = model_fingerprint(model)
    flags = [m.training for m in model.modules()]
    grads = [p.grad for p in model.parameters()]
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features, data=data)
    assert explorer.wait(60) and explorer.why_class["filters"]
    send_from_browser(explorer, {"type": "upload", "name": "v.png"}, [png(data[0][0])])
    assert explorer.wait(60)
    assert during and all(state == (1, True) for state in during)
    assert model_fingerprint(model) == weights
    assert [m.training for m in model.modules()] == flags
    assert [p.grad for p in model.parameters()] == grads
    assert all(p.requires_grad for p in model.parameters())
    assert hook_count(model) == 1


def test_bad_interpretation_is_refused_at_construction(bundle, data, features) -> None:
    with pytest.raises(TypeError, match="interpretation must be a RelevantFeatures"):
        cv.Explorer(bundle, data[1][0], interpretation={"conv1": [0]})
    other = BarNet().eval()
    with torch.no_grad():
        other.conv2.bias.fill_(0.1)
    with pytest.raises(ValueError, match="computed for another model"):
        cv.Explorer(bar_bundle(other), data[1][0], interpretation=features)
    with pytest.raises(TypeError, match="averages must be the result"):
        cv.Explorer(bundle, data[1][0], interpretation=features, averages=[1])
    with pytest.raises(ValueError, match="also needs interpretation="):
        averages = average_visualizations(bundle, features, data, k=2)
        cv.Explorer(bundle, data[1][0], averages=averages)
    stale = average_visualizations(bundle, features, data, k=2)
    stale.model_fingerprint = "0" * 64  # averages of another model's filters
    with pytest.raises(ValueError, match="averages= were computed on another model"):
        cv.Explorer(bundle, data[1][0], interpretation=features, averages=stale)
    # without an interpretation the panel is hidden and nothing is computed
    plain = cv.Explorer(bundle, data[1][0])
    assert plain.why_available is False and plain.why_class is None
    assert plain.why_class_job is None


def test_given_averages_are_shown_without_data(bundle, data, features) -> None:
    averages = average_visualizations(bundle, features, data, k=5)
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features, averages=averages)
    assert explorer.wait(60)
    for tile in explorer.why_class["filters"]:
        expected = average_image(averages.of(1, tile["layer"], tile["channel"]))
        assert np.array_equal(decode_payload(tile["average"]), decode_payload(expected))
    assert explorer.why_class["note"] == ""


def test_stop_keeps_the_explanation_shown_so_far(bundle, data, features, monkeypatch) -> None:
    from cnnvis_widget.widgets import interpretation

    calls: list[int] = []
    real = interpretation.average_visualizations

    def stopping(*args, **kwargs):
        calls.append(1)
        send_from_browser(explorer, {"type": "cancel", "job": "why_class_job"})
        return real(*args, **kwargs)

    monkeypatch.setattr(interpretation, "average_visualizations", stopping)
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features)  # no data: no averages
    assert explorer.wait(60) and not calls
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features, data=data)
    assert explorer.wait(60)
    assert calls == [1]  # stopped after the first filter's average
    assert explorer.why_class_job["state"] == "cancelled"
    tiles = explorer.why_class["filters"]  # the heatmap and tiles sent before the averages
    assert len(tiles) >= 2 and explorer.why_class["heatmap"] is not None
    assert tiles[0]["average"] is not None and tiles[-1]["average"] is None


def test_a_predicted_class_the_data_lacks_is_explained_by_the_best_data_class(
    bundle, data, features
) -> None:
    """A model whose prediction is not among the data set's classes (an ImageNet model on a
    small labelled set): the panel shows the data class whose relevant filters score highest
    (explain's fallback), says so, and names it from the data set."""
    only_vertical = dataclasses.replace(features, classes=[0], weights=features.weights[:1])
    explorer = cv.Explorer(bundle, data[1][0], interpretation=only_vertical)  # predicts 1
    assert explorer.wait(60)
    why = explorer.why_class
    expected = explain(bundle, only_vertical, explorer.session.input)
    assert expected.predicted == 1 and expected.label == 0
    assert why["predicted"] == 0 and why["relevant"] == len(only_vertical.relevant(0))
    assert "not a class of the data set the relevant filters were selected on" in why["note"]
    assert [(t["layer"], t["channel"]) for t in why["filters"]] == [
        (f.filter.layer, f.filter.channel) for f in expected.filters
    ]
    assert explorer.why_class_job["state"] == "done"


class NamedBars(list):
    """The bars data set with class names, as torchvision data sets have them."""

    classes = ("vertical bar", "horizontal bar")


def keys(explanation) -> list[tuple[str, int]]:
    """An Explanation's filters as (layer, channel), highest score first."""
    return [(f.filter.layer, f.filter.channel) for f in explanation.filters]


def assert_explains(why, expected) -> None:
    """The ``why_class`` payload is exactly ``expected`` (an Explanation)'s filters, scores and
    heatmap."""
    assert why["predicted"] == expected.label
    assert [(t["layer"], t["channel"]) for t in why["filters"]] == keys(expected)
    for tile, item in zip(why["filters"], expected.filters, strict=True):
        assert tile["score"] == pytest.approx(item.score)
        assert tile["response"] == pytest.approx(item.response)
    assert np.allclose(decode_payload(why["heatmap"]), expected.heatmap.numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def named(data) -> NamedBars:
    return NamedBars(data)


@pytest.fixture(scope="module")
def named_features(bundle, named):
    """The relevant filters selected on ``named`` (its fingerprint: its averages are computed)."""
    return relevant_features(bundle, named, mu=10.0, standardize=True, progress=False)


def test_a_chosen_class_is_explained_on_this_and_later_images(
    bundle, named, named_features
) -> None:
    """Why not class X? The user picks another class of the data set; the panel explains it
    (explain's label=), keeps it for the next image, and goes back to the prediction on null."""
    data, features = named, named_features
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features, data=named)
    assert explorer.wait(60)
    why = explorer.why_class
    assert why["chosen"] is None and why["model_predicted"] == why["predicted"] == 1
    assert why["model_label"] == why["label"] == "horizontal"
    assert why["choices"] == [
        {"label": 0, "name": "vertical bar"},
        {"label": 1, "name": "horizontal bar"},
    ]
    first_job = explorer.why_class_job["id"]

    send_from_browser(explorer, {"type": "why_label", "label": 0})
    assert explorer.wait(60) and explorer.message is None
    assert explorer.why_class_job["id"] > first_job and explorer.why_class_job["state"] == "done"
    why = explorer.why_class
    x = explorer.session.input
    expected = explain(bundle, features, x, top=3, label=0)
    predicted = explain(bundle, features, x, top=3)
    assert expected.filters and keys(expected) != keys(predicted)  # another explanation
    assert_explains(why, expected)
    assert why["chosen"] == 0 and why["label"] == "vertical bar"
    assert why["model_predicted"] == 1 and why["model_label"] == "horizontal"
    assert why["relevant"] == len(features.relevant(0))
    assert "the model predicts" not in why["note"]  # not explain's fallback
    # the chosen class's average visualizations, keyed by (class, layer, channel)
    averages = average_visualizations(bundle, features, data, k=20, classes=[0])
    for tile in why["filters"]:
        reference = average_image(averages.of(0, tile["layer"], tile["channel"]))
        assert np.array_equal(decode_payload(tile["average"]), decode_payload(reference))

    # The choice stays for the next image (another horizontal bar: the model predicts 1).
    send_from_browser(explorer, {"type": "upload", "name": "h.png"}, [png(data[3][0])])
    assert explorer.wait(60)
    x = explorer.session.input
    assert explorer.why_class["chosen"] == 0 and explorer.why_class["model_predicted"] == 1
    assert_explains(explorer.why_class, explain(bundle, features, x, top=3, label=0))

    # null: the prediction again.
    send_from_browser(explorer, {"type": "why_label", "label": None})
    assert explorer.wait(60)
    why = explorer.why_class
    assert why["chosen"] is None and why["predicted"] == 1 and why["label"] == "horizontal"
    assert_explains(why, explain(bundle, features, x, top=3))


@pytest.mark.parametrize("label", [5, -1, "0", True, 0.0, [0]])
def test_a_bad_class_choice_is_refused_and_the_panel_still_works(
    bundle, data, features, label
) -> None:
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features)
    assert explorer.wait(60)
    before = explorer.why_class
    send_from_browser(explorer, {"type": "why_label", "label": label})
    assert explorer.message["level"] == "error"
    text = explorer.message["text"]
    assert f"label {label!r} is not a class of the data set" in text and "[0, 1]" in text
    assert explorer.why_class is before and explorer.why_class["chosen"] is None
    send_from_browser(explorer, {"type": "why_label"})  # no label at all
    assert "is not a class of the data set" in explorer.message["text"]

    send_from_browser(explorer, {"type": "why_label", "label": 0})
    assert explorer.wait(60) and explorer.message is None
    assert explorer.why_class["chosen"] == 0
    expected = explain(bundle, features, explorer.session.input, top=3, label=0)
    assert_explains(explorer.why_class, expected)

    plain = cv.Explorer(bundle, data[1][0])  # no interpretation: nothing to choose
    send_from_browser(plain, {"type": "why_label", "label": 0})
    assert "no interpretation=" in plain.message["text"] and plain.why_class is None


def test_the_choices_are_the_classes_with_relevant_filters(bundle, data, features) -> None:
    weights = features.weights.clone()
    weights[0] = 0  # class 0 has no relevant filter left
    only_horizontal = dataclasses.replace(features, weights=weights)
    explorer = cv.Explorer(bundle, data[1][0], interpretation=only_horizontal)
    assert explorer.wait(60)
    assert explorer.why_class["choices"] == [{"label": 1, "name": "class 1"}]
    explorer = cv.Explorer(bundle, data[1][0], interpretation=features)  # no data: no names
    assert explorer.wait(60)
    assert explorer.why_class["choices"] == [
        {"label": 0, "name": "class 0"},
        {"label": 1, "name": "class 1"},
    ]


def test_class_names_come_with_the_features_also_without_data(bundle, data) -> None:
    """The names are kept with the relevant features: the choices and a chosen class are named
    even when the Explorer is given no data=."""
    named = relevant_features(bundle, NamedBars(data), mu=10.0, standardize=True, progress=False)
    explorer = cv.Explorer(bundle, data[1][0], interpretation=named)
    assert explorer.wait(60)
    assert explorer.why_class["choices"] == [
        {"label": 0, "name": "vertical bar"},
        {"label": 1, "name": "horizontal bar"},
    ]
    send_from_browser(explorer, {"type": "why_label", "label": 0})
    assert explorer.wait(60)
    assert explorer.why_class["chosen"] == 0 and explorer.why_class["label"] == "vertical bar"
