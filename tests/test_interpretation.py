"""Visual Explanation by Interpretation (cnnvis_widget.interpretation): the lasso against an
independent solver, the known relevant filter of a hand-set network found, resume after a stop,
save / load, the unit projection against conv_transpose2d, explanations, the model untouched,
bad input refused with the fix."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import nnls
from support import hook_count
from test_interpretation_support import BarNet, bars, identity
from test_model_untouched import _assert_same_state, _state
from torch import nn

from cnnvis_widget.interpretation import (
    RelevantFeatures,
    average_visualizations,
    explain,
    positive_lasso,
    relevant_features,
)
from cnnvis_widget.interpretation.explain import average_rule, outputs_are_data_classes
from cnnvis_widget.interpretation.lasso import objective
from cnnvis_widget.methods.gradients import unit_projection
from cnnvis_widget.model_view import eval_view
from cnnvis_widget.models import ModelBundle


def projected_gradient(x: np.ndarray, y: np.ndarray, mu: float, steps: int = 5000) -> np.ndarray:
    """FISTA on ||x w - y||^2 with the exact Euclidean projection onto {w >= 0, sum w <= mu}
    (clip; if the clipped sum exceeds mu, project onto the simplex of radius mu)."""

    def project(v: np.ndarray) -> np.ndarray:
        clipped = np.maximum(v, 0)
        if clipped.sum() <= mu:
            return clipped
        u = np.sort(v)[::-1]
        cumulative = np.cumsum(u) - mu
        rho = np.nonzero(u - cumulative / np.arange(1, len(v) + 1) > 0)[0][-1]
        return np.maximum(v - cumulative[rho] / (rho + 1), 0)

    step = 1 / (2 * np.linalg.norm(x, 2) ** 2)
    w = z = np.zeros(x.shape[1])
    t = 1.0
    for _ in range(steps):
        w_next = project(z - step * 2 * x.T @ (x @ z - y))
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mu", [0.05, 0.5, 3.0, 1000.0])
def test_lasso_matches_projected_gradient(seed: int, mu: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((80, 12))
    y = x[:, :3] @ np.array([1.0, 0.5, -0.7]) + 0.3 * rng.standard_normal(80)
    w = positive_lasso(x, y, mu)
    reference = projected_gradient(x, y, mu)
    assert (w >= 0).all() and w.sum() <= mu * (1 + 1e-12)
    assert objective(x, y, w) == pytest.approx(objective(x, y, reference), rel=1e-6)
    assert set(np.flatnonzero(w > 1e-6)) == set(np.flatnonzero(reference > 1e-6))
    if nnls(x, y)[0].sum() > mu:  # the bound is active: hit exactly
        assert w.sum() == pytest.approx(mu, rel=1e-9)


@pytest.fixture(scope="module")
def data() -> list[tuple[torch.Tensor, int]]:
    return bars(40)


def select(model: nn.Module, data, **options) -> RelevantFeatures:
    settings = {"layers": ["conv1"], "mu": 0.3, "progress": False, "preprocess": identity}
    return relevant_features(model, data, **{**settings, **options})


def test_the_known_filter_is_selected(data) -> None:
    features = select(BarNet().eval(), data)
    assert features.classes == [0, 1] and features.complete
    for label, detector in ((0, 0), (1, 1)):  # vertical bars: filter 0; horizontal: filter 1
        relevant = features.relevant(label)
        assert [(f.layer, f.channel) for f in relevant] == [("conv1", detector)]
    assert (features.weights >= 0).all()
    assert torch.allclose(features.weights.sum(1), torch.full((2,), 0.3, dtype=torch.float64))
    # the balanced sample: 20 images of each class
    labels = features.responses.table()[2]
    assert torch.bincount(labels[features.sample]).tolist() == [20, 20]


def test_default_layers_are_every_conv_and_weights_stay_in_the_bound(data) -> None:
    features = select(BarNet().eval(), data, layers=None, mu=10.0)
    assert features.responses.layers == ["conv1", "conv2"]
    assert features.weights.shape == (2, 6)
    assert (features.weights >= 0).all() and (features.weights.sum(1) <= 10 + 1e-9).all()
    assert features.relevant(0)[0].channel == 0 and features.relevant(1)[0].channel == 1
    dead = features.responses.columns.index(("conv1", 3))  # constant: never selected
    assert (features.weights[:, dead] == 0).all()


def test_a_stopped_pass_resumes_to_the_uninterrupted_result(data, tmp_path) -> None:
    model = BarNet().eval()
    whole = select(model, data, batch_size=8)
    stopped = select(model, data, batch_size=8, out=tmp_path, checkpoint_every=1,
                     should_stop=lambda done, total: done >= 16)  # fmt: skip
    assert not stopped.complete and stopped.responses.images == 16
    seen: list[int] = []
    resumed = select(model, data, batch_size=8, out=tmp_path,
                     should_stop=lambda done, total: seen.append(done) and False)  # fmt: skip
    assert seen[0] == 24  # went on after the 16 checkpointed images
    for one, two in zip(whole.responses.table(), resumed.responses.table(), strict=True):
        assert torch.equal(one, two)
    assert torch.equal(whole.weights, resumed.weights)
    loaded = RelevantFeatures.load(tmp_path, model_fingerprint=whole.responses.model_fingerprint)
    assert torch.equal(loaded.weights, whole.weights) and loaded.classes == whole.classes
    assert loaded.relevant(1) == whole.relevant(1) and loaded.settings == whole.settings
    with pytest.raises(ValueError, match="another model"):
        RelevantFeatures.load(tmp_path, model_fingerprint="0" * 64)
    with pytest.raises(ValueError, match="pooled by 'l2sq'"):
        select(model, data, out=tmp_path, pool="max")


@pytest.mark.filterwarnings("ignore:Sequential has no nn.ReLU")
def test_unit_projection_is_zeiler_fergus_through_one_conv() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    model = nn.Sequential(conv).eval()
    start = torch.zeros(2, 3, 7, 7, dtype=torch.float64)
    start[:, 1] = conv(x)[:, 1].detach()
    expected = F.conv_transpose2d(start, conv.weight, padding=1)
    got = unit_projection(eval_view(model), x, "0", 1, correct_strides=False)
    assert torch.allclose(got, expected, atol=1e-12)


def test_explanation_and_average_visualizations(data) -> None:
    model = BarNet().eval()
    features = select(model, data)
    averages = average_visualizations(model, features, data, k=5, preprocess=identity)
    assert set(averages.maps) == {(0, "conv1", 0), (1, "conv1", 1)}
    vertical = averages.of(0, "conv1", 0)
    assert vertical.shape == (1, 12, 12) and vertical.abs().max() <= 1
    assert len(averages.images[(0, "conv1", 0)]) == 5
    image, label = data[1]  # a horizontal bar
    explanation = explain(model, features, image, averages=averages)
    assert explanation.predicted == label == 1
    [only] = explanation.filters
    assert (only.filter.layer, only.filter.channel) == ("conv1", 1) and only.score > 0
    assert only.average is averages.maps[(1, "conv1", 1)]
    heat = explanation.heatmap
    assert heat.shape == (12, 12) and heat.max() == 1 and heat.min() >= 0
    row = int(image[0].sum(1).argmax())  # the bar's row carries the heat
    assert heat[row].mean() > 3 * heat.mean()


def test_average_rule_auto_is_deconvnet_with_max_pooling_else_guided(data) -> None:
    """Without max-pooling a DeconvNet projection is one fixed pattern wherever the filter's
    map fires; "auto" then takes guided backprop (the authors' code's rule)."""
    pooled_net = BarNet().eval()
    flat_net = BarNet().eval()
    flat_net.pool = nn.Identity()
    with torch.no_grad():  # conv2 spreads: its projection reaches where relu1 was off
        flat_net.conv2.weight[0, 0] = flat_net.conv2.weight[1, 1] = 1 / 9
    assert average_rule(pooled_net, "auto") == "deconvnet"
    assert average_rule(flat_net, "auto") == "guided"
    assert average_rule(flat_net, "deconvnet") == "deconvnet"
    with pytest.raises(ValueError, match="rule must be 'auto', 'deconvnet' or 'guided'"):
        average_rule(flat_net, "gradient")
    features = select(flat_net, data, layers=["conv2"])
    assert features.relevant(0) and features.relevant(1)

    def averages(rule: str) -> dict:
        got = average_visualizations(flat_net, features, data, k=4, rule=rule,
                                     preprocess=identity)  # fmt: skip
        return got.maps

    auto, guided, deconvnet = averages("auto"), averages("guided"), averages("deconvnet")
    assert auto.keys() == guided.keys() == deconvnet.keys()
    assert all(torch.equal(auto[key], guided[key]) for key in auto)
    assert any(not torch.allclose(auto[key], deconvnet[key], atol=1e-4) for key in auto)


def test_changed_data_is_not_reused_and_averages_need_the_same_data(data, tmp_path) -> None:
    """A label or an image changed in the middle of the data set: the saved responses are
    not reused (the fingerprint samples items across the set, with their labels), and
    average_visualizations refuses data other than the selection's."""
    model = BarNet().eval()
    features = select(model, data, out=tmp_path)
    middle = len(data) // 2
    relabelled = list(data)
    relabelled[middle] = (data[middle][0], 1 - data[middle][1])
    with pytest.raises(ValueError, match="computed on another data set"):
        select(model, relabelled, out=tmp_path)
    moved = list(data)
    moved[middle] = (data[middle][0].flip(-1), data[middle][1])
    with pytest.raises(ValueError, match="computed on another data set"):
        select(model, moved, out=tmp_path)
    for other in (relabelled, moved, data[:-1]):
        with pytest.raises(ValueError, match="not the data set these relevant features"):
            average_visualizations(model, features, other, k=2, preprocess=identity)


