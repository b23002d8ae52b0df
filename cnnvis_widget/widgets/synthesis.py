"""The synthesis panel: feature visualization and friends, live.

Runs any kind of :data:`~cnnvis_widget.synthesis.kinds.KINDS` on the current selection. Image
kinds stream frames into ``synthesis`` (at most one per ``FRAME_INTERVAL_S``) on one job
channel; the whole-layer kind fills ``feature_grid`` batch by batch on another, so a layer
visualization and a channel visualization can run side by side. Stop acts at the optimizer's
next step; a stopped channel visualization resumes where it stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import traitlets

from ..protocol import DEFAULT_SYNTH_KIND, MAX_PINS, Pin, feature_grid, refused_job
from ..synthesis import SynthesisFrame, SynthesisResult
from ..synthesis.kinds import (
    KINDS,
    SynthesisTarget,
    check_synthesis,
    check_target,
    frame_payload,
    result_payload,
    run_synthesis,
    unit_of,
)
from .channel import JobChannel, JobEnd, Report, Update
from .panel import Host, Panel, traits_of
from .traits import optional_dict

FRAME_INTERVAL_S = 0.05
"""At most 20 frames per second reach the browser."""
GRID_PROGRESS_INTERVAL_S = 0.25
"""Progress of a layer visualization between two finished batches, at most this often."""
LAYER_KIND = "layer"


class SynthesisTraits(traitlets.HasTraits):
    """The synthesis panel's synced traits (docs/protocol.md)."""

    synth_kinds = traitlets.List(traitlets.Dict()).tag(sync=True)
    synth_kind = traitlets.Unicode(DEFAULT_SYNTH_KIND).tag(sync=True)
    synth_params = traitlets.Dict().tag(sync=True)
    synthesis = optional_dict()
    synth_job = optional_dict()
    synth_pins = traitlets.List(traitlets.Dict()).tag(sync=True)
    feature_grid = optional_dict()
    feature_grid_job = optional_dict()


@dataclass
class SynthesisRun:
    """One synthesis started from the panel: what, with which parameters, on what; its
    result once the job returns (also when stopped)."""

    kind: str
    params: dict[str, Any]
    where: SynthesisTarget
    result: SynthesisResult | None = None


