"""The Explorer widget: image, top-5, Grad-CAM overlay, layer browser and filter grid.

Trait names and payloads follow docs/protocol.md. Every handler catches its errors and shows
them in the ``message`` trait, so a bad request leaves the widget as it was and usable.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anywidget
import torch
import traitlets
from PIL import Image
from torch import nn

from ..checks import check_module, check_number
from ..data import SAMPLE_KEY, sample_image, sample_images
from ..explore import ExplorerSession
from ..images import ImageSource, to_pil_rgb
from ..methods import METHODS
from ..methods.api import check_params
from ..model_view import eval_view
from ..models import (
    AnyPreprocess,
    FunctionPreprocess,
    ModelBundle,
    Preprocess,
    as_preprocess,
    check_channels,
    imagenet_labels,
    logits_of,
    to_model_input,
)
from ..synthesis_tasks import kind_rows
from .jobs import Job, JobRunner, Step, Throttle, job_state
from .synthesis_panel import SynthesisPanel

STATIC = Path(__file__).resolve().parent.parent / "static"
UPLOAD_PREFIX = "upload:"
CUSTOM_IMAGE = "custom image"
PARTIAL_INTERVAL_S = 0.25  # shortest time between two partial maps sent to the browser
START_JOB = "_start_job"  # key of a view update: a callable that starts a background job
F = TypeVar("F", bound=Callable[..., Any])


def _reported(handler: F) -> F:
    """Run a user-action handler with ``busy`` set. On failure the error is shown as a message
    and the trait the user changed goes back to its old value, so the widget stays consistent
    and usable; on success an error shown earlier is cleared."""

    @functools.wraps(handler)
    def wrapper(self: Explorer, *args: Any, **kwargs: Any) -> Any:
        if self._applying:  # a change made by the widget itself, not by the user
            return None
        shown_before = self.message
        self.busy = True
        try:
            result = handler(self, *args, **kwargs)
        except Exception as error:
            change = args[0] if args and isinstance(args[0], dict) else None
            if change is not None and "old" in change:
                with self._apply():
                    setattr(self, change["name"], change["old"])
            self.message = {"level": "error", "text": f"{error}"}
            return None
        finally:
            self.busy = False
        if self.message is shown_before and shown_before and shown_before["level"] == "error":
            self.message = None
        return result

    return wrapper  # type: ignore[return-value]


def _optional_dict() -> Any:
    """A synced dict trait that may be None (a payload, or a message)."""
    return traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)


class Explorer(anywidget.AnyWidget, SynthesisPanel):
    """Browse a CNN on one image in a notebook.

    ``Explorer(bundle, image)`` with a bundle from ``cv.load_model()``, or
    ``Explorer(module, image, preprocess=..., labels=...)`` for any classifier.
    ``image`` is anything ``cv.sample_image`` returns or a path / array / tensor; default: the
    "cat" sample.
    """

    _esm = STATIC / "explorer.js"
    _css = STATIC / "explorer.css"

    model_name = traitlets.Unicode("").tag(sync=True)
    image_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    image_name = traitlets.Unicode("").tag(sync=True)
    image = _optional_dict()
    predictions = traitlets.List(traitlets.Dict()).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected_class = traitlets.Int(-1).tag(sync=True)
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected_layer = traitlets.Unicode("").tag(sync=True)
    cam_layer = traitlets.Unicode("").tag(sync=True)
    methods = traitlets.List(traitlets.Dict()).tag(sync=True)
    method = traitlets.Unicode("gradcam").tag(sync=True)
    method_params = traitlets.Dict().tag(sync=True)
    cam_method = traitlets.Unicode("").tag(sync=True)
    cam_signed = traitlets.Bool(False).tag(sync=True)
    cam = _optional_dict()
    cam_job = _optional_dict()
    compare_methods = traitlets.List(traitlets.Unicode()).tag(sync=True)
    compare_layers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    comparison = traitlets.List(traitlets.Dict()).tag(sync=True)
    compare_job = _optional_dict()
    grid = _optional_dict()
    grid_lo = _optional_dict()
    grid_hi = _optional_dict()
    grid_means = _optional_dict()
    grid_layer = traitlets.Unicode("").tag(sync=True)
    colormap = traitlets.Unicode("viridis").tag(sync=True)
    opacity = traitlets.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    sort_by = traitlets.Unicode("index").tag(sync=True)
    selected_channel = traitlets.Int(-1).tag(sync=True)
    # What the main canvas shows over the image: "map" (the method's) or "channel" (the
    # selected channel's). A tile click shows the channel; any request for a map goes back.
    overlay_source = traitlets.Enum(("map", "channel"), "map").tag(sync=True)
    # Signed pixel maps drawn as |value| ("absolute", Captum's default) or "signed".
    map_sign = traitlets.Enum(("absolute", "signed"), "absolute").tag(sync=True)
    message = _optional_dict()
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        model: ModelBundle | nn.Module,
        image: ImageSource | None = None,
        *,
        preprocess: Preprocess | Callable[[Image.Image], Any] | None = None,
        labels: list[str] | None = None,
        layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        _check_arguments(model, preprocess, labels, kwargs)
        self._applying = True
        self._cam_key: tuple[int, str, str, str, int] | None = None
        self._cam_job_key: tuple[int, str, str, str, int] | None = None
        self._cam_payload: Any = None
        # Trait writes from background jobs and from the main thread never interleave.
        self._publish_lock = threading.RLock()
        # traitlets and ipywidgets keep per-instance state while they apply a change from the
        # browser (held notifications, held sync): a trait set from another thread meanwhile
        # can be lost. In a kernel, job results are therefore applied on the main thread's
        # event loop; without one (plain Python, tests) they are applied in the worker.
        self._main_loop = _running_loop()
        self._partials = Throttle(PARTIAL_INTERVAL_S)
        self._cam_jobs = JobRunner(
            self._cam_partial,
            self._cam_done,
            self._cam_cancelled,
            self._cam_failed,
            lock=self._publish_lock,
        )
        self._compare_jobs = JobRunner(
            self._compare_partial,
            self._compare_done,
            self._compare_cancelled,
            self._compare_failed,
            lock=self._publish_lock,
        )
        self._init_synthesis()
        super().__init__(**kwargs)
        first = image if image is not None else sample_image("cat")
        self._session = ExplorerSession(_as_bundle(model, preprocess, labels, first))
        self._session.set_image(first)
        start_layer = layer or self._session.default_cam_layer()
        self._session.layer(start_layer)  # unknown name: a clear error now
        with self._apply():
            self.model_name = self._session.bundle.name
            self.image_names = sample_images()
            self.methods = ExplorerSession.method_rows()
            self.synth_kinds = kind_rows(self._session.bundle)  # sizes: the model's own
            self.labels = list(self._session.bundle.labels)
            self.layers = ExplorerSession.layer_rows(self._session.layer_table())
            self.selected_layer = start_layer
            self._assign(self._image_view(_name(image)))
        self.on_msg(self._on_custom_message)

    @contextmanager
    def _apply(self) -> Iterator[None]:
        """Change several traits as one update; observers ignore changes made in here."""
        with self._publish_lock:
            self._applying = True
            try:
                with self.hold_sync():
                    yield
            finally:
                self._applying = False

    # --- observers: one per user action -------------------------------------------------

    @traitlets.observe("image_name")
    @_reported
    def _on_image_name(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if name.startswith(UPLOAD_PREFIX) or name == CUSTOM_IMAGE:
            return
        self._switch_image(sample_image(name), name)

    @traitlets.observe("selected_class")
    @_reported
    def _on_class(self, change: dict[str, Any]) -> None:
        update = self._cam_view(self.selected_layer, change["new"])
        with self._apply():
            self._assign(update)

    @traitlets.observe("method", "method_params")
    @_reported
    def _on_method(self, change: dict[str, Any]) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {list(METHODS)}.")
        accepted = {param.name for param in METHODS[self.method].params}
        if set(self.method_params) - accepted:  # left over from the previous method
            with self._apply():
                self.method_params = {k: v for k, v in self.method_params.items() if k in accepted}
        update = self._cam_view(self.selected_layer)
        with self._apply():
            self._assign(update)

    @traitlets.observe("selected_channel")
    def _on_channel(self, change: dict[str, Any]) -> None:
        """Picking a channel shows it over the image; deselecting it shows the map again."""
        self.overlay_source = "channel" if change["new"] >= 0 else "map"

    @traitlets.observe("selected_layer")
    @_reported
    def _on_layer(self, change: dict[str, Any]) -> None:
        update = {**self._grid_for(change["new"]), **self._cam_view(change["new"])}
        with self._apply():
            if change["new"] != self.grid_layer:
                self.selected_channel = -1
            self._assign(update)

    @_reported
    def _on_custom_message(
        self, _widget: object, content: dict[str, Any], buffers: list[Any]
    ) -> None:
        kind = content.get("type")
        if kind == "cancel":
            (self._compare_jobs if content.get("what") == "compare" else self._cam_jobs).cancel()
            return
        if kind == "compare":
            self.compare()
            return
        if kind == "synth":
            self._on_synth_message(content)
            return
        if kind != "upload":
            return
        name = str(content.get("name") or "uploaded file")
        if not buffers:
            raise ValueError(f"{name}: the upload arrived without its bytes; pick the file again.")
        self._switch_image(to_pil_rgb(bytes(buffers[0]), name=name), UPLOAD_PREFIX + name)

    # --- computing views (no trait writes) and assigning them -----------------------------

    def _switch_image(self, image: ImageSource, name: str) -> None:
        """Load ``image`` and show it with everything computed from it; on any failure the
        session goes back to the previous image and no trait changes."""
        previous = self._session.current
        try:
            self._session.set_image(image)
            update = self._image_view(name)
        except Exception:
            self._session.current = previous
            raise
        self._compare_jobs.forget()  # its maps were for the previous image
        with self._apply():
            self._assign(update)

    def _image_view(self, name: str) -> dict[str, Any]:
        predictions = self._session.predictions()
        target = predictions[0].index
        return {
            "image": self._session.image_payload(),
            "predictions": [vars(p) for p in predictions],
            "image_name": name,
            "selected_class": target,
            "comparison": [],  # maps of another image: not to be drawn over this one
            "compare_job": None,
            **self._grid_for(self.selected_layer),
            **self._cam_view(self.selected_layer, target),
        }

    def _grid_for(self, name: str) -> dict[str, Any]:
        grid = self._session.grid(name)
        if grid is None:
            info = self._session.layer(name)
            what = "did not run" if info.calls == 0 else f"has output shape {info.output_shape}"
            return {
                "grid": None, "grid_lo": None, "grid_hi": None, "grid_means": None,
                "grid_layer": name,
                "message": {
                    "level": "info",
                    "text": f"{name} {what}, not a spatial map; pick a convolutional layer "
                    "to see its filters.",
                },
            }  # fmt: skip
        return {**grid, "grid_layer": name, "message": None}

    def _cam_view(self, layer: str, target: int | None = None) -> dict[str, Any]:
        """The overlay map of the current method for ``target`` (default: the selected
        class); layer methods use ``layer`` when it is spatial, else the layer used last.
        Long methods (``streams``) are not computed here: the update clears the map and
        carries a ``START_JOB`` callable that computes it in the background, streaming
        partial maps into ``cam`` and progress into ``cam_job``."""
        target = self.selected_class if target is None else target
        descriptor = METHODS[self.method]
        if not self._session.layer(layer).spatial:
            layer = self.cam_layer or self._session.default_cam_layer()
        serial = self._session.current.serial if self._session.current else -1
        method_layer = layer if descriptor.uses_layer else None
        params_key = json.dumps(self.method_params, sort_keys=True)
        key = (serial, self.method, params_key, method_layer or "", target)
        view = {
            "cam_layer": layer,
            "cam_method": self.method,
            "cam_signed": descriptor.signed,
            "overlay_source": "map",  # a map was asked for: show it, not a channel
        }
        if key == self._cam_key:
            self._cam_jobs.forget()
            return {**view, "cam": self._cam_payload, "cam_job": None}
        if self._cam_jobs.current is not None and key == self._cam_job_key:
            return view  # this very map is being computed: let the job go on
        params = dict(self.method_params)
        check_params(self.method, params)  # a bad value is refused now, not in the job
        if not descriptor.streams:
            payload = self._session.attribution_map(self.method, target, method_layer, params)
            self._cam_jobs.forget()
            self._cam_key, self._cam_payload = key, payload
            return {**view, "cam": payload, "cam_job": None}
        x, method = self._session.input, self.method

        def work(step: Step) -> tuple[Any, Any]:
            payload = self._session.attribution_map(method, target, method_layer, params, step, x)
            return key, payload

        def start() -> None:
            self._cam_job_key = key
            self._cam_jobs.start(method, work)

        return {**view, "cam": None, "cam_job": job_state(None, method, 0.0), START_JOB: start}

    # --- background jobs: called in the worker thread, only for the current job -----------

    def _publish(
        self, job: Job, update: dict[str, Any], then: Callable[[], None] | None = None
    ) -> None:
        """Show ``update`` (and run ``then`` first) if ``job`` is still the latest job of its
        runner when it is applied; on the kernel's main thread when there is one."""

        def apply() -> None:
            runners = [self._cam_jobs, self._compare_jobs, *self._runners_of_panel()]
            if all(job is not runner.latest for runner in runners):
                return  # superseded or forgotten meanwhile: never shown
            if then is not None:
                then()
            with self._publish_lock, self.hold_sync():
                self._assign(update)

        loop = self._main_loop
        if loop is None or loop.is_closed():
            apply()
        else:
            loop.call_soon_threadsafe(apply)

    def _cam_partial(self, job: Job, payload: Any, fraction: float) -> None:
        if not self._partials.due(job):
            return
        self._publish(job, {"cam": payload, "cam_job": job_state(job, "running", fraction)})

    def _cam_done(self, job: Job, result: tuple[Any, Any]) -> None:
        def remember() -> None:
            self._cam_key, self._cam_payload = result

        update = {"cam": result[1], "cam_job": job_state(job, "done", 1.0)}
        self._publish(job, update, then=remember)

    def _cam_cancelled(self, job: Job) -> None:
        fraction = (self.cam_job or {}).get("fraction", 0.0)
        self._publish(job, {"cam_job": job_state(job, "cancelled", fraction)})

    def _cam_failed(self, job: Job, error: BaseException) -> None:
        self._publish(
            job,
            {
                "cam_job": job_state(job, "error", 0.0, error=str(error)),
                "message": {"level": "error", "text": f"{job.label}: {error}"},
            },
        )

    # --- side-by-side comparison ----------------------------------------------------------

    def compare(self, methods: list[str] | None = None, layers: list[str] | None = None) -> None:
        """Compute 2-6 maps side by side for the current image and class, each with its
        deletion / insertion score, in the background (``comparison``, ``compare_job``).
        ``methods`` / ``layers`` default to the ``compare_methods`` / ``compare_layers``
        traits (what the panel's checkboxes set). A layer method is shown at each of
        ``layers`` (default: the overlay's layer), so one method at several layers is a
        comparison too."""
        try:
            if methods is not None or layers is not None:
                with self._apply():
                    self.compare_methods = list(methods if methods is not None else [])
                    self.compare_layers = list(layers if layers is not None else [])
            fallback = self.cam_layer or self._session.default_cam_layer()
            items = self._session.comparison_items(
                list(self.compare_methods), list(self.compare_layers), fallback
            )
        except ValueError as error:
            self.message = {"level": "error", "text": str(error)}
            raise
        target, x = self.selected_class, self._session.input
        # The method in the picker uses the picker's settings; the others their defaults.
        settings = [dict(self.method_params) if m == self.method else {} for m, _ in items]
        rows = [
            _comparison_row(method, layer, target, params)
            for (method, layer), params in zip(items, settings, strict=True)
        ]

        def work(step: Step) -> list[dict[str, Any]]:
            for index, (method, layer) in enumerate(items):
                params = settings[index]
                rows[index] = {**rows[index], "state": "running"}
                if not step(list(rows), index / len(items)):
                    break

                def within_cell(_partial: Any, fraction: float, index: int = index) -> bool:
                    # Progress (and a chance to stop) inside a long cell; rows are unchanged,
                    # so only compare_job travels.
                    return step(list(rows), (index + fraction) / len(items))

                cell = self._session.comparison_cell(
                    method, target, layer, params, x=x, on_step=within_cell
                )
                rows[index] = {**rows[index], **cell, "state": "done"}
                if not step(list(rows), (index + 1) / len(items)):
                    break
            return list(rows)

        with self._apply():
            self.comparison = [{**row, "state": "queued"} for row in rows]
            self.compare_job = job_state(None, "comparison", 0.0)
            if self.message and self.message.get("level") == "error":
                self.message = None
        self._compare_jobs.start("comparison", work)

    def _compare_partial(self, job: Job, rows: list[dict[str, Any]], fraction: float) -> None:
        update = {"comparison": rows, "compare_job": job_state(job, "running", fraction)}
        self._publish(job, update)

    def _compare_done(self, job: Job, rows: list[dict[str, Any]]) -> None:
        self._publish(job, {"comparison": rows, "compare_job": job_state(job, "done", 1.0)})

    def _compare_cancelled(self, job: Job) -> None:
        fraction = (self.compare_job or {}).get("fraction", 0.0)
        update = {"compare_job": job_state(job, "cancelled", fraction)}
        self._publish(job, update, then=lambda: self._mark_unfinished_cells("stopped"))

    def _compare_failed(self, job: Job, error: BaseException) -> None:
        update = {
            "compare_job": job_state(job, "error", 0.0, error=str(error)),
            "message": {"level": "error", "text": f"comparison: {error}"},
        }
        self._publish(job, update, then=lambda: self._mark_unfinished_cells("failed"))

    def _mark_unfinished_cells(self, state: str) -> None:
        """Set every comparison cell not done to ``state``. Runs where updates are applied,
        after the job's earlier updates: read in the worker thread, ``comparison`` could still
        lack cells finished just before the stop."""
        self.comparison = [
            row if row.get("state") == "done" else {**row, "state": state}
            for row in self.comparison
        ]

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until background jobs (overlay, comparison, synthesis) end; for scripts and tests. In a
        notebook the results reach the traits (and the browser) once the running cell
        returns, since they are applied on the kernel's main thread."""
        runners = [self._cam_jobs, self._compare_jobs, *self._runners_of_panel()]
        return all(runner.wait(timeout) for runner in runners)

    def _assign(self, update: dict[str, Any]) -> None:
        start = update.pop(START_JOB, None)
        for name, value in update.items():
            setattr(self, name, value)
        if start is not None:
            start()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread (the kernel's, when a notebook cell creates the
    widget), or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _comparison_row(
    method: str, layer: str | None, target: int, params: dict[str, Any]
) -> dict[str, Any]:
    """A comparison cell before it is computed. ``params``: the settings that differ from the
    method's defaults (shown under the cell); ``state`` goes queued, running, then done (or
    stopped / failed)."""
    descriptor = METHODS[method]
    return {
        "method": method,
        "title": descriptor.title,
        "layer": layer or "",
        "signed": descriptor.signed,
        "target": target,
        "params": params,
        "map": None,
        "deletion": None,
        "insertion": None,
        "state": "queued",
    }


