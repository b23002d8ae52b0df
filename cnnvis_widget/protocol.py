"""The Explorer's kernel -> browser protocol: every payload the kernel sends, as typed builders,
and the constants both sides share.

The types here are the single source: ``js/protocol.ts`` is generated from this module
(``python -m cnnvis_widget.protocol_ts > js/protocol.ts``; ``tests/test_protocol.py`` fails
when the two differ, so a field renamed on one side breaks the build). What each trait means
is described in docs/protocol.md; how the pieces fit, in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np
import torch

from .encode import NdArray, ndarray_payload

# --- constants shared with the browser (exported to js/protocol.ts) -----------------------

TOP_K = 5
"""Predictions listed under the image."""
MIN_COMPARED = 2
MAX_COMPARED = 6
"""A comparison shows this many maps (inclusive bounds)."""
MAX_PINS = 12
"""Pinned synthesis results kept; the oldest goes first."""
UPLOAD_PREFIX = "upload:"
"""``image_name`` of an uploaded file: this prefix + the file's name."""
DEFAULT_METHOD = "gradcam"
DEFAULT_SYNTH_KIND = "feature"
FIELD_TOP_K = 5
"""The unit card's empirical receptive field is measured over at most this many of the unit's
top atlas images (the card's first examples): each costs hundreds of occluded forwards."""

SHARED_CONSTANTS: dict[str, int | str] = {
    "TOP_K": TOP_K,
    "MIN_COMPARED": MIN_COMPARED,
    "MAX_COMPARED": MAX_COMPARED,
    "MAX_PINS": MAX_PINS,
    "UPLOAD_PREFIX": UPLOAD_PREFIX,
    "DEFAULT_METHOD": DEFAULT_METHOD,
    "DEFAULT_SYNTH_KIND": DEFAULT_SYNTH_KIND,
    "FIELD_TOP_K": FIELD_TOP_K,
}

# --- payload types ----------------------------------------------------------------------

JobStateName = Literal["running", "done", "cancelled", "error"]
CellState = Literal["queued", "running", "done", "stopped", "failed"]
ParamKind = Literal["int", "float", "bool", "choice"]
ParamValue = int | float | bool | str | None
Needs = Literal["channel", "class", "image", "layer"]


class MapPayload(NdArray):
    """A method's map, float32 (h, w); ``note`` says when it is not what the method promises."""

    note: NotRequired[str]


class Prediction(TypedDict):
    index: int
    label: str
    prob: float


class LayerRow(TypedDict):
    """A row of the layer tree; ``shape`` is the output shape without the batch dimension."""

    name: str
    type: str
    shape: list[int] | None
    depth: int
    spatial: bool
    calls: int


class Message(TypedDict):
    level: Literal["info", "error"]
    text: str


class ParamRow(TypedDict):
    """One tunable parameter of a method or synthesis kind (it builds a form field)."""

    name: str
    kind: ParamKind
    default: ParamValue
    low: float | None
    high: float | None
    choices: list[str]
    doc: str


class MethodRow(TypedDict):
    name: str
    title: str
    family: str
    output: Literal["pixel", "layer"]
    signed: bool
    uses_layer: bool
    cost: str
    summary: str
    params: list[ParamRow]


class JobState(TypedDict):
    """A background job's progress: ``fraction`` in [0, 1]; ``id`` 0 until it has started;
    ``error`` with state "error" (also for a request refused before a job started)."""

    id: int
    label: str
    state: JobStateName
    fraction: float
    error: NotRequired[str]
    resumable: NotRequired[bool]


class ComparisonScores(TypedDict):
    """A computed comparison cell: the map and its deletion / insertion areas under the curves
    (lower deletion and higher insertion are better)."""

    map: MapPayload
    deletion: float
    insertion: float


class ComparisonCell(TypedDict):
    """One cell of the side-by-side comparison; ``params`` are the settings that differ from
    the method's defaults; deletion / insertion are areas under the curves."""

    method: str
    title: str
    layer: str
    signed: bool
    target: int
    params: dict[str, ParamValue]
    map: MapPayload | None
    deletion: float | None
    insertion: float | None
    state: CellState


class SynthesisKindRow(TypedDict):
    name: str
    title: str
    needs: Needs
    summary: str
    resumable: bool
    params: list[ParamRow]


class ClassProbability(TypedDict):
    index: int
    label: str
    prob: float


class AdversarialView(TypedDict):
    """``perturbation`` is magnified: 0.5 + delta / (2 epsilon); ``epsilon`` in grey levels."""

    original: NdArray
    perturbation: NdArray
    before: ClassProbability
    after: ClassProbability
    epsilon: float


class UnitRef(TypedDict):
    """A unit: channel ``channel`` of layer ``layer``."""

    layer: str
    channel: int


