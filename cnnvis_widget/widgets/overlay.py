"""The overlay panel: the picked method's map over the image, for the selected class.

Quick methods are computed while the request is handled; long ones (``streams`` in the
registry: SmoothGrad, Integrated Gradients, occlusion, Score-CAM) run on the panel's job
channel and stream partial maps into ``overlay_map`` (at most one per ``PARTIAL_INTERVAL_S``).
"""

from __future__ import annotations

import json
from typing import Any

import traitlets

from ..methods import METHODS
from ..methods.api import check_params
from ..protocol import DEFAULT_METHOD, MapPayload
from .channel import JobChannel, JobEnd, Report, Update
from .panel import Change, Host, Panel, traits_of
from .traits import optional_dict

PARTIAL_INTERVAL_S = 0.25
"""Shortest time between two partial maps sent to the browser."""

MapKey = tuple[int, str, str, str, int]
"""What a map depends on: (image serial, method, its settings as JSON, layer, class)."""


class OverlayTraits(traitlets.HasTraits):
    """The overlay's synced traits (docs/protocol.md)."""

    # What is shown: the map, how it was made, the job computing it.
    overlay_map = optional_dict()
    overlay_method = traitlets.Unicode("").tag(sync=True)
    overlay_layer = traitlets.Unicode("").tag(sync=True)
    overlay_signed = traitlets.Bool(False).tag(sync=True)
    overlay_job = optional_dict()
    # What is picked: the method (of the static list ``methods``) and its settings.
    methods = traitlets.List(traitlets.Dict()).tag(sync=True)
    method = traitlets.Unicode(DEFAULT_METHOD).tag(sync=True)
    method_params = traitlets.Dict().tag(sync=True)
    # What the main canvas shows over the image: "map" (the method's) or "channel" (the
    # selected channel's). A tile click shows the channel; any request for a map goes back.
    overlay_source = traitlets.Enum(("map", "channel"), "map").tag(sync=True)
    # Signed pixel maps drawn as |value| ("absolute", Captum's default) or "signed".
    map_sign = traitlets.Enum(("absolute", "signed"), "absolute").tag(sync=True)


class OverlayPanel(Panel):
    """Computes ``overlay_map`` for the current method, class, layer and image."""

    messages = ("cancel",)

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.traits = traits = traits_of(host, OverlayTraits)
        self.jobs = JobChannel(host, "overlay_job", PARTIAL_INTERVAL_S)
        self._shown: tuple[MapKey, MapPayload] | None = None  # the last map computed
        self._computing: MapKey | None = None  # the map the running job computes
        host.watch(["method", "method_params"], self._on_method)
        # Display only: runs also for changes the widget makes itself.
        traits.observe(self._on_channel, names=["selected_channel"])

    def channels(self) -> list[JobChannel]:
        return [self.jobs]

    def on_message(self, content: dict[str, Any]) -> None:
        if content.get("job") == self.jobs.job_trait:
            self.jobs.cancel()

    def on_image(self, target: int) -> Change:
        return self.map_for(self.host.selected_layer, target)

    def on_class(self, target: int) -> Change:
        return self.map_for(self.host.selected_layer, target)

    def on_layer(self, layer: str) -> Change:
        return self.map_for(layer, self.host.selected_class)

    def _on_method(self, _change: dict[str, Any]) -> None:
        traits = self.traits
        if traits.method not in METHODS:
            raise ValueError(f"unknown method {traits.method!r}; choose one of {list(METHODS)}.")
        accepted = {param.name for param in METHODS[traits.method].params}
        if set(traits.method_params) - accepted:  # left over from the previous method
            with self.host.applying():
                traits.method_params = {
                    k: v for k, v in traits.method_params.items() if k in accepted
                }
        self.host.show(self.map_for(self.host.selected_layer, self.host.selected_class))

    def _on_channel(self, change: dict[str, Any]) -> None:
        """Picking a channel shows it over the image; deselecting it shows the map again."""
        self.traits.overlay_source = "channel" if change["new"] >= 0 else "map"

    def map_for(self, layer: str, target: int) -> Change:
        """The map of the current method for class ``target``; layer methods use ``layer``
        when it is spatial, else the layer used last. A long method is not computed here: the
        change clears the map and starts a job that streams it."""
        session, traits = self.host.session, self.traits
        descriptor = METHODS[traits.method]
        if not session.layer(layer).spatial:
            layer = traits.overlay_layer or session.default_cam_layer()
        serial = session.current.serial if session.current else -1
        method_layer = layer if descriptor.uses_layer else None
        params_key = json.dumps(traits.method_params, sort_keys=True)
        key: MapKey = (serial, traits.method, params_key, method_layer or "", target)
        view: Update = {
            "overlay_layer": layer,
            "overlay_method": traits.method,
            "overlay_signed": descriptor.signed,
            "overlay_source": "map",  # a map was asked for: show it, not a channel
        }
        if self._shown is not None and key == self._shown[0]:
            self.jobs.forget()
            return Change({**view, "overlay_map": self._shown[1], "overlay_job": None})
        if self.jobs.running is not None and key == self._computing:
            return Change(view)  # this very map is being computed: let the job go on
        params = dict(traits.method_params)
        check_params(traits.method, params)  # a bad value is refused now, not in the job
        method = traits.method
        if not descriptor.streams:
            payload = session.attribution_map(method, target, method_layer, params)
            self.jobs.forget()
            self._shown = (key, payload)
            return Change({**view, "overlay_map": payload, "overlay_job": None})
        x = session.input

        def work(report: Report) -> MapPayload:
            def partial(payload: MapPayload, fraction: float) -> bool:
                return report({"overlay_map": payload}, fraction)

            return session.attribution_map(method, target, method_layer, params, partial, x)

        def finish(end: JobEnd[MapPayload]) -> Update:
            if end.state != "done" or end.result is None:
                return {}
            self._shown = (key, end.result)
            return {"overlay_map": end.result}

        def start() -> None:
            self._computing = key
            self.jobs.start(method, work, finish)

        starting = {**view, "overlay_map": None, **self.jobs.starting(method)}
        return Change(starting, [start])