class SynthesisPanel(Panel):
    messages = ("synth",)

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.traits = traits_of(host, SynthesisTraits)
        self.images = JobChannel(host, "synth_job", FRAME_INTERVAL_S)
        self.grid = JobChannel(host, "feature_grid_job", GRID_PROGRESS_INTERVAL_S)
        self.last_run: SynthesisRun | None = None

    def channels(self) -> list[JobChannel]:
        return [self.images, self.grid]

    # --- actions (the Explorer's Python API delegates here) -----------------------------------

    def synthesize(self, kind: str | None = None, **params: Any) -> None:
        """Start ``kind`` (default: the panel's pick) with ``params`` over the panel's values,
        on the current selection."""
        traits = self.traits
        if kind is not None or params:
            merged = {**({} if kind is not None else traits.synth_params), **params}
            check_synthesis(kind if kind is not None else traits.synth_kind, merged)
            with self.host.applying():
                if kind is not None:
                    traits.synth_kind = kind
                    traits.synth_params = {}
                traits.synth_params = {**traits.synth_params, **params}
        self._start(SynthesisRun(traits.synth_kind, dict(traits.synth_params), self._target()))

    def visualize_layer(self, **params: Any) -> None:
        """Start the whole-layer kind: with the form's values when it is the picked kind,
        else its defaults; ``params`` override them."""
        traits = self.traits
        base = dict(traits.synth_params) if traits.synth_kind == LAYER_KIND else {}
        self._start(SynthesisRun(LAYER_KIND, {**base, **params}, self._target()))

    def stop(self) -> None:
        self.images.cancel()

    def resume(self) -> None:
        last = self.last_run
        if (
            last is None
            or last.result is None
            or not last.result.stopped
            or not KINDS[last.kind].resumable
        ):
            raise ValueError("nothing to resume: only a stopped channel visualization resumes.")
        self._start(SynthesisRun(last.kind, dict(last.params), last.where), resume=last.result)

    def reseed(self) -> None:
        self.synthesize(seed=random.randrange(2**31 - 1))

    def pin(self) -> None:
        shown = self.traits.synthesis
        if not shown:
            raise ValueError("nothing to pin yet: run a synthesis first.")
        pin: Pin = {
            "label": shown["label"],
            "detail": self._pin_detail(),
            "images": shown["images"],
        }
        self.host.assign({"synth_pins": [*self.traits.synth_pins, pin][-MAX_PINS:]})

    def unpin(self, index: int) -> None:
        self.traits.synth_pins = [p for i, p in enumerate(self.traits.synth_pins) if i != index]

    def on_message(self, content: dict[str, Any]) -> None:
        action = content.get("action")
        actions = {
            "start": self.synthesize, "stop": self.stop, "resume": self.resume,
            "reseed": self.reseed, "pin": self.pin, "layer": self.visualize_layer,
            "stop_layer": self.grid.cancel,
        }  # fmt: skip
        if action == "unpin":
            self.unpin(int(content.get("index", -1)))
            return
        if action not in actions:
            raise ValueError(f"unknown synthesis action {action!r}.")
        try:
            actions[action]()
        except Exception as error:
            # Shown beside the button that was pressed as well as in the widget's banner,
            # which may be scrolled out of view.
            with self.host.applying():
                kind = LAYER_KIND if action == "layer" else self.traits.synth_kind
                self._refused(kind, error)
            raise

    # --- running ---------------------------------------------------------------------------

    def _target(self) -> SynthesisTarget:
        host = self.host
        shape = host.session.layer(host.selected_layer).output_shape
        channels = int(shape[1]) if shape is not None and len(shape) == 4 else None
        return SynthesisTarget(
            host.selected_layer, host.selected_channel, host.selected_class,
            host.session.input, channels,
        )  # fmt: skip

    def _refused(self, kind: str, error: Exception) -> None:
        spec = KINDS.get(kind)
        if spec is not None and spec.output == "grid":
            self.host.assign(
                {"feature_grid_job": refused_job(f"layer {self.host.selected_layer}", error)}
            )
        else:
            title = spec.title if spec is not None else kind
            self.host.assign({"synth_job": refused_job(title, error)})

    def _start(self, run: SynthesisRun, resume: SynthesisResult | None = None) -> None:
        check_synthesis(run.kind, run.params)  # refused now, before a job starts
        check_target(run.kind, run.where)
        if KINDS[run.kind].output == "grid":
            self._start_grid(run)
        else:
            self._start_images(run, resume)

    def _start_images(self, run: SynthesisRun, resume: SynthesisResult | None) -> None:
        bundle = self.host.session.bundle
        label = KINDS[run.kind].label(run.where, bundle)
        unit = unit_of(run.kind, run.where)
        # One 0-d tensor per step, read back to the host only when a frame is sent: no
        # device synchronization on the steps in between.
        trace: list[torch.Tensor] = list(resume.trace.float().mean(dim=1)) if resume else []

        def work(report: Report) -> SynthesisRun:
            def on_frame(frame: SynthesisFrame) -> bool:
                trace.append(frame.values.float().mean())
                return report(
                    lambda: {"synthesis": frame_payload(run.kind, label, frame, trace, unit)},
                    frame.fraction,
                )

            run.result = run_synthesis(bundle, run.kind, run.params, run.where, on_frame, resume)
            return run

        def finish(end: JobEnd[SynthesisRun]) -> Update:
            result = run.result  # set also when the run was stopped (it returns what it has)
            if end.state == "error" or result is None:
                return {}
            update: Update = {"synthesis": result_payload(run.kind, label, result, bundle, unit)}
            if end.state == "cancelled":
                resumable = KINDS[run.kind].resumable and result.stopped
                update["synth_job"] = {"resumable": resumable}
            return update

        with self.host.publish_lock:  # the job's updates take this lock: last_run is set first
            with self.host.applying():
                self.host.assign(self.images.starting(label))
            self.images.start(label, work, finish)
            self.last_run = run

    def _start_grid(self, run: SynthesisRun) -> None:
        bundle = self.host.session.bundle
        layer, count = run.where.layer, run.where.layer_channels or 0
        steps = int(check_synthesis(run.kind, run.params)["steps"])
        label = f"layer {layer}"
        tiles: list[np.ndarray | None] = [None]

        def work(report: Report) -> Update:
            def on_frame(frame: SynthesisFrame) -> bool:
                if frame.step % steps == 0:  # a batch is done: its tiles are final
                    payload, tiles[0] = feature_grid(
                        frame.images, frame.first, count, layer, tiles[0]
                    )
                    return report({"feature_grid": payload}, frame.fraction, urgent=True)
                return report(None, frame.fraction)

            result = run_synthesis(bundle, run.kind, run.params, run.where, on_frame)
            return {"feature_grid": feature_grid(result.images, 0, count, layer, None)[0]}

        with self.host.applying():
            self.host.assign(self.grid.starting(label))
        self.grid.start(label, work)

    def _pin_detail(self) -> str:
        """What tells pins of one target apart: the step shown and the run's seed."""
        shown = self.traits.synthesis
        parts = [f"step {shown['step']}"] if shown else []
        run = self.last_run
        if run is not None:
            seeds = [p.default for p in KINDS[run.kind].params if p.name == "seed"]
            if seeds:
                parts.append(f"seed {run.params.get('seed', seeds[0])}")
        return " · ".join(parts)
