"""The Explorer widget: a shell (image, top-5, layer tree, filter grid, the selection) holding
panels (overlay, comparison, synthesis) that it routes user actions to.

Trait names and payloads follow docs/protocol.md; the design is in docs/architecture.md. Every
user action is handled by :func:`reported`: its errors show in the ``message`` trait and the
widget stays as it was and usable.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anywidget
import traitlets
from PIL import Image
from torch import nn

from .. import protocol
from ..atlas import UnitAtlas
from ..data import sample_image, sample_images
from ..dissection import DissectionResult
from ..images import ImageSource, to_pil_rgb
from ..interpretation import AverageVisualizations, RelevantFeatures
from ..models import ModelBundle, Preprocess
from ..protocol import UPLOAD_PREFIX
from ..session import ExplorerSession
from ..synthesis.kinds import kind_rows
from .arguments import CUSTOM_IMAGE, as_bundle, check_arguments, image_name_of
from .channel import Update, running_loop
from .comparison import ComparisonPanel, ComparisonTraits
from .interpretation import InterpretationPanel, InterpretationTraits, interpretation_data
from .overlay import OverlayPanel, OverlayTraits
from .panel import Change, Handler, Panel
from .synthesis import SynthesisPanel, SynthesisTraits
from .traits import optional_dict
from .units import UnitsPanel, UnitsTraits, unit_data

STATIC = Path(__file__).resolve().parent.parent / "static"
P = TypeVar("P", bound=Panel)
DEPRECATED_TRAITS = {
    "cam": "overlay_map",
    "cam_job": "overlay_job",
    "cam_layer": "overlay_layer",
    "cam_method": "overlay_method",
    "cam_signed": "overlay_signed",
}
"""Trait names before the overlay's traits said what they hold (readable, with a warning)."""


