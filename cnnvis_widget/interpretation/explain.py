"""Interpretation and explanation with the relevant filters (Oramas et al., ICLR 2019, Secs.
3.2-3.3): each relevant filter's average visualization over its top images of the class, and,
for a test image, the predicted class's relevant filters that fired on it with their DeconvNet
projections combined into one heatmap."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..atlas.fingerprint import model_fingerprint, same_data
from ..checks import check_input, check_int
from ..dataset_pass import PassSetup, layer_outputs, model_and_preprocess, split_item
from ..methods.gradients import unit_projection
from ..methods.relu_rules import Rule
from ..methods.stride_fix import StrideFix
from ..model_io import logits_of, to_model_input
from ..model_view import engine_call, eval_view
from ..models import AnyPreprocess, ModelBundle
from .responses import pooled
from .result import RelevantFeatures, RelevantFilter

Key = tuple[int, str, int]
"""(class, layer, channel)."""


@dataclass
class AverageVisualizations:
    """``maps[(class, layer, channel)]``: the filter's average projection (C, H, W) in
    model-input coordinates, each image's projection scaled to max |value| = 1 before the mean
    (so values lie in [-1, 1]); ``images[key]``: the dataset indices averaged, best first;
    ``model_fingerprint``: the model they were projected through ("" when unknown)."""

    maps: dict[Key, torch.Tensor] = field(default_factory=dict)
    images: dict[Key, list[int]] = field(default_factory=dict)
    model_fingerprint: str = ""

    def of(self, label: int, layer: str, channel: int) -> torch.Tensor:
        key = (label, layer, channel)
        if key not in self.maps:
            raise KeyError(
                f"no average visualization of {layer} channel {channel} for class {label}; "
                "it is computed for the class's relevant filters only."
            )
        return self.maps[key]


@dataclass(frozen=True)
class ExplainedFilter:
    """One filter of an explanation: the relevant filter, its standardized response on the
    image (``response``), ``score`` = weight * response (> 0), its projection heatmap on the
    image (H, W) in [0, 1], and its average visualization (C, H, W) or None."""

    filter: RelevantFilter
    response: float
    score: float
    heatmap: torch.Tensor
    average: torch.Tensor | None


@dataclass(frozen=True)
class Explanation:
    """``predicted``: the class index the model predicts; ``filters``: its top relevant
    filters that fired on the image, highest score first; ``heatmap`` (H, W) in [0, 1]: their
    heatmaps combined (zeros when none fired)."""

    predicted: int
    filters: list[ExplainedFilter]
    heatmap: torch.Tensor
    label: int = -1
    """The data set's class explained (its relevant filters): ``label=`` when given, else
    ``predicted`` when it is one of the data set's classes, else the class whose relevant filters
    score highest on the image (a model whose outputs are not the data set's classes)."""


def _checked(model: ModelBundle | nn.Module, features: RelevantFeatures) -> nn.Module:
    module, _ = model_and_preprocess(model, None)
    if not isinstance(features, RelevantFeatures):
        raise TypeError(
            f"features must be the result of cv.relevant_features; got {type(features).__name__}."
        )
    if not features.complete:
        raise ValueError(
            "the relevant features are incomplete (their pass was stopped); finish it with "
            "cv.relevant_features(..., out=the same folder) first."
        )
    if model_fingerprint(module) != features.responses.model_fingerprint:
        raise ValueError(
            "these relevant features were selected on another model (or other weights); pass "
            "the model they were computed on, or select them again on this one."
        )
    return module


def average_rule(module: nn.Module, rule: str) -> Rule:
    """The ReLU rule of the average visualizations: ``rule`` itself, or for ``"auto"``
    DeconvNet when ``module`` has a max-pool and guided otherwise. DeconvNet keeps only the
    max-pool switches of the forward pass, so without max-pooling a filter's projection is one
    fixed pattern placed where its map fires, whatever the image (on EfficientNet-Lite0 every
    deep filter's average was the same smooth square); guided backprop, the authors' released
    code's rule, also keeps the forward ReLU masks."""
    if rule == "auto":
        pools = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
        return "deconvnet" if any(isinstance(m, pools) for m in module.modules()) else "guided"
    if rule not in ("deconvnet", "guided"):
        raise ValueError(f"rule must be 'auto', 'deconvnet' or 'guided'; got {rule!r}.")
    return rule  # type: ignore[return-value]


def _heat(projection: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) projections -> (N, H, W): |.| summed over colour channels, min-max
    scaled to [0, 1] per image (the authors' code's normalization); a flat map is 0."""
    heat = projection.abs().sum(1)
    low = heat.flatten(1).amin(1)[:, None, None]
    span = heat.flatten(1).amax(1)[:, None, None] - low
    return torch.where(span > 0, (heat - low) / span.clamp(min=1e-30), torch.zeros_like(heat))


@engine_call
def average_visualizations(
    model: ModelBundle | nn.Module,
    features: RelevantFeatures,
    data: Any,
    *,
    k: int = 20,
    classes: list[int] | None = None,
    rule: Rule | Literal["auto"] = "auto",
    stride_correction: bool = True,
    stride_fix: StrideFix = "nearest",
    preprocess: AnyPreprocess | None = None,
) -> AverageVisualizations:
    """Per class c and relevant filter j of c: the mean over j's top-``k`` images of class c
    (by j's pooled response, over every image of c in the table) of j's DeconvNet projection
    to pixel space (:func:`~cnnvis_widget.methods.gradients.unit_projection`: start at j's own
    map, every other channel zero; ``rule`` "deconvnet" (the paper's word), "guided" (the
    authors' released code's rule), or "auto", the default: "deconvnet" when the network has
    a max-pool, else "guided" (:func:`average_rule`); the stride fix on, ``stride_fix="nearest"`` as in the authors'
    code, :mod:`~cnnvis_widget.methods.stride_fix`). Each projection is scaled to max
    |value| = 1 first, so every image weighs the same. ``data`` is the data set the features
    were selected on (its items are read by index). One batched forward + backward per
    filter; the model is never changed."""
    module = _checked(model, features)
    _, prepare = model_and_preprocess(model, preprocess)
    check_int("k", k, low=1)
    rule = average_rule(module, rule)
    if not same_data(features.responses.data_fingerprint, data, prepare):
        raise ValueError(
            "data is not the data set these relevant features were selected on (fingerprints "
            "differ): the averages are over the top images of that data set's table; pass it."
        )
    indices, responses, labels = features.responses.table()
    wanted = features.classes if classes is None else classes
    view = eval_view(module)
    result = AverageVisualizations(model_fingerprint=features.responses.model_fingerprint)
    for label in wanted:
        in_class = torch.nonzero(labels == label).flatten()
        for relevant in features.relevant(label):
            values = responses[in_class, relevant.column]
            best = in_class[values.argsort(descending=True, stable=True)[:k]]
            rows = [int(indices[i]) for i in best]
            x = torch.stack([prepare(split_item(data[i])[0])[0] for i in rows])
            x = to_model_input(x, module)
            projection = unit_projection(
                view, x, relevant.layer, relevant.channel, rule=rule,
                correct_strides=stride_correction, stride_fix=stride_fix,
            ).float()  # fmt: skip
            peak = projection.abs().flatten(1).amax(1).clamp(min=1e-30)
            scaled = projection / peak.view(-1, 1, 1, 1)
            key = (label, relevant.layer, relevant.channel)
            result.maps[key] = scaled.mean(0).cpu()
            result.images[key] = rows
    return result


@engine_call
def explain(
    model: ModelBundle | nn.Module,
    features: RelevantFeatures,
    x: torch.Tensor,
    *,
    top: int = 3,
    combine: str = "max",
    averages: AverageVisualizations | None = None,
    rule: Rule = "guided",
    stride_correction: bool = True,
    stride_fix: StrideFix = "nearest",
    label: int | None = None,
) -> Explanation:
    """Explain the model's prediction on one model input ``x`` (1, C, H, W) or (C, H, W)
    (``bundle.preprocess(image)``): the predicted class c, then the standardized responses
    z (m,) of ``x`` and the scores s_j = w_cj * z_j; the ``top`` filters with s_j > 0 (the
    authors' code shows 3), highest first, each with its projection heatmap on ``x`` (|projection|
    summed over colour channels, scaled to [0, 1]; ``rule`` "guided", the ReLU rule of the
    authors' released code, or "deconvnet", the paper's text: on an8Flower the guided heatmaps
    put 0.79 of their mass on the part that decides the class, the DeconvNet ones 0.30, as
    DeconvNet ignores the forward ReLU masks; docs/an8flower.md) and its average visualization
    from ``averages``; ``heatmap`` (H, W): their heatmaps combined pixel-wise by ``"max"``
    (the authors' code) or ``"mean"``. The class explained is ``label`` when given; else the
    prediction when it is one of the data set's classes and the model's outputs are the data
    set's classes (:func:`outputs_are_data_classes`: compared by name when the model is a
    ModelBundle and the data set names its classes); else (a model whose outputs are other
    classes, e.g. an ImageNet model on the photo collection's classes) the data set's class
    whose relevant filters score highest on ``x`` (``Explanation.label``)."""
    module = _checked(model, features)
    check_int("top", top, low=1)
    if combine not in ("max", "mean"):
        raise ValueError(f"combine must be 'max' or 'mean'; got {combine!r}.")
    if rule not in ("deconvnet", "guided"):
        raise ValueError(f"rule must be 'guided' or 'deconvnet'; got {rule!r}.")
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        x = x[None]
    check_input(x, module)
    if x.shape[0] != 1:
        raise ValueError(f"explain takes one image (1, C, H, W); got a batch of {x.shape[0]}.")
    x = to_model_input(x, module)
    table = features.responses
    setup = PassSetup.of(module, table.layers, x[0], 1, 0, 1, "explain")
    outputs = layer_outputs(setup, x)
    responses = torch.cat([pooled(outputs[name], table.pool) for name in table.layers], 1)
    z = features.features(responses.cpu())[0]
    with torch.inference_mode():
        predicted = int(logits_of(setup.view(x)).argmax(1)[0])
    if label is None:
        same = outputs_are_data_classes(getattr(model, "labels", None), features)
        label = predicted if predicted in features.classes and same else _best_class(features, z)
    elif isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise TypeError(
            f"label must be an int, a class of the data set the filters were selected on "
            f"({features.classes}), or None; got {label!r}."
        )
    elif label not in features.classes:
        raise ValueError(
            f"label={label!r} is not a class of the data set the filters were selected on "
            f"({features.classes}); pass one of them, or None."
        )
    label = int(label)
    chosen: list[tuple[RelevantFilter, float, float]] = []
    for relevant in features.relevant(label):
        response = float(z[relevant.column])
        score = relevant.weight * response
        if score > 0:
            chosen.append((relevant, response, score))
    chosen.sort(key=lambda item: -item[2])
    view = setup.view  # the same eval view the responses ran on
    explained = []
    for relevant, response, score in chosen[:top]:
        projection = unit_projection(
            view, x, relevant.layer, relevant.channel, rule=rule,
            correct_strides=stride_correction, stride_fix=stride_fix,
        )  # fmt: skip
        heat = _heat(projection.float())[0].cpu()
        key = (label, relevant.layer, relevant.channel)
        average = None if averages is None else averages.maps.get(key)
        explained.append(ExplainedFilter(relevant, response, score, heat, average))
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if not explained:
        heatmap = torch.zeros(size)
    else:
        stack = torch.stack([item.heatmap for item in explained])
        heatmap = stack.amax(0) if combine == "max" else stack.mean(0)
    return Explanation(predicted, explained, heatmap, label)


def outputs_are_data_classes(model_labels: Any, features: RelevantFeatures) -> bool:
    """Whether the model's output i is the data set's class i: True unless both sides name
    their classes and the names differ (case and spaces aside, one holding the other counts
    as the same) for half the data set's classes
    or more, or a data class has no model output of its index (an ImageNet model on the photo
    collection: output 8 is "hen", data class 8 "food/vegetable")."""
    names = features.class_names
    generic = all(re.fullmatch(r"class \d+", str(n)) for n in model_labels or [])
    if not model_labels or not names or generic:  # nothing to compare
        return True
    known = [c for c in features.classes if c < len(names)]
    if not known:
        return True
    if any(c >= len(model_labels) for c in known):
        return False

    def same(a: str, b: str) -> bool:  # "vertical" and "vertical bar" name one class
        a, b = " ".join(a.lower().split()), " ".join(b.lower().split())
        return a in b or b in a

    matches = sum(same(str(model_labels[c]), names[c]) for c in known)
    return 2 * matches > len(known)


def _best_class(features: RelevantFeatures, z: torch.Tensor) -> int:
    """The class whose relevant filters score highest on features ``z`` (m,): sum_j w_cj z_j."""
    scores = features.weights.to(z.dtype) @ z
    return features.classes[int(scores.argmax())]
