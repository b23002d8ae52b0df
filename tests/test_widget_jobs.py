"""Background jobs of the Explorer: streamed partial maps, cancel, supersede, a responsive
kernel, and the side-by-side comparison with deletion / insertion scores."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch
from support import send_from_browser, sent_to_browser

import cnnvis_widget as cv
from cnnvis_widget.encode import decode_payload
from cnnvis_widget.widgets.jobs import JobRunner


@pytest.fixture
def explorer(lite0):
    return cv.Explorer(lite0, cv.sample_image("coffee"))


def record(widget: cv.Explorer, *names: str) -> list[tuple[str, object, str]]:
    """(trait, new value, thread name) of every change of ``names``, in order."""
    seen: list[tuple[str, object, str]] = []
    widget.observe(
        lambda change: seen.append(
            (change["name"], change["new"], threading.current_thread().name)
        ),
        names=list(names),
    )
    return seen


def job_fractions(widget: cv.Explorer, trait: str) -> list[float]:
    """The ``fraction`` of every change of the job trait ``trait``, in order."""
    fractions: list[float] = []
    widget.observe(
        lambda change: fractions.append(change["new"]["fraction"]) if change["new"] else None,
        names=trait,
    )
    return fractions


def stop_midway(widget: cv.Explorer, job: str, fractions: list[float], below: float) -> None:
    """Once a fraction in (0, below) was reported, press Stop for the job trait ``job``
    ("overlay_job" or "compare_job") and wait for the worker."""
    deadline = time.monotonic() + 60
    while not any(0 < f < below for f in fractions) and time.monotonic() < deadline:
        time.sleep(0.01)
    send_from_browser(widget, {"type": "cancel", "job": job})
    assert widget.wait(60)


def test_long_method_streams_partial_maps_from_a_background_thread(explorer, lite0) -> None:
    seen = record(explorer, "overlay_map", "overlay_job")
    explorer.method_params = {}
    explorer.method = "smoothgrad"
    # The observer returned at once: the map is cleared and computed in the background.
    assert explorer.overlay_map is None and explorer.overlay_job["state"] == "running"
    assert explorer.wait(120)
    assert explorer.overlay_job["state"] == "done" and explorer.overlay_job["fraction"] == 1.0
    partial_maps = [value for name, value, _ in seen if name == "overlay_map" and value is not None]
    fractions = [value["fraction"] for name, value, _ in seen if name == "overlay_job" and value]
    # batches of 1 (first), then 8; partial maps at most 4 per second (the first at once)
    assert len(partial_maps) >= 2 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert 0.02 in fractions  # the first sample's map was shown
    assert any(thread.startswith("cnnvis-") for name, _, thread in seen if name == "overlay_map")
    x = lite0.preprocess(cv.sample_image("coffee"))
    # Same batching as the widget's (a listener gets a first batch of one sample).
    expected = cv.attribute(lite0.module, x, "smoothgrad", target=967, on_step=lambda m, f: None)
    expected = expected[0].sum(0).numpy()
    final = decode_payload(explorer.overlay_map)
    assert np.allclose(final, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    first = decode_payload(partial_maps[0])
    assert first.shape == final.shape and not np.allclose(first, final)


def test_cancel_stops_the_job_and_keeps_the_last_partial_map(explorer) -> None:
    fractions = job_fractions(explorer, "overlay_job")
    explorer.method = "occlusion"
    explorer.method_params = {"stride": 8, "batch_size": 4}  # 625 positions: long enough
    stop_midway(explorer, "overlay_job", fractions, below=1.0)
    assert explorer.overlay_job["state"] == "cancelled" and explorer.overlay_job["fraction"] < 1
    assert explorer.overlay_map is not None  # the partial map stays visible
    assert explorer.message is None


def test_a_new_request_supersedes_the_running_job(explorer) -> None:
    seen = record(explorer, "overlay_method", "overlay_job")
    explorer.method = "occlusion"
    explorer.method_params = {"stride": 8, "batch_size": 4}
    time.sleep(0.3)
    explorer.method = "gradcam"  # synchronous: computed before the assignment returns
    gradcam = decode_payload(explorer.overlay_map)
    assert explorer.overlay_method == "gradcam" and explorer.overlay_job is None
    assert explorer.wait(60)
    # Nothing from the superseded occlusion job arrived after the switch.
    assert explorer.overlay_method == "gradcam" and explorer.overlay_job is None
    assert np.array_equal(decode_payload(explorer.overlay_map), gradcam)
    switch = max(i for i, (name, value, _) in enumerate(seen) if value == "gradcam")
    assert all(value is None for name, value, _ in seen[switch:] if name == "overlay_job")


def test_kernel_thread_is_free_while_a_job_runs(explorer, lite0) -> None:
    explorer.method = "occlusion"
    explorer.method_params = {"stride": 8, "batch_size": 4}
    assert explorer.overlay_job["state"] == "running"
    # Other work (another cell, another widget action) runs meanwhile on this thread.
    with torch.no_grad():
        logits = lite0.module(lite0.preprocess(cv.sample_image("cat")))
    assert int(logits.argmax()) in (281, 282, 285)
    explorer.selected_layer = "_blocks.4"  # a grid while the job runs
    assert decode_payload(explorer.grid).shape == (40, 28, 28)
    assert explorer.overlay_job["state"] == "running"
    send_from_browser(explorer, {"type": "cancel", "job": "overlay_job"})
    assert explorer.wait(60)
    assert not lite0.module.training


def test_bad_parameter_for_a_long_method_is_refused_before_any_job(explorer) -> None:
    explorer.method = "gradcam"
    explorer.method = "smoothgrad"
    explorer.wait(120)
    explorer.method_params = {"n_samples": 0}
    assert explorer.message["level"] == "error" and "n_samples" in explorer.message["text"]
    assert explorer.method_params == {} and explorer.overlay_job["state"] == "done"


def test_comparison_of_methods_with_scores(explorer, lite0) -> None:
    seen = record(explorer, "comparison")
    explorer.compare(["gradcam", "saliency", "layercam"])
    assert explorer.compare_job["state"] == "running"
    assert [row["state"] for row in explorer.comparison] == ["queued"] * 3
    assert explorer.wait(120)
    assert explorer.compare_job["state"] == "done"
    rows = explorer.comparison
    assert [row["method"] for row in rows] == ["gradcam", "saliency", "layercam"]
    assert [row["layer"] for row in rows] == ["_swish", "", "_swish"]
    assert len(seen) >= 4  # queued, then one update per finished cell
    x = lite0.preprocess(cv.sample_image("coffee"))
    for row in rows:
        assert row["state"] == "done" and 0 <= row["deletion"] <= 1 and 0 <= row["insertion"] <= 1
        layer = row["layer"] or None
        maps = cv.attribute(lite0.module, x, row["method"], target=967, layer=layer)
        scores = cv.deletion_insertion(lite0.module, x, maps, 967)
        assert row["deletion"] == pytest.approx(float(scores.deletion[0]), abs=1e-4)
        assert row["insertion"] == pytest.approx(float(scores.insertion[0]), abs=1e-4)
        assert decode_payload(row["map"]).shape == tuple(maps.shape[-2:])


def test_comparison_of_one_method_at_several_layers(explorer) -> None:
    explorer.compare(["gradcam"], layers=["_blocks.4", "_blocks.10", "_swish"])
    assert explorer.wait(120)
    rows = explorer.comparison
    assert [row["layer"] for row in rows] == ["_blocks.4", "_blocks.10", "_swish"]
    shapes = [decode_payload(row["map"]).shape for row in rows]
    assert shapes == [(28, 28), (14, 14), (7, 7)]


@pytest.mark.parametrize(
    ("methods", "layers", "fix"),
    [
        (["gradcam"], [], "2 to 6"),
        (
            ["saliency", "gradcam", "layercam", "gradcam_plus_plus"],
            ["_blocks.4", "_swish"],
            "2 to 6",
        ),
        (["saliency", "nope"], [], "unknown method"),
        (["gradcam", "layercam"], ["_fc"], "not a spatial layer"),
    ],
)
def test_comparison_refuses_bad_selections_with_a_message(explorer, methods, layers, fix) -> None:
    before = explorer.comparison
    with pytest.raises(ValueError, match=fix):
        explorer.compare(methods, layers)
    assert fix in explorer.message["text"] and explorer.comparison == before
    explorer.compare(["gradcam", "saliency"], [])  # still usable
    assert explorer.wait(120) and explorer.message is None


def test_job_runner_never_publishes_a_superseded_result() -> None:
    published: list[tuple[int, str]] = []
    runner = JobRunner(
        lambda job, partial, fraction: published.append((job.id, "partial")),
        lambda job, result: published.append((job.id, "done")),
        lambda job: published.append((job.id, "cancelled")),
        lambda job, error: published.append((job.id, f"error {error}")),
    )
    release = threading.Event()

    def slow(step):  # finishes only after it has been superseded, without calling step again
        step(None, 0.5)
        release.wait(5)
        return "stale"

    first = runner.start("slow", slow)
    time.sleep(0.05)
    second = runner.start("quick", lambda step: "fresh")
    release.set()
    assert runner.wait(5)
    first_thread_done = threading.Event()
    threading.Thread(target=lambda: (time.sleep(0.1), first_thread_done.set())).start()
    first_thread_done.wait(1)
    assert (first.id, "done") not in published and (first.id, "cancelled") not in published
    assert (second.id, "done") in published
    failing = runner.start("bad", lambda step: 1 / 0)
    assert runner.wait(5)
    assert (failing.id, "error division by zero") in published


def test_a_layer_click_does_not_restart_a_pixel_method_job(explorer) -> None:
    explorer.method = "occlusion"
    explorer.method_params = {"stride": 8, "batch_size": 4}
    job = explorer.overlay_job
    deadline = time.monotonic() + 60
    while explorer.overlay_job["id"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # until the job has started and reported
    explorer.selected_layer = "_blocks.4"
    assert explorer.overlay_job["state"] == "running"
    started = explorer.overlay_job["id"]
    assert started >= 1
    explorer.selected_layer = "_blocks.5"
    assert explorer.overlay_job["state"] == "running" and explorer.overlay_job["id"] == started
    send_from_browser(explorer, {"type": "cancel", "job": "overlay_job"})
    assert explorer.wait(60) and job is not None


def test_worker_thread_is_reused_and_ends_when_idle(monkeypatch) -> None:
    import cnnvis_widget.widgets.jobs as jobs

    monkeypatch.setattr(jobs, "IDLE_SECONDS", 0.2)
    threads: list[str] = []
    runner = JobRunner(
        lambda job, partial, fraction: None,
        lambda job, result: threads.append(result),
        lambda job: None,
        lambda job, error: None,
    )
    for _ in range(3):
        runner.start("t", lambda step: threading.current_thread().ident)
        assert runner.wait(5)
    assert len(threads) == 3 and len(set(threads)) == 1  # one worker served all three
    deadline = time.monotonic() + 5
    while runner._worker is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner._worker is None
    runner.start("again", lambda step: "after idle")  # a new worker starts on demand
    assert runner.wait(5) and threads[-1] == "after idle"


def test_comparison_can_be_stopped_inside_a_long_cell(explorer) -> None:
    fractions = job_fractions(explorer, "compare_job")
    explorer.compare(["occlusion", "gradcam"])
    stop_midway(explorer, "compare_job", fractions, below=0.5)
    assert explorer.compare_job["state"] == "cancelled" and explorer.compare_job["fraction"] < 0.5
    # The cell being computed was marked running; at Stop every unfinished cell says stopped.
    assert [row["state"] for row in explorer.comparison] == ["stopped", "stopped"]


def test_comparison_cells_report_running_and_their_settings(explorer) -> None:
    seen = record(explorer, "comparison")
    explorer.method = "smoothgrad"
    explorer.method_params = {"n_samples": 2}
    explorer.compare(["smoothgrad", "gradcam"])
    assert explorer.wait(120)
    states = [[row["state"] for row in rows] for _, rows, _ in seen]
    assert ["running", "queued"] in states and ["done", "running"] in states
    assert states[-1] == ["done", "done"]
    # The picker's method uses the picker's settings, the others their defaults.
    assert [row["params"] for row in explorer.comparison] == [{"n_samples": 2}, {}]


def test_a_new_image_clears_the_comparison_of_the_old_one(explorer) -> None:
    explorer.compare(["gradcam", "saliency"])
    assert explorer.wait(120) and len(explorer.comparison) == 2
    explorer.image_name = next(n for n in explorer.image_names if n != explorer.image_name)
    assert explorer.comparison == [] and explorer.compare_job is None


def test_superseding_while_partial_maps_flow_does_not_deadlock(explorer) -> None:
    # The main thread starts jobs while holding the publish lock; the worker publishes
    # partial maps while holding the runner: one shared lock, else these two deadlock.
    explorer.method = "smoothgrad"
    sent_to_browser(explorer, delay=0.01)  # a slow comm widens the window

    def churn() -> None:
        for seed in range(15):
            explorer.method_params = {"n_samples": 200, "batch_size": 1, "seed": seed}
            time.sleep(0.15)
        send_from_browser(explorer, {"type": "cancel", "job": "overlay_job"})

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the main thread is stuck: lock-order deadlock"
    assert explorer.wait(60)
    assert explorer.overlay_job["state"] == "cancelled"
    assert explorer.method_params["seed"] == 14


def test_an_update_queued_for_the_kernel_loop_is_dropped_once_superseded() -> None:
    # In a kernel, job updates wait on the main thread's event loop; a job superseded while
    # its update waits there must not be shown when the loop gets to it.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 4),
    )  # fmt: skip

    async def scenario() -> cv.Explorer:
        widget = cv.Explorer(
            model, preprocess=cv.Preprocess(input_size=(64, 64)), labels=list("abcd")
        )
        widget.method_params = {}
        widget.method = "smoothgrad"
        widget.method_params = {"n_samples": 1000, "batch_size": 1}
        time.sleep(1.0)  # the loop is blocked: the job's partial maps queue up on it
        widget.method = "gradcam"  # computed at once; the smoothgrad job is superseded
        await asyncio.sleep(0.5)  # now the loop runs what was queued
        return widget

    widget = asyncio.run(scenario())
    assert widget.wait(60)
    assert widget.overlay_method == "gradcam" and widget.overlay_job is None
    expected = cv.attribute(model, widget.session.input, "gradcam", target=widget.selected_class,
                            layer=widget.overlay_layer)  # fmt: skip
    assert np.allclose(decode_payload(widget.overlay_map), expected[0, 0].numpy(), atol=1e-6)
