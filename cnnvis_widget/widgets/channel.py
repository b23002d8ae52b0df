"""The one background-job channel every long-running view of the widget uses.

A :class:`JobChannel` pairs a :class:`~cnnvis_widget.widgets.jobs.JobRunner` (one worker
thread, the newest job supersedes the running one) with the traits it publishes: the view's
result traits and its job trait (``overlay_job``, ``compare_job``, ``synth_job``,
``feature_grid_job``, a :class:`~cnnvis_widget.protocol.JobState`). The work reports through
``report(update, fraction)``; the channel throttles, adds the job trait, and hands the update
to its :class:`Publisher`, which applies it on the kernel's event loop, and only while the job
is still the channel's latest: a superseded, forgotten or stale result is never shown.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from ..protocol import JobState, job_state, message, queued_job
from .jobs import Job, JobRunner, Throttle

R = TypeVar("R")
Update = dict[str, Any]
"""Trait name -> new value."""
LazyUpdate = Update | Callable[[], Update] | None
"""What a job reports: trait values, a function that builds them (called only when the update
is sent: payloads of throttled frames are never built), or None (progress only)."""


class Report(Protocol):
    """``report(update, fraction, urgent=False) -> keep_going``: a job's progress. ``urgent``
    updates are never throttled away (a finished batch of tiles); others go at most once per
    the channel's interval."""

    def __call__(self, update: LazyUpdate, fraction: float, urgent: bool = False) -> bool: ...


@dataclass(frozen=True)
class JobEnd(Generic[R]):
    """How a job ended: its ``state``, the work's return value (``None`` when it raised or was
    stopped before returning) and the error (state "error")."""

    state: Literal["done", "cancelled", "error"]
    label: str
    result: R | None = None
    error: BaseException | None = None


class Publisher(Protocol):
    """What a channel needs from the widget: the lock trait writes take, the loop they run
    on (None: apply at once), and a way to send an update as one message."""

    publish_lock: threading.RLock
    main_loop: asyncio.AbstractEventLoop | None

    def publishing(self) -> AbstractContextManager[None]: ...

    def assign(self, update: Update) -> None: ...


Finish = Callable[[JobEnd[Any]], Update]
"""Builds the last update of a job from how it ended; runs where updates are applied (so it
sees every earlier update of the job), only when the job is still the latest."""


class JobChannel:
    """One long-running view: its job trait, its throttle, and the runner of its jobs."""

    def __init__(self, publisher: Publisher, job_trait: str, interval: float = 0.0) -> None:
        self.job_trait = job_trait
        self._publisher = publisher
        self._throttle = Throttle(interval)
        self._fraction = 0.0  # of the latest job, as last shown
        self._finish: Finish | None = None
        self._runner = JobRunner(
            self._on_partial, self._on_done, self._on_cancel, self._on_error,
            lock=publisher.publish_lock,
        )  # fmt: skip

    # --- what panels call -------------------------------------------------------------------

    def start(self, label: str, work: Callable[[Report], Any], finish: Finish | None = None) -> Job:
        """Supersede the running job and queue ``work(report)``. Without ``finish``, a job
        that returns publishes its return value (an :data:`Update`)."""
        with self._publisher.publish_lock:
            self._finish = finish
            self._fraction = 0.0
            return self._runner.start(label, lambda step: work(self._reporter(step)))

    def starting(self, label: str) -> Update:
        """The job trait of a job about to start (published by the caller with the request)."""
        return {self.job_trait: queued_job(label)}

    def cancel(self) -> bool:
        """Stop the current job at its next step; False when none is running."""
        return self._runner.cancel()

    def forget(self) -> None:
        """Stop the current job and publish nothing more of it."""
        self._runner.forget()

    def wait(self, timeout: float | None = None) -> bool:
        return self._runner.wait(timeout)

    @property
    def running(self) -> Job | None:
        """The job running or queued now, if any."""
        return self._runner.current

    # --- runner callbacks (worker thread, current job only) -------------------------------

    def _reporter(self, step: Callable[[Any, float], bool]) -> Report:
        def report(update: LazyUpdate, fraction: float, urgent: bool = False) -> bool:
            return step((update, urgent), fraction)

        return report

    def _on_partial(self, job: Job, partial: tuple[LazyUpdate, bool], fraction: float) -> None:
        update, urgent = partial
        if not (urgent or self._throttle.due(job)):
            return

        def build() -> Update:
            values = update() if callable(update) else dict(update or {})
            self._fraction = fraction
            return {**values, self.job_trait: self._state(job, "running", fraction)}

        self._publish(job, build)

    def _on_done(self, job: Job, result: Any) -> None:
        self._end(job, JobEnd("done", job.label, result))

    def _on_cancel(self, job: Job) -> None:
        self._end(job, JobEnd("cancelled", job.label))

    def _on_error(self, job: Job, error: BaseException) -> None:
        self._end(job, JobEnd("error", job.label, error=error))

    def _end(self, job: Job, end: JobEnd[Any]) -> None:
        finish = self._finish

        def build() -> Update:
            if finish is not None:
                extra = finish(end)
            elif end.state == "done":
                extra = dict(end.result or {})
            else:
                extra = {}
            fraction = 1.0 if end.state == "done" else self._fraction
            error = str(end.error) if end.error is not None else ""
            state: Update = {self.job_trait: self._state(job, end.state, fraction, error)}
            if end.error is not None:
                state["message"] = message("error", f"{job.label}: {end.error}")
            # finish may refine the job trait (a stopped synthesis says it can resume).
            merged = {**state, **extra}
            if self.job_trait in extra:
                merged[self.job_trait] = {**state[self.job_trait], **extra[self.job_trait]}
            return merged

        self._publish(job, build)

    @staticmethod
    def _state(job: Job, state: Any, fraction: float, error: str = "") -> JobState:
        return job_state(job.id, job.label, state, fraction, error)

    def _publish(self, job: Job, build: Callable[[], Update]) -> None:
        """Apply ``build()`` if ``job`` is still the channel's latest job when it is applied;
        on the kernel's main thread when there is one."""
        publisher = self._publisher

        def apply() -> None:
            if job is not self._runner.latest:
                return  # superseded or forgotten meanwhile: never shown
            with publisher.publishing():
                publisher.assign(build())

        loop = publisher.main_loop
        if loop is None or loop.is_closed():
            apply()
        else:
            loop.call_soon_threadsafe(apply)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread (the kernel's, when a notebook cell creates the
    widget), or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