def test_out_that_is_a_file_is_refused_before_the_pass(data, tmp_path) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("")
    with pytest.raises(ValueError, match="is a file; pass a folder"):
        select(BarNet().eval(), data, out=afile, should_stop=lambda *_: pytest.fail("ran"))
    with pytest.raises(ValueError, match="layers= is empty"):
        select(BarNet().eval(), data, layers=[])


def test_the_model_is_untouched(data) -> None:
    """Checked after every call and during them: a hook of the user's own (which the eval
    views copy, so it runs inside every forward of the pass, the projections, the
    explanation) records the user's model's hook count and training flag at that moment."""
    model = BarNet().train()
    during: list[tuple[int, bool]] = []
    model.conv1.register_forward_hook(lambda *_: during.append((hook_count(model), model.training)))
    before = _state(model)
    features = select(model, data)
    averages = average_visualizations(model, features, data, k=3, preprocess=identity)
    explain(model, features, data[0][0], averages=averages)
    assert len(during) > 10 and all(state == (1, True) for state in during)
    _assert_same_state(before, _state(model))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": [image for image, _ in bars(6)]}, "no label"),
        ({"data": [item for item in bars(10) if item[1] == 0]}, "at least two classes"),
        ({"mu": 0.0}, "mu must be > 0"),
        ({"mu": -1.0}, "mu must be > 0"),
        ({"layers": ["conv9"]}, "unknown layer 'conv9'"),
        ({"per_class": 50}, "per_class <= 20"),
        ({"pool": "sum"}, "pool must be one of"),
    ],
)
def test_bad_input_is_refused_with_the_fix(data, change, message) -> None:
    options = {"data": data, **change}
    with pytest.raises(ValueError, match=message):
        select(BarNet().eval(), **options)


