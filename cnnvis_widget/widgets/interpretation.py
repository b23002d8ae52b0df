"""The "Why this class?" panel: Visual Explanation by Interpretation (Oramas et al., ICLR 2019)
of the Explorer's image, from the relevant filters given as ``Explorer(...,
interpretation=cv.interpretation.relevant_features(...))``.

For each image the panel explains the predicted class, or the data-set class the user chose
(``{"type": "why_label", "label": int | null}``: "why not class X?", kept for later images
until set back to null), in the background (``why_class_job``: progress and Stop):
:func:`~cnnvis_widget.interpretation.explain` gives the class's relevant filters that fired
(score w * z > 0, highest first) and their combined heatmap, sent at once; then each shown
filter's average visualization (given as ``averages=``, or computed over the Explorer's
``data=`` when it is the data set the filters were selected on, kept for later images) fills
its tile. A tile click opens that filter's unit card (``show_unit``), or selects its layer and
channel in the filter grid when no atlas covers the layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import traitlets

from ..atlas.fingerprint import model_fingerprint, same_data
from ..encode import ndarray_payload
from ..interpretation import (
    AverageVisualizations,
    Explanation,
    RelevantFeatures,
    average_visualizations,
    explain,
)
from ..interpretation.explain import Key
from ..models import ModelBundle
from ..preprocess import display_pixels
from ..protocol import NdArray, WhyChoice, WhyClass, WhyFilter
from .channel import JobChannel, JobEnd, Report, Update
from .panel import Change, Host, Panel, traits_of
from .traits import optional_dict

TOP = 3
"""Filters shown per explanation (the authors' code shows 3)."""
AVERAGE_K = 20
"""Top images of the class each average visualization is the mean over
(:func:`~cnnvis_widget.interpretation.average_visualizations`'s default)."""
PROGRESS_INTERVAL_S = 0.25


class InterpretationTraits(traitlets.HasTraits):
    """The "Why this class?" panel's synced traits (docs/protocol.md)."""

    # an interpretation was given (False: JS hides the panel)
    why_available = traitlets.Bool(False).tag(sync=True)
    why_class = optional_dict()
    why_class_job = optional_dict()


@dataclass
class InterpretationData:
    """What the Explorer was given for the panel: the relevant filters, their average
    visualizations so far (the user's, then the ones computed here), and the data set to
    compute the missing ones over (None: ``note`` says why there is none)."""

    features: RelevantFeatures
    averages: dict[Key, torch.Tensor] = field(default_factory=dict)
    data: Any = None
    note: str = ""
    top: int = TOP
    k: int = AVERAGE_K


def interpretation_data(
    bundle: ModelBundle,
    interpretation: Any,
    averages: Any = None,
    data: Any = None,
) -> InterpretationData | None:
    """Check the Explorer's ``interpretation`` / ``averages`` arguments against its model and
    data: refused with the fix when they are not what they should be or belong to another
    model; ``data`` is used for average visualizations only when it is the data set the
    filters were selected on (fingerprints), else the tiles say why they have none."""
    if interpretation is None:
        if averages is not None:
            raise ValueError(
                "Explorer(..., averages=...) also needs interpretation=: the relevant features "
                "(cv.interpretation.relevant_features) the averages were computed for."
            )
        return None
    if not isinstance(interpretation, RelevantFeatures):
        raise TypeError(
            "interpretation must be a RelevantFeatures, the result of "
            "cv.interpretation.relevant_features(model, data) (or RelevantFeatures.load); got "
            f"{type(interpretation).__name__}."
        )
    if not interpretation.complete:
        raise ValueError(
            "these relevant features are incomplete (their pass was stopped); finish it with "
            "cv.interpretation.relevant_features(..., out=the same folder) first."
        )
    fingerprint = model_fingerprint(bundle.module)
    if interpretation.responses.model_fingerprint != fingerprint:
        raise ValueError(
            "interpretation= was computed for another model (or other weights): its model "
            "fingerprint differs from this Explorer's model. Select the relevant features on "
            "this model: cv.interpretation.relevant_features(model, data)."
        )
    if averages is not None and not isinstance(averages, AverageVisualizations):
        raise TypeError(
            "averages must be the result of cv.interpretation.average_visualizations(model, "
            f"features, data); got {type(averages).__name__}."
        )
    if averages is not None and averages.model_fingerprint not in ("", fingerprint):
        raise ValueError(
            "averages= were computed on another model (or other weights) than this Explorer's; "
            "compute them on this one: cv.interpretation.average_visualizations(model, "
            "features, data)."
        )
    given = dict(averages.maps) if averages is not None else {}
    if data is None:
        note = (
            "no average visualizations: pass data= (the data set the filters were selected "
            "on) or averages=."
        )
        return InterpretationData(interpretation, given, None, "" if given else note)
    if not same_data(interpretation.responses.data_fingerprint, data, bundle.preprocess):
        note = (
            "no average visualizations: data= is not the data set these filters were "
            "selected on; pass that one, or averages=."
        )
        return InterpretationData(interpretation, given, None, "" if given else note)
    return InterpretationData(interpretation, given, data)


def average_image(average: torch.Tensor) -> NdArray:
    """An average visualization (C, H, W) in [-1, 1] as uint8 (H, W, 3): 0.5 + 0.5 v / max|v|
    (zero grey, the strongest value black or white, as DeconvNet projections are shown)."""
    peak = float(average.abs().max())
    scaled = 0.5 + 0.5 * average.float() / (peak if peak > 0 else 1.0)
    return ndarray_payload(display_pixels(scaled[None])[0], "uint8")


class InterpretationPanel(Panel):
    """Explains the predicted class of each image on ``why_class_job``, or the data-set class
    the user chose (``{"type": "why_label", "label": int | null}``: kept for later images until
    set back to null); routes a tile click (``{"type": "why", "layer", "channel"}``) to the unit
    card. Reads the host's ``interpretation_data`` (an :class:`InterpretationData`; none: the
    panel is hidden)."""

    messages = ("why", "why_label", "cancel")

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.traits = traits_of(host, InterpretationTraits)
        self.data: InterpretationData | None = getattr(host, "interpretation_data", None)
        self.jobs = JobChannel(host, "why_class_job", PROGRESS_INTERVAL_S)
        self.chosen: int | None = None
        """The data-set class the user chose to explain; None: the model's prediction."""

    def channels(self) -> list[JobChannel]:
        return [self.jobs]

    def on_message(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        if kind == "cancel":
            if content.get("job") == self.jobs.job_trait:
                self.jobs.cancel()
            return
        if kind == "why_label":
            self.choose(content.get("label"), "label" in content)
            return
        self.open(str(content.get("layer", "")), content.get("channel"))

    def choose(self, label: Any, given: bool = True) -> None:
        """Explain data-set class ``label`` (one of ``features.classes``) on this and later
        images, or the model's prediction again when ``label`` is None; the explanation is
        recomputed for the current image. A bad label, or none (``given`` False: the message
        had no ``label``), is refused (ValueError) and changes nothing."""
        if self.data is None:
            raise ValueError(
                "this Explorer has no interpretation=: there is no class to explain. Pass "
                "interpretation=cv.interpretation.relevant_features(model, data)."
            )
        classes = self.data.features.classes
        valid = isinstance(label, int) and not isinstance(label, bool) and label in classes
        if not given or (label is not None and not valid):
            raise ValueError(
                f"why_label: label {label!r} is not a class of the data set the relevant "
                f"filters were selected on; pick one of {classes}, or null for the prediction."
            )
        self.chosen = label
        self.host.show(self._explaining())

    def open(self, layer: str, channel: Any) -> None:
        """Open the unit card of ``channel`` of ``layer`` (a tile of the explanation): the
        Explorer's ``show_unit``; without an atlas of the layer it selects the channel."""
        shown = self.traits.why_class
        tiles = [] if shown is None else shown["filters"]
        if not any(t["layer"] == layer and t["channel"] == channel for t in tiles):
            raise ValueError(
                f"{layer!r} channel {channel!r} is not a filter of the shown explanation; "
                "click one of its tiles."
            )
        show_unit = getattr(self.host, "show_unit", None)
        if show_unit is not None:
            show_unit(int(channel), layer)
            return
        self.host.selected_layer = layer
        self.host.selected_channel = int(channel)

    def on_image(self, target: int) -> Change:
        return self._explaining()

    def _model_label(self, index: int) -> str:
        """The model's name of its class ``index`` (bundle.labels), else "class N"."""
        labels = self.host.session.bundle.labels
        return labels[index] if 0 <= index < len(labels) else f"class {index}"

    def _data_class_name(self, index: int) -> str:
        """The data set's name of its class ``index`` (kept with the relevant features, from
        its ``classes`` or its ``dataset``'s for a Subset), else "class N"."""
        names = None if self.data is None else self.data.features.class_names
        return str(names[index]) if names and 0 <= index < len(names) else f"class {index}"

    def _choices(self, features: RelevantFeatures) -> list[WhyChoice]:
        """Every data-set class with at least one relevant filter, in ``features.classes``
        order: what the user may choose to explain."""
        return [
            {"label": c, "name": self._data_class_name(c)}
            for c in features.classes
            if features.relevant(c)
        ]

    def _payload(
        self, data: InterpretationData, explanation: Explanation, chosen: int | None
    ) -> WhyClass:
        """``why_class`` for ``explanation`` (of class ``chosen``, None: of the prediction),
        with the average visualizations computed so far."""
        predicted, note = explanation.label, data.note
        # A chosen class, or explain's fallback (the model's classes are others), is one of the
        # data set's classes, named as the choices are; the prediction is named by the model.
        fallback = chosen is None and explanation.label != explanation.predicted
        data_class = chosen is not None or fallback
        name = self._data_class_name(predicted) if data_class else self._model_label(predicted)
        if fallback:
            note = (
                f"the model predicts {self._model_label(explanation.predicted)}, not a "
                "class of the data set the relevant filters were selected on; shown: that "
                f"data set's class {name}, whose relevant filters score highest on this "
                "image." + (f" {data.note}" if data.note else "")
            )
        tiles: list[WhyFilter] = []
        for item in explanation.filters:
            relevant = item.filter
            average = data.averages.get((predicted, relevant.layer, relevant.channel))
            tiles.append({
                "layer": relevant.layer, "channel": relevant.channel,
                "weight": relevant.weight, "response": item.response, "score": item.score,
                "average": None if average is None else average_image(average),
            })  # fmt: skip
        return {
            "predicted": predicted, "label": name,
            "heatmap": ndarray_payload(explanation.heatmap, "float32"), "filters": tiles,
            "relevant": len(data.features.relevant(predicted)), "note": note,
            "choices": self._choices(data.features), "chosen": chosen,
            "model_predicted": explanation.predicted,
            "model_label": self._model_label(explanation.predicted),
        }  # fmt: skip

    def _explaining(self) -> Change:
        """Clear the shown explanation and explain the current image in the background: the
        chosen class (``self.chosen``), else the prediction."""
        if self.data is None:
            return Change()
        data, label = self.data, self.chosen
        bundle, x = self.host.session.bundle, self.host.session.input
        explained: list[Explanation] = []  # the job's explanation, once computed

        def payload() -> WhyClass:
            return self._payload(data, explained[0], label)

        def work(report: Report) -> WhyClass | None:
            explanation = explain(bundle, data.features, x, top=data.top, label=label)
            explained.append(explanation)
            missing = [
                item.filter for item in explanation.filters
                if (explanation.label, item.filter.layer, item.filter.channel)
                not in data.averages
            ] if data.data is not None else []  # fmt: skip
            steps = 1 + len(missing)
            if not report(lambda: {"why_class": payload()}, 1 / steps, urgent=True):
                return None
            for done, relevant in enumerate(missing, start=2):
                one = _only(data.features, explanation.label, relevant.column)
                computed = average_visualizations(
                    bundle, one, data.data, k=data.k, classes=[explanation.label]
                )
                data.averages.update(computed.maps)
                if not report(lambda: {"why_class": payload()}, done / steps, True):
                    return None
            return payload()

        def finish(end: JobEnd[WhyClass | None]) -> Update:
            if end.state == "done" and end.result is not None:
                return {"why_class": end.result}
            if end.state == "cancelled" and explained:  # with the averages computed so far
                return {"why_class": payload()}
            return {}

        def start() -> None:
            self.jobs.start("why this class", work, finish)

        return Change({"why_class": None, **self.jobs.starting("why this class")}, [start])


def _only(features: RelevantFeatures, label: int, column: int) -> RelevantFeatures:
    """``features`` with class ``label``'s weights kept for ``column`` only (every other
    weight 0): its average visualizations are that one filter's."""
    weights = torch.zeros_like(features.weights)
    row = features.classes.index(label)
    weights[row, column] = features.weights[row, column]
    return dataclasses.replace(features, weights=weights)