def _name(image: ImageSource | None) -> str:
    if image is None:
        return "cat"
    if isinstance(image, (str, Path)):
        return UPLOAD_PREFIX + Path(image).name
    if isinstance(image, Image.Image) and image.info.get(SAMPLE_KEY) in sample_images():
        return str(image.info[SAMPLE_KEY])
    return CUSTOM_IMAGE


def _as_bundle(
    model: ModelBundle | nn.Module,
    preprocess: Preprocess | Callable[[Image.Image], Any] | None,
    labels: list[str] | None,
    image: ImageSource,
) -> ModelBundle:
    """The bundle of a bare module: ``preprocess`` a :class:`Preprocess`, any function
    image -> tensor (calibrated on ``image``, see :class:`FunctionPreprocess`), or ``None``
    (channels and input size inferred from the model: :meth:`Preprocess.for_model`)."""
    if isinstance(model, ModelBundle):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Explorer needs a ModelBundle (cv.load_model()) or an nn.Module; got {type(model).__name__}."
        )
    prepared = Preprocess.for_model(model) if preprocess is None else as_preprocess(preprocess)
    if isinstance(prepared, FunctionPreprocess):
        prepared.calibrate(image)
    check_channels(model, prepared)
    classes = _class_count(model, prepared)
    if labels is None:
        labels = imagenet_labels() if classes == 1000 else []
    elif labels and len(labels) != classes:
        raise ValueError(
            f"got {len(labels)} labels for a model with {classes} classes; pass one label per "
            f"class ({classes}, in logit order), or labels=None for ImageNet's names (1000 "
            "classes) or 'class i'."
        )
    return ModelBundle(model, prepared, list(labels), name=type(model).__name__)