def test_nan_responses_are_refused(data) -> None:
    model = BarNet().eval()
    with torch.no_grad():
        model.conv1.bias[2] = float("nan")
    with pytest.raises(ValueError, match="conv1 channel 2 is nan on data set item 0"):
        select(model, data)


def test_explain_refuses_another_model(data) -> None:
    features = select(BarNet().eval(), data)
    other = BarNet().eval()
    with torch.no_grad():
        other.conv2.bias.fill_(0.1)
    with pytest.raises(ValueError, match="another model"):
        explain(other, features, data[0][0])


def test_explain_a_model_whose_outputs_are_other_classes(data) -> None:
    """A model with more outputs than the data set's classes (an ImageNet model on a small
    labelled set): a prediction outside the data's classes is explained as the data class whose
    relevant filters score highest; label= picks a class; a label the data lacks is refused."""
    model = BarNet().eval()
    features = select(model, data)
    wider = WiderBarNet(model).eval()  # outputs 2..5 are new classes, 4 wins
    selected = select(wider, data, layers=["bars.conv1"])
    x = data[1][0][None]  # a horizontal bar: class 1's filter fires
    assert data[1][1] == 1
    explanation = explain(wider, selected, x)
    assert explanation.predicted == 4 and explanation.label == 1
    assert [f.filter.channel for f in explanation.filters] == [1]
    assert explain(wider, selected, x, label=0).label == 0
    with pytest.raises(ValueError, match="not a class of the data set"):
        explain(wider, selected, x, label=4)
    same = explain(model, features, x)
    assert same.label == same.predicted == 1


