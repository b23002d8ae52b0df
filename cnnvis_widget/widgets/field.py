"""The unit card's empirical receptive field (Zhou et al. 2015, sec. 3.2;
:mod:`cnnvis_widget.empirical_field`): computed on the units panel's ``field_job`` channel
(progress and Stop) for the card's unit over its top atlas images (at most
:data:`~cnnvis_widget.protocol.FIELD_TOP_K`), sent as ``unit_field`` and kept per
(layer, unit) for the session, so a card opened again shows it without recomputing.

The payload names its layer and unit: a field finished while another card is open is kept,
not shown, and the browser draws a field only on the card it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..atlas import UnitAtlas
from ..empirical_field import DIM, EmpiricalField, empirical_receptive_field, field_segments
from ..encode import ndarray_payload
from ..models import AnyPreprocess
from ..protocol import FIELD_TOP_K, UnitField, message
from .channel import JobChannel, JobEnd, Report, Update
from .panel import Host

GREY = 128
"""Backdrop value where the map reaches past the image."""


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """(..., C) uint8 -> (..., 3): RGB as is, grey (C = 1) repeated, other counts as their
    mean."""
    channels = pixels.shape[-1]
    if channels == 3:
        return pixels
    if channels == 1:
        return np.repeat(pixels, 3, axis=-1)
    grey = np.round(pixels.astype(np.float64).mean(-1, keepdims=True)).astype(np.uint8)
    return np.repeat(grey, 3, axis=-1)


def field_window(field: EmpiricalField) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the part of ``field.mean_map`` the card draws: the
    theoretical field around the peak's centre widened by the occluder's side (every
    occluder that touches the field lies inside), clipped to the map."""
    cy, cx = field.centre
    th, tw = field.theoretical_size
    rows, cols = field.mean_map.shape
    top = max(0, cy - th // 2 - field.patch)
    left = max(0, cx - tw // 2 - field.patch)
    bottom = min(rows, cy - th // 2 + th + field.patch)
    right = min(cols, cx - tw // 2 + tw + field.patch)
    return top, left, bottom, right


def field_payload(field: EmpiricalField, requested: int) -> UnitField:
    """``field`` as the card draws it (:class:`~cnnvis_widget.protocol.UnitField`);
    ``requested``: the images it was asked for."""
    top, left, bottom, right = field_window(field)
    cy, cx = field.centre
    height, width = field.maps.shape[1:]
    seen = _rgb(field.pixels)
    # the top image under the window, placed at its peak: map (r, c) is image
    # (r - (H - 1) + centre_y, c - (W - 1) + centre_x)
    backdrop = np.full((bottom - top, right - left, 3), GREY, np.uint8)
    if field.images:
        py, px = int(field.centres[0][0]), int(field.centres[0][1])
        rows = np.arange(top, bottom) - (height - 1) + py
        cols = np.arange(left, right) - (width - 1) + px
        inside_r, inside_c = (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)
        backdrop[np.ix_(inside_r, inside_c)] = seen[0][np.ix_(rows[inside_r], cols[inside_c])]
    segments = field_segments(field)
    return {
        "layer": field.layer, "unit": int(field.unit), "images": field.images,
        "requested": int(requested), "complete": bool(field.complete),
        "map": ndarray_payload(field.mean_map[top:bottom, left:right], "float32"),
        "window": [top, left, bottom, right], "centre": [cy - top, cx - left],
        "backdrop": ndarray_payload(backdrop, "uint8"),
        "size": [int(v) for v in field.size], "theoretical": list(field.theoretical_size),
        "box": [int(v) for v in field.box], "fraction": float(field.fraction),
        "patch": int(field.patch), "stride": int(field.stride),
        "indices": [int(i) for i in field.indices or []],
        "images_seen": ndarray_payload(seen, "uint8"),
        "masks": ndarray_payload(segments.masks, "uint8"),
        "dim": float(DIM),
    }  # fmt: skip


class UnitFields:
    """The card's empirical fields: the ones computed this session, per (layer, unit), and
    the job computing one (``field_job``). ``shown_card()`` gives the (layer, unit) of the
    card open now (None: no card)."""

    def __init__(
        self, host: Host, shown_card: Callable[[], tuple[str, int] | None], interval: float
    ) -> None:
        self.host = host
        self.shown_card = shown_card
        self.jobs = JobChannel(host, "field_job", interval)
        self.kept: dict[tuple[str, int], UnitField] = {}

    def of(self, layer: str, unit: int) -> UnitField | None:
        """The field kept for ``unit`` of ``layer`` (complete or stopped), if any."""
        return self.kept.get((layer, unit))

    def forget_layer(self, layer: str) -> None:
        """Drop the fields of ``layer`` (its atlas changed: other top images)."""
        self.kept = {key: value for key, value in self.kept.items() if key[0] != layer}

    def compute(
        self,
        layer: str,
        unit: int,
        atlas: UnitAtlas,
        data: Any,
        preprocess: AnyPreprocess | None,
    ) -> None:
        """Start the job computing ``unit`` of ``layer``'s field over its top
        ``FIELD_TOP_K`` images of ``atlas`` (``data``: the images it was computed on); a
        complete field kept from before is shown again instead. A newer start supersedes
        a running one."""
        kept = self.of(layer, unit)
        if kept is not None and kept["complete"]:
            with self.host.applying():
                self.host.assign({"unit_field": kept})
            return
        requested = min(len(atlas.top(layer, unit)), FIELD_TOP_K)
        if requested == 0:
            raise ValueError(f"the atlas holds no examples for unit {unit} of {layer}.")
        bundle = self.host.session.bundle
        label = f"empirical field of unit {unit} of {layer}"
        result: dict[str, EmpiricalField] = {}

        def work(report: Report) -> EmpiricalField:
            def should_stop(done: int, total: int) -> bool:
                return not report(None, done / max(total, 1))

            field = empirical_receptive_field(
                bundle, layer, unit, atlas=atlas, data=data, k=FIELD_TOP_K, progress=False,
                should_stop=should_stop, preprocess=preprocess,
            )  # fmt: skip
            result["field"] = field  # a stopped job's end carries no result: kept here
            return field

        def finish(end: JobEnd[EmpiricalField]) -> Update:
            field = result.get("field") if end.state in ("done", "cancelled") else None
            if field is None or field.images == 0:
                if end.state == "cancelled":
                    return {"message": message("info", f"{label} stopped before its first image.")}
                return {}
            payload = field_payload(field, requested)
            self.kept[(layer, unit)] = payload
            update: Update = {}
            if self.shown_card() == (layer, unit):
                update["unit_field"] = payload
            if not field.complete:
                update["message"] = message(
                    "info",
                    f"{label} stopped after {field.images} of {requested} images; the card "
                    "shows those. Compute it again for all.",
                )
            return update

        with self.host.applying():
            self.host.assign(self.jobs.starting(label))
        self.jobs.start(label, work, finish)
