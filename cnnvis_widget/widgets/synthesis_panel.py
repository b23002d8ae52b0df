"""The Explorer's synthesis panel: live feature visualization and friends, streamed.

A mixin of :class:`~cnnvis_widget.widgets.explorer.Explorer` (it uses the Explorer's session,
selection traits and publishing); the math lives in :mod:`cnnvis_widget.synthesis_tasks`.
Frames reach the browser at most ``FRAME_INTERVAL_S`` apart; Stop acts at the optimizer's
next step; a stopped feature visualization can be resumed where it stopped.
"""

from __future__ import annotations

import random
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import traitlets

from ..explore import ExplorerSession
from ..synthesis import SynthesisFrame, SynthesisResult
from ..synthesis_tasks import (
    KINDS,
    SynthesisTarget,
    check_synthesis,
    check_target,
    frame_payload,
    layer_grid_payload,
    result_payload,
    run_synthesis,
)
from .jobs import Job, Step, Throttle, job_state, refused_job

FRAME_INTERVAL_S = 0.05  # at most 20 frames per second reach the browser
MAX_PINS = 12


@dataclass
class SynthesisRun:
    """One synthesis started from the panel: what, with which parameters, on what; its
    result once the job returns (also when stopped); the job's id once started."""

    kind: str
    params: dict[str, Any]
    where: SynthesisTarget
    result: SynthesisResult | None = None
    job_id: int = 0