class NamedBars(list):
    """The bars as a data set that names its classes (torchvision's ``classes``)."""

    classes: ClassVar[list[str]] = ["vertical", "horizontal"]


@pytest.mark.parametrize(
    ("model_labels", "same_classes"),
    [
        (["vertical", "horizontal"], True),
        (["Vertical", " horizontal "], True),  # case and spaces aside
        (["vertical bars", "horizontal"], True),  # one name holds the other
        (["class 0", "class 1"], True),  # generic names: nothing to compare
        (["cat", "horizontal"], False),  # half the names differ
        (["cat", "dog"], False),
        (["vertical"], False),  # data class 1 has no output of its own
    ],
)
def test_outputs_are_the_data_classes_only_when_the_names_agree(
    data, model_labels, same_classes
) -> None:
    """An ImageNet model on the photo collection predicts output 8 ("hen") on a bird: 8 is
    also a data class index ("food/vegetable"), so the index alone would explain the bird with
    the vegetable filters; the names decide."""
    model = SwappedBarNet().eval()  # predicts 1 on a vertical bar, data class 0's filter fires
    features = select(model, NamedBars(data), layers=["bars.conv1"])
    assert features.class_names == NamedBars.classes
    assert outputs_are_data_classes(model_labels, features) is same_classes
    bundle = ModelBundle(model, identity, model_labels, name="bars")
    x = data[0][0][None]
    assert data[0][1] == 0
    explanation = explain(bundle, features, x)
    assert explanation.predicted == 1
    assert explanation.label == (1 if same_classes else 0)


class SwappedBarNet(nn.Module):
    """BarNet with its two outputs swapped."""

    def __init__(self) -> None:
        super().__init__()
        self.bars = BarNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bars(x).flip(1)


def test_labels_may_be_numpy_integers_and_label_must_be_an_int(data, tmp_path) -> None:
    model = BarNet().eval()
    numpy_labels = [(image, np.int64(label)) for image, label in data]
    features = select(model, numpy_labels)
    assert torch.equal(features.weights, select(model, data).weights)
    saved = RelevantFeatures.load(select(model, NamedBars(data), out=tmp_path).save(tmp_path))
    assert saved.class_names == NamedBars.classes
    x = data[1][0]
    assert explain(model, features, x, label=np.int64(0)).label == 0
    for bad in (True, 1.0, "1", torch.tensor(1)):
        with pytest.raises(TypeError, match="label must be an int"):
            explain(model, features, x, label=bad)
    with pytest.raises(ValueError, match="rule must be 'guided' or 'deconvnet'; got 'bogus'"):
        explain(model, features, x, rule="bogus")


class WiderBarNet(torch.nn.Module):
    """BarNet with six outputs: its two, then four more of which output 4 is always largest."""

    def __init__(self, bars: torch.nn.Module) -> None:
        super().__init__()
        self.bars = bars

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        two = self.bars(x)
        extra = torch.zeros(x.shape[0], 4, dtype=two.dtype)
        extra[:, 2] = two.abs().sum(1) + 100.0
        return torch.cat([two, extra], 1)
