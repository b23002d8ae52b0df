"""The Explorer's session: one model and one image, and what the widget asks of them, as plain
Python (no traits, no hooks here): predictions, the layer table, a layer's filter grid, a
method's map, a comparison cell. Payloads are built by :mod:`cnnvis_widget.protocol`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .capture import LayerRef, resolve_layer
from .encode import NdArray, grid_payloads, ndarray_payload
from .evaluate import deletion_insertion
from .images import ImageSource
from .layers import LayerInfo, activations, default_cam_layer, layers, spatial_maps
from .methods import METHODS, attribute
from .methods.relu_rules import collect_notes
from .models import ModelBundle, to_model_input
from .protocol import (
    MAX_COMPARED,
    MIN_COMPARED,
    TOP_K,
    ComparisonScores,
    LayerRow,
    MapPayload,
    MethodRow,
    layer_row,
    map_payload,
    method_row,
)

_SERIALS = itertools.count()


@dataclass
class Prediction:
    index: int
    label: str
    prob: float


@dataclass(frozen=True)
class LoadedImage:
    """``x``: model input (1, C, H, W) on the model's device, in its dtype; ``rgb``: (H, W, 3)
    uint8, the image as the model sees it (a greyscale one with three equal channels)."""

    x: torch.Tensor
    rgb: np.ndarray
    serial: int = field(default_factory=lambda: next(_SERIALS))  # tells loaded images apart


class ExplorerSession:
    """One model + one image. ``set_image`` must be called before anything else."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self.current: LoadedImage | None = None
        self._layers: list[LayerInfo] | None = None
        self._layers_for: tuple[int, ...] | None = None

    def set_image(self, image: ImageSource) -> None:
        """Decode, crop and normalize ``image``; raises ``ValueError`` for unreadable input
        (and then keeps the previous image)."""
        x, seen = self.bundle.preprocess.prepare(image)
        # A greyscale view is sent as RGB with equal channels: it is shown as greyscale.
        rgb = np.asarray(seen.convert("RGB"), dtype=np.uint8)
        self.current = LoadedImage(to_model_input(x, self.bundle.module), rgb)

    @property
    def input(self) -> torch.Tensor:
        if self.current is None:
            raise RuntimeError("no image yet: call set_image first.")
        return self.current.x

    def predictions(self, k: int = TOP_K) -> list[Prediction]:
        return [Prediction(i, label, p) for i, label, p in self.bundle.predict(self.input, k)[0]]

    def layer_table(self) -> list[LayerInfo]:
        """Layers with output shapes; probed once per input shape."""
        shape = tuple(self.input.shape)
        if self._layers is None or self._layers_for != shape:
            self._layers = layers(self.bundle.module, self.input)
            self._layers_for = shape
        return self._layers

    def layer(self, name: str) -> LayerInfo:
        """The table row of ``name`` (``"name@k"`` gives the row of the module's name)."""
        base = LayerRef.parse(name).name
        for info in self.layer_table():
            if info.name == base:
                return info
        resolve_layer(self.bundle.module, name)  # raises, listing the valid names
        raise AssertionError("unreachable: a module missing from the layer table")

    def default_cam_layer(self) -> str:
        return default_cam_layer(self.layer_table(), self.bundle.module, self.input)

    def grid(self, name: str) -> dict[str, NdArray] | None:
        """The filter-grid payloads of a spatial layer (a token layer's maps through
        :func:`~cnnvis_widget.layers.spatial_maps`); ``None`` for a non-spatial one."""
        if not self.layer(name).spatial:
            return None
        output = activations(self.bundle.module, self.input, [name])[name]
        size = (int(self.input.shape[-2]), int(self.input.shape[-1]))
        return grid_payloads(spatial_maps(output, size, name)[0])

    def attribution_map(
        self,
        method: str,
        target: int,
        layer: str | None,
        params: dict[str, Any],
        on_step: Callable[[MapPayload, float], bool] | None = None,
        x: torch.Tensor | None = None,
    ) -> MapPayload:
        """The map of ``method`` for class ``target`` as float32 ``(h, w)``: layer maps at the
        layer's resolution, pixel maps at the input's with colour channels summed (signed
        when the method is). ``on_step(partial_payload, fraction)`` receives the partial maps
        of long methods; returning False stops the method (``Cancelled``). The payload's
        ``note`` says when the map is not what the method promises (e.g. guided backprop on a
        model without ReLU modules gives the plain gradient)."""
        with collect_notes() as notes:
            result = self.attribution(method, target, layer, params, on_step, x)
        return map_payload(result, notes)

    def attribution(
        self,
        method: str,
        target: int,
        layer: str | None,
        params: dict[str, Any],
        on_step: Callable[[MapPayload, float], bool] | None = None,
        x: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`attribution_map` as the raw ``(1, C, h, w)`` tensor, for the current image
        or the model input ``x`` (a background job passes the image it was started with)."""

        def step(partial: torch.Tensor, fraction: float) -> bool:
            assert on_step is not None
            return on_step(map_payload(partial), fraction)

        return attribute(
            self.bundle.module,
            self.input if x is None else x,
            method,
            target=target,
            layer=layer,
            on_step=step if on_step is not None else None,
            **params,
        )

    def comparison_cell(
        self,
        method: str,
        target: int,
        layer: str | None,
        params: dict[str, Any],
        x: torch.Tensor | None = None,
        on_step: Callable[[MapPayload, float], bool] | None = None,
    ) -> ComparisonScores:
        """One cell of a side-by-side comparison: the map (as :meth:`attribution_map`) with
        its deletion and insertion scores (areas under the curves, :func:`deletion_insertion`;
        lower deletion and higher insertion are better). ``on_step`` as in
        :meth:`attribution_map` (long methods only)."""
        x = self.input if x is None else x
        with collect_notes() as notes:
            result = self.attribution(method, target, layer, params, on_step, x=x)
        scores = deletion_insertion(self.bundle.module, x, result, target)
        return {
            "map": map_payload(result, notes),
            "deletion": float(scores.deletion[0]),
            "insertion": float(scores.insertion[0]),
        }

    @staticmethod
    def method_rows() -> list[MethodRow]:
        """Every registered method as the widget's method picker needs it."""
        return [method_row(m) for m in METHODS.values()]

    def comparison_items(
        self, methods: list[str], layers: list[str], fallback_layer: str
    ) -> list[tuple[str, str | None]]:
        """(method, layer) pairs of a comparison: each layer method at each of ``layers`` (or
        at ``fallback_layer`` when none is given), each pixel method once. 2 to 6 pairs, or a
        ``ValueError`` that says what to pick."""
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}.")
        for name in layers:
            if not self.layer(name).spatial:
                raise ValueError(f"{name} is not a spatial layer; layer methods need one.")
        items: list[tuple[str, str | None]] = []
        for method in dict.fromkeys(methods):
            if METHODS[method].uses_layer:
                items += [(method, layer) for layer in (layers or [fallback_layer])]
            else:
                items.append((method, None))
        if not MIN_COMPARED <= len(items) <= MAX_COMPARED:
            raise ValueError(
                f"a comparison shows {MIN_COMPARED} to {MAX_COMPARED} maps; this selection gives "
                f"{len(items)}. Pick {MIN_COMPARED}-{MAX_COMPARED} methods, or one layer method and "
                "several layers."
            )
        return items

    def image_payload(self) -> NdArray:
        if self.current is None:
            raise RuntimeError("no image yet: call set_image first.")
        return ndarray_payload(self.current.rgb, "uint8")

    def layer_rows(self) -> list[LayerRow]:
        """The layer table as the layer tree's rows."""
        return [layer_row(info) for info in self.layer_table()]