class SynthesisPayload(TypedDict):
    """A streamed frame (``final`` False) or the final / stopped result: ``images`` uint8
    (K, H, W, 3), ``trace`` float32 (steps,) the traced quantity per step, mean over images."""

    kind: str
    label: str
    images: NdArray
    trace: NdArray
    trace_name: str
    step: int
    total: int
    final: bool
    stopped: NotRequired[bool]
    adversarial: AdversarialView | None
    unit: NotRequired[UnitRef]


class Pin(TypedDict):
    label: str
    detail: str
    images: NdArray


class FeatureGrid(TypedDict):
    """A layer's feature visualization: uint8 (C, H, W, 3), one tile per channel."""

    layer: str
    images: NdArray


class UnitExample(TypedDict):
    """One of a unit's top dataset examples: the image's dataset ``index`` and ``label``
    (class name, "" unlabelled), the unit's maximum ``value`` at map position (``y``, ``x``),
    and ``box`` (top, left, bottom, right; exclusive ends) the crop in model-input pixels:
    the unit's receptive field there (may reach past the image: padded grey)."""

    index: int
    label: str
    value: float
    y: int
    x: int
    box: list[int]


class UnitHistogram(TypedDict):
    """How many of the data set's images had their maximum of the unit in each bin:
    ``edges`` (n + 1) in activation units, ``counts`` (n)."""

    edges: list[float]
    counts: list[int]


class ClassResponse(TypedDict):
    """A class's mean pooled (spatial mean) response of the unit, over ``images`` images."""

    name: str
    mean: float
    images: int


class AtlasLayer(TypedDict):
    """A layer the Explorer's unit atlas covers: ``images`` of the data set's seen so far,
    ``complete`` when all (a stopped pass resumes)."""

    name: str
    images: int
    complete: bool


class UnitTag(TypedDict):
    """A unit's Network Dissection label: its best ``concept`` (of ``category``) by dataset
    IoU, and whether that IoU is above the detector threshold."""

    concept: str
    category: str
    iou: float
    detector: bool


class UnitDissection(UnitTag):
    """The dissection part of a unit card: the unit's top images of the concept data set
    (dataset ``indices``), ``images`` uint8 (k, S, S, 3) whole, and ``masks`` uint8 (k, S, S),
    1 where the unit's upsampled map is above its ``threshold`` (its segmentation)."""

    threshold: float
    indices: list[int]
    images: NdArray
    masks: NdArray


class UnitCard(TypedDict):
    """What a unit (channel ``unit`` of ``layer``) responds to over a data set, sent as one
    message: ``crops`` uint8 (k, S, S, 3) the top examples' receptive-field crops, and
    ``crop_maps`` uint8 (k, S, S) the unit's upsampled activation over each crop, as
    255 * value / ``scale`` clipped to [0, 255] (``scale``: the top example's value; the
    colormap is applied in the browser). ``current``: the unit's maximum on the image in
    the Explorer and the fraction of the data set's images whose maximum is lower.
    ``field``: receptive field size (y, x) in input pixels and how it was found."""

    layer: str
    unit: int
    images: int
    complete: bool
    examples: list[UnitExample]
    crops: NdArray
    crop_maps: NdArray
    scale: float
    histogram: UnitHistogram
    classes: list[ClassResponse]
    mean: float
    max: float
    q: float
    quantile: float
    current: float
    current_below: float
    field_size: list[int]
    field_method: str
    dissection: UnitDissection | None


class UnitField(TypedDict):
    """The empirical receptive field of channel ``unit`` of ``layer`` (Zhou et al. 2015, sec.
    3.2; :func:`~cnnvis_widget.empirical_field.empirical_receptive_field`) over its top
    ``images`` atlas images, of ``requested`` (fewer when stopped: ``complete`` False).

    ``map`` float32 (h, w): the averaged re-centred discrepancy map, NaN where no image
    reaches, cut from the full (2H - 1, 2W - 1) map at ``window`` (top, left, bottom, right;
    the theoretical field widened by the occluder); ``centre`` (y, x) the unit's peak centre in
    ``map``. ``backdrop`` uint8 (h, w, 3): the top image under ``map``, placed at its peak
    (grey past the image; the browser draws the map over it with the colormap and opacity).
    ``size`` / ``theoretical`` (height, width) px, ``box`` (top, left, bottom, right) the
    empirical field relative to ``centre``, read at ``fraction`` of the map's maximum;
    ``patch`` / ``stride`` the occluder. ``indices``: the images' dataset indices;
    ``images_seen`` uint8 (n, H, W, 3) those images as the model sees them and ``masks`` uint8
    (n, H, W), 1 inside the empirical field placed at each image's peak
    (:func:`~cnnvis_widget.empirical_field.field_segments`; the browser dims outside to
    ``dim``)."""

    layer: str
    unit: int
    images: int
    requested: int
    complete: bool
    map: NdArray
    window: list[int]
    centre: list[int]
    backdrop: NdArray
    size: list[int]
    theoretical: list[int]
    box: list[int]
    fraction: float
    patch: int
    stride: int
    indices: list[int]
    images_seen: NdArray
    masks: NdArray
    dim: float


