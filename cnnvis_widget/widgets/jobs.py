"""Background jobs for the widget: one long computation at a time per runner, streamed,
cancellable, superseded by the next request. Panels use them through
:class:`~cnnvis_widget.widgets.channel.JobChannel`, which publishes to traits.

The kernel's main thread stays free while a job runs, so the notebook can run other cells and
the widget keeps answering (a click, a cancel). A job's callbacks are delivered only while it
is still the runner's current job: a result of a superseded or cancelled job is never
published, even when it finishes in the same instant as the new request arrives.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..methods import Cancelled

_RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()
IDLE_SECONDS = 120.0
"""A worker thread with nothing to do for this long ends (and lets its widget be freed)."""

Step = Callable[[Any, float], bool]
"""``step(partial, fraction_done) -> keep_going``: a job reports progress through it."""


@dataclass
class Job:
    """One submitted computation. ``cancelled`` is set by :meth:`JobRunner.cancel` or when a
    newer job supersedes this one; the work sees it at its next step."""

    id: int
    label: str
    cancelled: threading.Event = field(default_factory=threading.Event)


class Throttle:
    """Lets one update per job through at most every ``interval`` seconds (the first of a job
    at once): a fast computation would otherwise send updates faster than a browser on a busy
    machine draws them, and the backlog would delay everything after it."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: tuple[int, float] | None = None  # (job id, when the last update went)

    def due(self, job: Job) -> bool:
        now = time.monotonic()
        last = self._last
        if last is not None and last[0] == job.id and now - last[1] < self.interval:
            return False
        self._last = (job.id, now)
        return True


class JobRunner:
    """Runs ``work(step)`` in the runner's one worker thread (a daemon, started on first use
    and kept while jobs come: ipykernel sets up a message pipe per sending thread, so a
    long-lived thread streams its first partial map sooner than a new one would). Starting a job cancels the
    previous one, which stops at its next step; the new job runs right after.

    ``on_partial(job, partial, fraction)``, ``on_done(job, result)``, ``on_cancel(job)`` and
    ``on_error(job, error)`` run in the worker thread, under the runner's lock (``lock``, if
    given), and only while ``job`` is current: the owner publishes from them without seeing
    stale jobs.
    """

    def __init__(
        self,
        on_partial: Callable[[Job, Any, float], None],
        on_done: Callable[[Job, Any], None],
        on_cancel: Callable[[Job], None],
        on_error: Callable[[Job, BaseException], None],
        lock: threading.RLock | None = None,
    ) -> None:
        self._on_partial, self._on_done = on_partial, on_done
        self._on_cancel, self._on_error = on_cancel, on_error
        # The owner passes the lock it publishes under, so that starting a job while
        # publishing (main thread) and publishing while holding the runner (worker) take one
        # and the same lock: two locks taken in opposite orders would deadlock.
        self._lock = lock if lock is not None else threading.RLock()
        self._ids = itertools.count(1)
        self._current: Job | None = None
        self._latest: Job | None = None
        self._queue: queue.SimpleQueue[tuple[Job, Callable[[Step], Any]]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Event()
        self._idle.set()
        _RUNNERS.add(self)

    @property
    def current(self) -> Job | None:
        """The job running or queued now, if any."""
        return self._current

    @property
    def latest(self) -> Job | None:
        """The last job started and not forgotten: the only one whose results may still be
        shown (also after it ended)."""
        return self._latest

    def start(self, label: str, work: Callable[[Step], Any]) -> Job:
        """Cancel the running job (if any) and queue ``work`` for the worker thread."""
        with self._lock:
            if self._current is not None:
                self._current.cancelled.set()
            job = Job(next(self._ids), label)
            self._current = job
            self._latest = job
            self._pending += 1
            self._idle.clear()
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="cnnvis-jobs", daemon=True)
                self._worker.start()
        self._queue.put((job, work))
        return job

    def cancel(self) -> bool:
        """Ask the current job to stop at its next step; False when none is running."""
        with self._lock:
            job = self._current
            if job is None:
                return False
            job.cancelled.set()
            return True

    def forget(self) -> None:
        """Cancel the current job and drop it, so nothing it produces is published."""
        with self._lock:
            if self._current is not None:
                self._current.cancelled.set()
            self._current = None
            self._latest = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every started job has ended (superseded ones stop at their next
        step); True if that happened within ``timeout`` seconds."""
        return self._idle.wait(timeout)

    def _serve(self) -> None:
        while True:
            try:
                job, work = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # start() enqueues under this lock: no job is missed
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            try:
                if job.cancelled.is_set():  # superseded or stopped before it began
                    self._finish(job, self._on_cancel)
                else:
                    self._run(job, work)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    def _run(self, job: Job, work: Callable[[Step], Any]) -> None:
        def step(partial: Any, fraction: float) -> bool:
            if job.cancelled.is_set():
                return False
            with self._lock:
                if self._current is job:
                    self._on_partial(job, partial, fraction)
            return not job.cancelled.is_set()

        try:
            result = work(step)
        except Cancelled:
            self._finish(job, self._on_cancel)
            return
        except BaseException as error:  # reported to the owner, never lost
            self._finish(job, self._on_error, error)
            return
        if job.cancelled.is_set():
            self._finish(job, self._on_cancel)
        else:
            self._finish(job, self._on_done, result)

    def _finish(self, job: Job, publish: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._current is job:
                self._current = None
                publish(job, *args)


@atexit.register
def _stop_all_jobs() -> None:
    """At interpreter exit, stop every job and let its thread leave torch's C++ code: a
    daemon thread killed inside an operator aborts the process."""
    runners = list(_RUNNERS)
    for runner in runners:
        job = runner.current  # no lock taken: exit must not wait on a stuck publisher
        if job is not None:
            job.cancelled.set()
    for runner in runners:
        runner.wait(30)
