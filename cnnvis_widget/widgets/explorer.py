"""The Explorer widget: image, top-5, Grad-CAM overlay, layer browser and filter grid.

Trait names and payloads follow docs/protocol.md. Every handler catches its errors and shows
them in the ``message`` trait, so a bad request leaves the widget as it was and usable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anywidget
import traitlets
from PIL import Image
from torch import nn

from ..data import SAMPLE_KEY, sample_image, sample_images
from ..explore import ExplorerSession
from ..images import ImageSource, to_pil_rgb
from ..models import ModelBundle, Preprocess, imagenet_labels

STATIC = Path(__file__).resolve().parent.parent / "static"
UPLOAD_PREFIX = "upload:"
F = TypeVar("F", bound=Callable[..., Any])


def _reported(handler: F) -> F:
    """Run a trait/message handler with ``busy`` set; show any error as a message."""

    @functools.wraps(handler)
    def wrapper(self: Explorer, *args: Any, **kwargs: Any) -> Any:
        if self._applying:  # a change made by the widget itself, not by the user
            return None
        self.busy = True
        try:
            return handler(self, *args, **kwargs)
        except Exception as error:
            self.message = {"level": "error", "text": f"{error}"}
            return None
        finally:
            self.busy = False

    return wrapper  # type: ignore[return-value]


def _optional_dict() -> Any:
    """A synced dict trait that may be None (a payload, or a message)."""
    return traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)


class Explorer(anywidget.AnyWidget):
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
    selected_class = traitlets.Int(-1).tag(sync=True)
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected_layer = traitlets.Unicode("").tag(sync=True)
    cam_layer = traitlets.Unicode("").tag(sync=True)
    cam = _optional_dict()
    grid = _optional_dict()
    grid_lo = _optional_dict()
    grid_hi = _optional_dict()
    grid_means = _optional_dict()
    grid_layer = traitlets.Unicode("").tag(sync=True)
    colormap = traitlets.Unicode("viridis").tag(sync=True)
    opacity = traitlets.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    sort_by = traitlets.Unicode("index").tag(sync=True)
    selected_channel = traitlets.Int(-1).tag(sync=True)
    message = _optional_dict()
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        model: ModelBundle | nn.Module,
        image: ImageSource | None = None,
        *,
        preprocess: Preprocess | None = None,
        labels: list[str] | None = None,
        layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._applying = True
        super().__init__(**kwargs)
        self._session = ExplorerSession(_as_bundle(model, preprocess, labels))
        with self._apply():
            self.model_name = self._session.bundle.name
            self.image_names = sample_images()
            self._session.set_image(image if image is not None else sample_image("cat"))
            self.layers = ExplorerSession.layer_rows(self._session.layer_table())
            self.selected_layer = layer or self._session.default_cam_layer()
            self._session.layer(self.selected_layer)  # unknown name: clear error now
            self._show_current_image(_name(image))
        self.on_msg(self._on_custom_message)

    @contextmanager
    def _apply(self) -> Iterator[None]:
        """Change several traits as one update; observers ignore changes made in here."""
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
        if name.startswith(UPLOAD_PREFIX) or name == "custom image":
            return
        image = sample_image(name)
        with self._apply():
            self._session.set_image(image)
            self._show_current_image(name)

    @traitlets.observe("selected_class")
    @_reported
    def _on_class(self, change: dict[str, Any]) -> None:
        if change["new"] >= 0:
            with self._apply():
                self._update_cam()

    @traitlets.observe("selected_layer")
    @_reported
    def _on_layer(self, change: dict[str, Any]) -> None:
        self._session.layer(change["new"])
        with self._apply():
            self._update_grid()
            self._update_cam()

    @_reported
    def _on_custom_message(
        self, _widget: object, content: dict[str, Any], buffers: list[Any]
    ) -> None:
        if content.get("type") != "upload":
            return
        name = str(content.get("name") or "uploaded file")
        if not buffers:
            raise ValueError(f"{name}: the upload arrived without its bytes; pick the file again.")
        image = to_pil_rgb(bytes(buffers[0]), name=name)  # raises before anything changes
        with self._apply():
            self._session.set_image(image)
            self._show_current_image(UPLOAD_PREFIX + name)

    # --- state updates ---------------------------------------------------------------------

    def _show_current_image(self, name: str) -> None:
        """Push the session's image and everything computed from it."""
        predictions = self._session.predictions()
        self.image = self._session.image_payload()
        self.predictions = [vars(p) for p in predictions]
        self.image_name = name
        self.message = None
        self.selected_class = predictions[0].index
        self._update_grid()
        self._update_cam()

    def _update_grid(self) -> None:
        name = self.selected_layer
        grid = self._session.grid(name)
        self.selected_channel = -1
        if grid is None:
            info = self._session.layer(name)
            self.grid = self.grid_lo = self.grid_hi = self.grid_means = None
            self.message = {
                "level": "info",
                "text": f"{name} has no spatial output (shape {info.output_shape}); "
                "pick a convolutional layer to see its filters.",
            }
        else:
            self.grid, self.grid_lo, self.grid_hi = grid["grid"], grid["grid_lo"], grid["grid_hi"]
            self.grid_means = grid["grid_means"]
            if self.message and self.message.get("level") == "info":
                self.message = None
        self.grid_layer = name

    def _update_cam(self) -> None:
        layer = self.selected_layer
        if not layer or not self._session.layer(layer).spatial:
            layer = self.cam_layer or self._session.default_cam_layer()
        self.cam = self._session.gradcam(layer, self.selected_class)
        self.cam_layer = layer


def _name(image: ImageSource | None) -> str:
    if image is None:
        return "cat"
    if isinstance(image, (str, Path)):
        return UPLOAD_PREFIX + Path(image).name
    if isinstance(image, Image.Image) and image.info.get(SAMPLE_KEY) in sample_images():
        return str(image.info[SAMPLE_KEY])
    return "custom image"


def _as_bundle(
    model: ModelBundle | nn.Module, preprocess: Preprocess | None, labels: list[str] | None
) -> ModelBundle:
    if isinstance(model, ModelBundle):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Explorer needs a ModelBundle (cv.load_model()) or an nn.Module; got {type(model).__name__}."
        )
    return ModelBundle(
        model, preprocess or Preprocess(), labels or imagenet_labels(), name=type(model).__name__
    )