class WhyFilter(TypedDict):
    """A tile of the "Why this class?" panel: a relevant filter of the predicted class that
    fired on the image (channel ``channel`` of ``layer``), its lasso ``weight``, its
    standardized ``response`` on the image and ``score`` = weight * response (> 0); ``average``
    its average visualization uint8 (H, W, 3) (0.5 + 0.5 v / max|v|), null while not computed
    or when there is no data set to compute it over."""

    layer: str
    channel: int
    weight: float
    response: float
    score: float
    average: NdArray | None


class WhyChoice(TypedDict):
    """A class the "Why this class?" panel can explain: ``label``, a class of the data set the
    relevant filters were selected on that has at least one relevant filter, and its ``name``
    (the data set's ``classes``, else "class N")."""

    label: int
    name: str


class WhyClass(TypedDict):
    """Visual Explanation by Interpretation of the current image: the explained class
    ``predicted`` (``label``: the model's prediction, or the class the user chose), its top
    relevant filters that fired, highest score first, the explanation's ``heatmap`` float32
    (H, W) in [0, 1] at model-input resolution (null when the class has no relevant filters;
    the colormap and opacity are applied in the browser), ``relevant`` the class's number of
    relevant filters, and ``note`` (why something is missing, or ""). ``choices``: the classes
    the user may choose (features.classes order); ``chosen``: the one chosen (null: the
    prediction is explained); ``model_predicted`` / ``model_label``: the model's own predicted
    class index and its name (bundle.labels)."""

    predicted: int
    label: str
    heatmap: NdArray | None
    filters: list[WhyFilter]
    relevant: int
    note: str
    choices: list[WhyChoice]
    chosen: int | None
    model_predicted: int
    model_label: str


class ExplorerTraits(TypedDict):
    """Every synced trait of the Explorer and the type of its value (js: ``ExplorerState``).
    ``tests/test_protocol.py`` checks that the widget declares exactly these."""

    model_name: str
    image_names: list[str]
    image_name: str
    image: NdArray | None
    predictions: list[Prediction]
    labels: list[str]
    selected_class: int
    layers: list[LayerRow]
    selected_layer: str
    grid: NdArray | None
    grid_lo: NdArray | None
    grid_hi: NdArray | None
    grid_means: NdArray | None
    grid_layer: str
    colormap: str
    opacity: float
    sort_by: Literal["index", "mean"]
    selected_channel: int
    message: Message | None
    busy: bool
    methods: list[MethodRow]
    method: str
    method_params: dict[str, ParamValue]
    overlay_map: MapPayload | None
    overlay_job: JobState | None
    overlay_layer: str
    overlay_method: str
    overlay_signed: bool
    overlay_source: Literal["map", "channel"]
    map_sign: Literal["absolute", "signed"]
    compare_methods: list[str]
    compare_layers: list[str]
    comparison: list[ComparisonCell]
    compare_job: JobState | None
    synth_kinds: list[SynthesisKindRow]
    synth_kind: str
    synth_params: dict[str, ParamValue]
    synthesis: SynthesisPayload | None
    synth_job: JobState | None
    synth_pins: list[Pin]
    feature_grid: FeatureGrid | None
    feature_grid_job: JobState | None
    atlas_images: int
    atlas_layers: list[AtlasLayer]
    atlas_job: JobState | None
    unit_card: UnitCard | None
    unit_labels: list[UnitTag]
    unit_field: UnitField | None
    field_job: JobState | None
    why_available: bool
    why_class: WhyClass | None
    why_class_job: JobState | None


EXPORTED_TYPES: tuple[type, ...] = (
    MapPayload, Prediction, LayerRow, Message, ParamRow, MethodRow, JobState,
    ComparisonCell, SynthesisKindRow, ClassProbability, AdversarialView, UnitRef, SynthesisPayload,
    Pin, FeatureGrid, UnitExample, UnitHistogram, ClassResponse, AtlasLayer, UnitTag, UnitDissection, UnitCard, UnitField, WhyFilter, WhyChoice, WhyClass, ExplorerTraits,
)  # fmt: skip
"""The TypedDicts written to js/protocol.ts, in this order."""

# --- builders ---------------------------------------------------------------------------


def message(level: Literal["info", "error"], text: str) -> Message:
    return {"level": level, "text": text}