def _check_arguments(
    model: object, preprocess: object, labels: object, traits: dict[str, Any]
) -> None:
    """The constructor's arguments, refused with a message naming the fix (never silently
    dropped, split or clamped)."""
    check_module(model, bundle=True)
    if isinstance(model, ModelBundle) and (preprocess is not None or labels is not None):
        given = ", ".join(
            f"{name}=..."
            for name, value in (("preprocess", preprocess), ("labels", labels))
            if value is not None
        )
        raise TypeError(
            f"Explorer(bundle, {given}): a bundle brings its own preprocess and labels; "
            f"refused rather than ignored. Pass dataclasses.replace(bundle, {given}) instead, "
            "or the bare module: Explorer(bundle.module, preprocess=..., labels=...)."
        )
    if labels is not None and (
        isinstance(labels, (str, bytes))
        or not isinstance(labels, Sequence)
        or not all(isinstance(label, str) for label in labels)
    ):
        raise TypeError(
            f"labels must be a list of class names (str), one per logit; got "
            f"{type(labels).__name__} {labels!r:.60}. Pass labels=[...] (a string is not "
            "split into characters)."
        )
    if "opacity" in traits:
        check_number("opacity", traits["opacity"], low=0, high=1)
    params = traits.get("method_params", {})
    if not isinstance(params, dict):
        raise TypeError(f"method_params must be a dict of parameter values; got {params!r}.")
    check_params(traits.get("method", "gradcam"), dict(params))


def _class_count(model: nn.Module, preprocess: AnyPreprocess) -> int:
    """Number of logits the model gives, from one forward of a grey image."""
    grey = torch.full((1, preprocess.channels, *preprocess.input_size), 0.5)
    with torch.no_grad():
        logits = logits_of(eval_view(model)(to_model_input(preprocess.normalize(grey), model)))
    return int(logits.shape[-1])