class SynthesisPanel(traitlets.HasTraits):
    """Traits and handlers of the synthesis panel (see docs/protocol.md)."""

    synth_kinds = traitlets.List(traitlets.Dict()).tag(sync=True)
    synth_kind = traitlets.Unicode("feature").tag(sync=True)
    synth_params = traitlets.Dict().tag(sync=True)
    synthesis = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    synth_job = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    synth_pins = traitlets.List(traitlets.Dict()).tag(sync=True)
    feature_grid = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    feature_grid_job = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)

    # Provided by the Explorer this panel is mixed into.
    _session: ExplorerSession
    _publish_lock: threading.RLock
    selected_layer: str
    selected_channel: int
    selected_class: int

    def _publish(self, job: Job, update: dict[str, Any]) -> None:
        raise NotImplementedError

    def _apply(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    # --- Python API -------------------------------------------------------------------------

    def synthesize(self, kind: str | None = None, **params: Any) -> None:
        """Start a synthesis in the background (``synthesis`` streams its frames,
        ``synth_job`` its progress). ``kind`` is one of ``synth_kinds`` (default: the panel's
        pick); ``params`` override the panel's values. The target is the selected channel
        (a tile of the filter grid), the selected class, or the current image at the selected
        layer, as the kind needs."""
        if kind is not None or params:
            merged = {**({} if kind is not None else self.synth_params), **params}
            check_synthesis(kind if kind is not None else self.synth_kind, merged)
            with self._apply():
                if kind is not None:
                    self.synth_kind = kind
                    self.synth_params = {}
                self.synth_params = {**self.synth_params, **params}
        self._start_synthesis(resume=None)

    def stop_synthesis(self) -> None:
        """Stop the running synthesis at its next step (its last image stays)."""
        self._synth_jobs.cancel()

    def resume_synthesis(self) -> None:
        """Continue a stopped channel visualization from where it stopped."""
        last = self._synth_run
        if (
            last is None
            or last.result is None
            or not last.result.stopped
            or not KINDS[last.kind].resumable
        ):
            raise ValueError("nothing to resume: only a stopped channel visualization resumes.")
        self._start_synthesis(resume=last)

    def reseed(self) -> None:
        """Start again with a new random seed."""
        self.synthesize(seed=random.randrange(2**31 - 1))

    def pin(self) -> None:
        """Keep the current result beside the panel (up to 12; the oldest goes first)."""
        if not self.synthesis:
            raise ValueError("nothing to pin yet: run a synthesis first.")
        pin = {
            "label": self.synthesis["label"],
            "detail": self._pin_detail(),
            "images": self.synthesis["images"],
        }
        self.synth_pins = [*self.synth_pins, pin][-MAX_PINS:]

    def _pin_detail(self) -> str:
        """What tells pins of one target apart: the step shown and the run's seed."""
        parts = [f"step {self.synthesis['step']}"] if self.synthesis else []
        run = self._synth_run
        if run is not None:
            seeds = [p.default for p in KINDS[run.kind].params if p.name == "seed"]
            if seeds:
                parts.append(f"seed {run.params.get('seed', seeds[0])}")
        return " · ".join(parts)

    def visualize_layer(self, steps: int = 64, size: int = 64) -> None:
        """Visualize every channel of the selected layer in batches, in the background; the
        ``feature_grid`` fills batch by batch, tile for tile with the activation grid."""
        layer = self.selected_layer
        bundle = self._session.bundle
        shape = self._session.layer(layer).output_shape
        if shape is None or len(shape) != 4:
            raise ValueError(f"{layer} has no channel maps; pick a convolutional layer.")
        count = int(shape[1])
        tiles: list[np.ndarray | None] = [None]

        def work(step: Step) -> dict[str, Any]:
            from ..synthesis import visualize_feature

            def on_frame(frame: SynthesisFrame) -> bool:
                if frame.step % steps == 0:  # a batch is done: its tiles are final
                    payload, tiles[0] = layer_grid_payload(
                        frame.images, frame.first, count, layer, tiles[0]
                    )
                    return step(payload, frame.fraction)
                return step(None, frame.fraction)

            result = visualize_feature(
                bundle, layer, None, steps=steps, size=size, on_step=on_frame
            )
            return layer_grid_payload(result.images, 0, count, layer, None)[0]

        with self._apply():
            self.feature_grid_job = job_state(None, f"layer {layer}", 0.0)
        self._grid_jobs.start(f"layer {layer}", work)

    # --- jobs -------------------------------------------------------------------------------

    def _init_synthesis(self) -> None:
        from .jobs import JobRunner

        self._synth_run: SynthesisRun | None = None
        self._frames = Throttle(FRAME_INTERVAL_S)
        self._grid_progress = Throttle(0.25)
        self._synth_jobs = JobRunner(
            self._synth_frame,
            self._synth_done,
            self._synth_stopped,
            self._synth_failed,
            lock=self._publish_lock,
        )
        self._grid_jobs = JobRunner(
            self._grid_partial,
            self._grid_done,
            self._grid_stopped,
            self._grid_failed,
            lock=self._publish_lock,
        )
        self.synth_kinds = [kind.row() for kind in KINDS.values()]

    def _runners_of_panel(self) -> list[Any]:
        return [self._synth_jobs, self._grid_jobs]

    def _start_synthesis(self, resume: SynthesisRun | None) -> None:
        if resume is not None:  # the same kind, parameters and target as the stopped run
            run = SynthesisRun(resume.kind, dict(resume.params), resume.where)
        else:
            where = SynthesisTarget(
                self.selected_layer, self.selected_channel, self.selected_class,
                self._session.input,
            )  # fmt: skip
            run = SynthesisRun(self.synth_kind, dict(self.synth_params), where)
        check_synthesis(run.kind, run.params)  # refused now, before a job starts
        check_target(run.kind, run.where)
        label = _label(run.kind, run.where, self._session.bundle)
        bundle = self._session.bundle
        previous = resume.result if resume is not None else None
        # One 0-d tensor per step, read back to the host only when a frame is sent: no
        # device synchronization on the steps in between.
        trace: list[torch.Tensor] = list(previous.trace.float().mean(dim=1)) if previous else []

        def work(step: Step) -> SynthesisRun:
            def on_frame(frame: SynthesisFrame) -> bool:
                trace.append(frame.values.float().mean())
                return step(lambda: frame_payload(run.kind, label, frame, trace), frame.fraction)

            run.result = run_synthesis(bundle, run.kind, run.params, run.where, on_frame, previous)
            return run

        with self._publish_lock:  # the job's callbacks take this lock: they see job_id set
            with self._apply():
                self.synth_job = job_state(None, label, 0.0)
            run.job_id = self._synth_jobs.start(label, work).id
            self._synth_run = run

    def _synth_frame(self, job: Job, make_payload: Any, fraction: float) -> None:
        if self._frames.due(job):
            update = {
                "synthesis": make_payload(),
                "synth_job": job_state(job, "running", fraction),
            }
            self._publish(job, update)

    def _synth_done(self, job: Job, run: SynthesisRun) -> None:
        assert run.result is not None
        payload = result_payload(run.kind, job.label, run.result, self._session.bundle)
        self._publish(job, {"synthesis": payload, "synth_job": job_state(job, "done", 1.0)})

    def _synth_stopped(self, job: Job) -> None:
        fraction = (self.synth_job or {}).get("fraction", 0.0)
        update: dict[str, Any] = {"synth_job": job_state(job, "cancelled", fraction)}
        run = self._synth_run
        if run is not None and run.job_id == job.id and run.result is not None:
            update["synthesis"] = result_payload(
                run.kind, job.label, run.result, self._session.bundle
            )
            update["synth_job"]["resumable"] = KINDS[run.kind].resumable and run.result.stopped
        self._publish(job, update)

    def _synth_failed(self, job: Job, error: BaseException) -> None:
        self._publish(
            job,
            {
                "synth_job": job_state(job, "error", 0.0, error=str(error)),
                "message": {"level": "error", "text": f"{job.label}: {error}"},
            },
        )

    def _grid_partial(self, job: Job, payload: Any, fraction: float) -> None:
        if not self._grid_progress.due(job) and payload is None:
            return  # progress alone: at most 4 updates per second; new tiles always go
        update: dict[str, Any] = {"feature_grid_job": job_state(job, "running", fraction)}
        if payload is not None:
            update["feature_grid"] = payload
        self._publish(job, update)

    def _grid_done(self, job: Job, payload: dict[str, Any]) -> None:
        self._publish(
            job,
            {
                "feature_grid": payload,
                "feature_grid_job": job_state(job, "done", 1.0),
            },
        )

    def _grid_stopped(self, job: Job) -> None:
        fraction = (self.feature_grid_job or {}).get("fraction", 0.0)
        self._publish(job, {"feature_grid_job": job_state(job, "cancelled", fraction)})

    def _grid_failed(self, job: Job, error: BaseException) -> None:
        self._publish(
            job,
            {
                "feature_grid_job": job_state(job, "error", 0.0, error=str(error)),
                "message": {"level": "error", "text": f"{job.label}: {error}"},
            },
        )

    def _on_synth_message(self, content: dict[str, Any]) -> None:
        action = content.get("action")
        actions = {
            "start": self.synthesize, "stop": self.stop_synthesis,
            "resume": self.resume_synthesis, "reseed": self.reseed, "pin": self.pin,
            "layer": self.visualize_layer, "stop_layer": self._grid_jobs.cancel,
        }  # fmt: skip
        if action == "unpin":
            index = int(content.get("index", -1))
            self.synth_pins = [p for i, p in enumerate(self.synth_pins) if i != index]
            return
        if action not in actions:
            raise ValueError(f"unknown synthesis action {action!r}.")
        try:
            actions[action]()
        except Exception as error:
            # Shown beside the button that was pressed as well as in the widget's banner,
            # which may be scrolled out of view.
            with self._apply():
                if action == "layer":
                    self.feature_grid_job = refused_job(f"layer {self.selected_layer}", error)
                else:
                    kind = KINDS.get(self.synth_kind)
                    title = kind.title if kind is not None else self.synth_kind
                    self.synth_job = refused_job(title, error)
            raise


def _label(kind: str, where: SynthesisTarget, bundle: Any) -> str:
    title = KINDS[kind].title
    needs = KINDS[kind].needs
    if needs == "channel":
        return f"{title}: {where.layer} channel {where.channel}"
    if needs == "class":
        return f"{title}: {bundle.label(where.target)}"
    if kind == "adversarial":
        return title
    return f"{title}: {where.layer}"