def param_row(param: Any) -> ParamRow:
    """A :class:`~cnnvis_widget.methods.registry.Param` as a form field."""
    return {
        "name": param.name, "kind": param.kind, "default": param.default, "low": param.low,
        "high": param.high, "choices": list(param.choices), "doc": param.doc,
    }  # fmt: skip


def method_row(method: Any) -> MethodRow:
    """A :class:`~cnnvis_widget.methods.registry.Method` as the method picker needs it."""
    return {
        "name": method.name, "title": method.title, "family": method.family,
        "output": method.output, "signed": method.signed, "uses_layer": method.uses_layer,
        "cost": method.cost, "summary": method.summary,
        "params": [param_row(p) for p in method.params],
    }  # fmt: skip


def layer_row(info: Any) -> LayerRow:
    """A :class:`~cnnvis_widget.layers.LayerInfo` as a row of the layer tree."""
    return {
        "name": info.name, "type": info.type,
        "shape": list(info.output_shape[1:]) if info.output_shape else None,
        "depth": info.depth, "spatial": info.spatial, "calls": info.calls,
    }  # fmt: skip


def job_state(
    job_id: int, label: str, state: JobStateName, fraction: float, error: str = ""
) -> JobState:
    """A job trait's value; ``job_id`` 0 for a job queued but not started yet."""
    value: JobState = {"id": job_id, "label": label, "state": state, "fraction": fraction}
    if error:
        value["error"] = error
    return value


def queued_job(label: str) -> JobState:
    """The job trait of work about to start."""
    return job_state(0, label, "running", 0.0)


def refused_job(label: str, error: BaseException) -> JobState:
    """A job trait for work refused before it started (bad input), with the reason."""
    return job_state(0, label, "error", 0.0, str(error))


def map_payload(attribution: torch.Tensor, notes: Iterable[str] = ()) -> MapPayload:
    """The first sample's map, colour channels summed (as Captum's ``visualize_image_attr``
    does before it takes the sign), as float32 ``(h, w)``; ``notes`` (why the map is not what
    its method promises) joined into its ``note``."""
    payload = MapPayload(**ndarray_payload(attribution[0].float().sum(dim=0), "float32"))
    joined = " ".join(notes)
    if joined:
        payload["note"] = joined
    return payload


def comparison_cell(
    method: Any, layer: str | None, target: int, params: dict[str, ParamValue]
) -> ComparisonCell:
    """A comparison cell of ``method`` (a registry descriptor) before it is computed."""
    return {
        "method": method.name, "title": method.title, "layer": layer or "",
        "signed": method.signed, "target": target, "params": params, "map": None,
        "deletion": None, "insertion": None, "state": "queued",
    }  # fmt: skip


def images_payload(images: torch.Tensor) -> NdArray:
    """[0, 1] images (K, C, H, W) -> uint8 (K, H, W, 3): RGB as is, greyscale (C = 1) as
    three equal channels, other channel counts as their grey mean."""
    from .models import display_pixels

    return ndarray_payload(display_pixels(images), "uint8")


def synthesis_payload(
    kind: str,
    label: str,
    images: torch.Tensor,
    trace: np.ndarray | torch.Tensor,
    trace_name: str,
    step: int,
    total: int,
    *,
    final: bool,
    stopped: bool | None = None,
    adversarial: AdversarialView | None = None,
    unit: UnitRef | None = None,
) -> SynthesisPayload:
    """A synthesis frame or result; ``trace`` (steps,) objective values; ``unit`` the channel
    a channel kind visualizes (the unit card shows it too)."""
    payload: SynthesisPayload = {
        "kind": kind, "label": label, "images": images_payload(images),
        "trace": ndarray_payload(trace, "float32"),
        "trace_name": trace_name, "step": step, "total": total, "final": final,
        "adversarial": adversarial,
    }  # fmt: skip
    if stopped is not None:
        payload["stopped"] = stopped
    if unit is not None:
        payload["unit"] = unit
    return payload


def feature_grid(
    images: torch.Tensor, first: int, count: int, layer: str, previous: np.ndarray | None
) -> tuple[FeatureGrid, np.ndarray]:
    """A layer's feature-visualization grid so far: uint8 (C, H, W, 3) with tiles ``first`` ..
    ``first + K`` replaced by ``images`` (K, C, H, W) in [0, 1]; tiles not computed yet are
    grey. Returns the payload and the tile array to pass as ``previous`` next time."""
    from .models import display_pixels

    height, width = images.shape[-2:]
    tiles = previous if previous is not None else np.full((count, height, width, 3), 128, np.uint8)
    tiles[first : first + images.shape[0]] = display_pixels(images).numpy()
    return {"layer": layer, "images": ndarray_payload(tiles, "uint8")}, tiles