class Explorer(
    anywidget.AnyWidget,
    OverlayTraits,
    ComparisonTraits,
    SynthesisTraits,
    UnitsTraits,
    InterpretationTraits,
):
    """Browse a CNN on one image in a notebook.

    ``Explorer(bundle, image)`` with a bundle from ``cv.load_model()``, or
    ``Explorer(module, image, preprocess=..., labels=...)`` for any classifier.
    ``image`` is anything ``cv.sample_image`` returns or a path / array / tensor; default: the
    "cat" sample. ``atlas`` (from ``cv.unit_atlas``) with the ``data`` it was computed on, or
    ``data`` alone (the selected layer's atlas is then computed in the background, top ``k``
    examples per unit), opens a unit's card from the filter grid; ``dissection`` (from
    ``cv.dissect``) labels the tiles with concepts and adds the units' segmentations;
    ``interpretation`` (from ``cv.interpretation.relevant_features``, on this model) adds the
    "Why this class?" panel: the predicted class's relevant filters that fired, their heatmap
    over the image and their average visualizations (``averages``, from
    ``cv.interpretation.average_visualizations``, or computed over ``data`` when it is the data
    set the filters were selected on). The panels' traits are declared by their ``*Traits``
    bases (anywidget syncs one class's traits); their behaviour lives in the panel objects
    this shell holds.
    """

    _esm = STATIC / "explorer.js"
    _css = STATIC / "explorer.css"
    panel_types: ClassVar[tuple[type[Panel], ...]] = (
        OverlayPanel, ComparisonPanel, SynthesisPanel, UnitsPanel, InterpretationPanel,
    )  # fmt: skip
    """The panels, in the order they see selection changes (each built as ``Panel(self)``)."""

    model_name = traitlets.Unicode("").tag(sync=True)
    image_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    image_name = traitlets.Unicode("").tag(sync=True)
    image = optional_dict()
    predictions = traitlets.List(traitlets.Dict()).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected_class = traitlets.Int(-1).tag(sync=True)
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected_layer = traitlets.Unicode("").tag(sync=True)
    grid = optional_dict()
    grid_lo = optional_dict()
    grid_hi = optional_dict()
    grid_means = optional_dict()
    grid_layer = traitlets.Unicode("").tag(sync=True)
    colormap = traitlets.Unicode("viridis").tag(sync=True)
    opacity = traitlets.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    sort_by = traitlets.Unicode("index").tag(sync=True)
    selected_channel = traitlets.Int(-1).tag(sync=True)
    message = optional_dict()
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        model: ModelBundle | nn.Module,
        image: ImageSource | None = None,
        *,
        preprocess: Preprocess | Callable[[Image.Image], Any] | None = None,
        labels: list[str] | None = None,
        layer: str | None = None,
        atlas: UnitAtlas | None = None,
        data: Any = None,
        k: int = 9,
        dissection: DissectionResult | None = None,
        interpretation: RelevantFeatures | None = None,
        averages: AverageVisualizations | None = None,
        **kwargs: Any,
    ) -> None:
        check_arguments(model, preprocess, labels, kwargs)
        self._applying = True
        # Trait writes from background jobs and from the main thread never interleave.
        self.publish_lock = threading.RLock()
        # traitlets and ipywidgets keep per-instance state while they apply a change from the
        # browser (held notifications, held sync): a trait set from another thread meanwhile
        # can be lost. In a kernel, job results are therefore applied on the main thread's
        # event loop; without one (plain Python, tests) they are applied in the worker.
        self.main_loop = running_loop()
        super().__init__(**kwargs)
        first = image if image is not None else sample_image("cat")
        self.session = ExplorerSession(as_bundle(model, preprocess, labels, first))
        self.session.set_image(first)
        self.unit_data = unit_data(self.session.bundle, atlas, data, k, dissection)
        self.interpretation_data = interpretation_data(
            self.session.bundle, interpretation, averages, data
        )
        self.panels: list[Panel] = [panel_type(self) for panel_type in self.panel_types]
        start_layer = layer or self.session.default_cam_layer()
        self.session.layer(start_layer)  # unknown name: a clear error now
        static = Change({
            "model_name": self.session.bundle.name,
            "image_names": sample_images(),
            "methods": self.session.method_rows(),
            "synth_kinds": kind_rows(self.session.bundle),  # sizes: the model's own
            "labels": list(self.session.bundle.labels),
            "layers": self.session.layer_rows(),
            "selected_layer": start_layer,
            "atlas_layers": self.unit_data.layers,
            "atlas_images": self.unit_data.images,
            "unit_labels": self.unit_data.tags(start_layer),
            "why_available": self.interpretation_data is not None,
        })  # fmt: skip
        self.show(static)
        self.show(self._image_view(image_name_of(image)))
        self.watch(["image_name"], self._on_image_name)
        self.watch(["selected_class"], self._on_class)
        self.watch(["selected_layer"], self._on_layer)
        self.on_msg(reported(self, self._on_custom_message))
        if data is not None and atlas is None:
            self.compute_atlas(start_layer)

    # --- services for the panels (panel.Host) ----------------------------------------------

    @contextmanager
    def applying(self) -> Iterator[None]:
        """Change several traits as one update; observers ignore changes made in here."""
        with self.publish_lock:
            self._applying = True
            try:
                with self.hold_sync():
                    yield
            finally:
                self._applying = False

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Send a job's update as one message. Unlike :meth:`applying`, this does not mark
        the widget as changing itself: without a kernel loop, jobs publish from their worker
        thread, and a user action arriving meanwhile (a Stop) must not be taken for one."""
        with self.publish_lock, self.hold_sync():
            yield

    def assign(self, update: Update) -> None:
        for name, value in update.items():
            setattr(self, name, value)

    def show(self, change: Change) -> None:
        """Show ``change`` as one update, then start its jobs."""
        with self.applying():
            self.assign(change.traits)
        for start in change.then:
            start()

    def watch(self, names: list[str], handler: Handler) -> None:
        """Call ``handler`` when the user changes one of ``names`` (not when the widget
        does), as a :func:`reported` action."""
        self.observe(reported(self, handler), names=names)

    # --- the shell's own actions ------------------------------------------------------------

    def _on_image_name(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if name.startswith(UPLOAD_PREFIX) or name == CUSTOM_IMAGE:
            return
        self._switch_image(sample_image(name), name)

    def _on_class(self, change: dict[str, Any]) -> None:
        self.show(self._panels_change(lambda panel: panel.on_class(change["new"])))

    def _on_layer(self, change: dict[str, Any]) -> None:
        layer = change["new"]
        update = Change(self._grid_for(layer)).merge(
            self._panels_change(lambda panel: panel.on_layer(layer))
        )
        if layer != self.grid_layer:
            update.traits["selected_channel"] = -1
        self.show(update)

    def _on_custom_message(
        self, _widget: object, content: dict[str, Any], buffers: list[Any]
    ) -> None:
        kind = content.get("type")
        if kind == "upload":
            name = str(content.get("name") or "uploaded file")
            if not buffers:
                raise ValueError(
                    f"{name}: the upload arrived without its bytes; pick the file again."
                )
            self._switch_image(to_pil_rgb(bytes(buffers[0]), name=name), UPLOAD_PREFIX + name)
            return
        for panel in self.panels:
            if kind in panel.messages:
                panel.on_message(content)

    def _switch_image(self, image: ImageSource, name: str) -> None:
        """Load ``image`` and show it with everything computed from it; on any failure the
        session goes back to the previous image and no trait changes."""
        previous = self.session.current
        try:
            self.session.set_image(image)
            change = self._image_view(name)
        except Exception:
            self.session.current = previous
            raise
        self.show(change)

    def _image_view(self, name: str) -> Change:
        predictions = self.session.predictions()
        target = predictions[0].index
        shell = Change({
            "image": self.session.image_payload(),
            "predictions": [vars(p) for p in predictions],
            "image_name": name,
            "selected_class": target,
            **self._grid_for(self.selected_layer),
        })  # fmt: skip
        return shell.merge(self._panels_change(lambda panel: panel.on_image(target)))

    def _panels_change(self, hook: Callable[[Panel], Change]) -> Change:
        change = Change()
        for panel in self.panels:
            change = change.merge(hook(panel))
        return change

    def _grid_for(self, name: str) -> Update:
        grid = self.session.grid(name)
        if grid is None:
            info = self.session.layer(name)
            what = "did not run" if info.calls == 0 else f"has output shape {info.output_shape}"
            note = (
                f"{name} {what}, not a spatial map; pick a convolutional layer to see its filters."
            )
            return {
                "grid": None, "grid_lo": None, "grid_hi": None, "grid_means": None,
                "grid_layer": name, "message": protocol.message("info", note),
            }  # fmt: skip
        return {**grid, "grid_layer": name, "message": None}

    # --- Python API ---------------------------------------------------------------------------

    def compare(self, methods: list[str] | None = None, layers: list[str] | None = None) -> None:
        """Compute 2-6 maps side by side for the current image and class, each with its
        deletion / insertion score, in the background (``comparison``, ``compare_job``).
        ``methods`` / ``layers`` default to the ``compare_methods`` / ``compare_layers``
        traits (what the panel's checkboxes set). A layer method is shown at each of
        ``layers`` (default: the overlay's layer), so one method at several layers is a
        comparison too."""
        self.panel(ComparisonPanel).compare(methods, layers)

    def synthesize(self, kind: str | None = None, **params: Any) -> None:
        """Start a synthesis in the background (``synthesis`` streams its frames,
        ``synth_job`` its progress; the ``layer`` kind fills ``feature_grid``). ``kind`` is
        one of ``synth_kinds`` (default: the panel's pick); ``params`` override the panel's
        values. The target is the selected channel (a tile of the filter grid), the selected
        class, or the current image at the selected layer, as the kind needs."""
        self.panel(SynthesisPanel).synthesize(kind, **params)

    def stop_synthesis(self) -> None:
        """Stop the running synthesis at its next step (its last image stays)."""
        self.panel(SynthesisPanel).stop()

    def resume_synthesis(self) -> None:
        """Continue a stopped channel visualization from where it stopped."""
        self.panel(SynthesisPanel).resume()

    def reseed(self) -> None:
        """Start again with a new random seed."""
        self.panel(SynthesisPanel).reseed()

    def pin(self) -> None:
        """Keep the current result beside the panel (up to 12; the oldest goes first)."""
        self.panel(SynthesisPanel).pin()

    def visualize_layer(self, steps: int | None = None, size: int | None = None) -> None:
        """Visualize every channel of the selected layer in batches, in the background (the
        ``layer`` synthesis kind; default steps 64, size 64 px, or the form's values when that
        kind is picked); ``feature_grid`` fills batch by batch, tile for tile with the
        activation grid."""
        given = {"steps": steps, "size": size}
        self.panel(SynthesisPanel).visualize_layer(
            **{k: v for k, v in given.items() if v is not None}
        )

    def compute_atlas(self, layer: str | None = None) -> None:
        """Compute the unit atlas of ``layer`` (default: the selected one) over the
        Explorer's ``data`` in the background (``atlas_job``: progress, Stop; a stopped pass
        resumes when computed again). Its units' cards then open from the filter grid."""
        self.panel(UnitsPanel).compute(layer or self.selected_layer)

    def show_unit(self, unit: int, layer: str | None = None) -> None:
        """Select ``layer`` (default: the selected one) and open the card of its channel
        ``unit`` (``unit_card``), as a click on its tile does."""
        if layer is not None and layer != self.selected_layer:
            self.selected_layer = layer
        self.selected_channel = unit

    def panel(self, panel_type: type[P]) -> P:
        """The panel of type ``panel_type``."""
        for panel in self.panels:
            if isinstance(panel, panel_type):
                return panel
        raise LookupError(f"this Explorer has no {panel_type.__name__}.")

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until background jobs (overlay, comparison, synthesis) end; for scripts and
        tests. In a notebook the results reach the traits (and the browser) once the running
        cell returns, since they are applied on the kernel's main thread."""
        channels = [channel for panel in self.panels for channel in panel.channels()]
        return all(channel.wait(timeout) for channel in channels)

    def __getattr__(self, name: str) -> Any:
        if name in DEPRECATED_TRAITS:
            new = DEPRECATED_TRAITS[name]
            warnings.warn(
                f"Explorer.{name} is now Explorer.{new}.", DeprecationWarning, stacklevel=2
            )
            return getattr(self, new)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def reported(widget: Explorer, handler: Callable[..., None]) -> Callable[..., None]:
    """``handler`` as a user action: ignored while the widget changes its own traits; run with
    ``busy`` set; on failure the error is shown as a message and the trait the user changed
    goes back to its old value, so the widget stays consistent and usable; on success an
    error shown earlier is cleared."""

    @functools.wraps(handler)
    def action(*args: Any) -> None:
        if widget._applying:
            return
        shown_before = widget.message
        widget.busy = True
        try:
            handler(*args)
        except Exception as error:
            change = args[0] if args and isinstance(args[0], dict) else None
            if change is not None and "old" in change:
                with widget.applying():
                    setattr(widget, change["name"], change["old"])
            widget.message = protocol.message("error", f"{error}")
            return
        finally:
            widget.busy = False
        if widget.message is shown_before and shown_before and shown_before["level"] == "error":
            widget.message = None

    return action
