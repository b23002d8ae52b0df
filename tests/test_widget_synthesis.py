"""The Explorer's synthesis panel, headless: streaming from the background thread, stop,
resume, reseed, pins, the adversarial view, the layer grid and bad requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from support import send_from_browser

import cnnvis_widget as cv
from cnnvis_widget.encode import decode_payload
from cnnvis_widget.synthesis.kinds import KINDS


@pytest.fixture
def explorer(lite0: cv.ModelBundle) -> cv.Explorer:
    widget = cv.Explorer(lite0)
    widget.selected_layer = "_blocks.3"
    widget.selected_channel = 4
    return widget


def frames_of(widget: cv.Explorer) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    widget.observe(
        lambda c: (
            seen.append((c["new"]["step"], threading.current_thread().name)) if c["new"] else None
        ),
        "synthesis",
    )
    return seen


def test_channel_visualization_streams_frames_then_the_final_result(explorer) -> None:
    frames = frames_of(explorer)
    explorer.synthesize("feature", steps=12, size=48)
    assert explorer.wait(120)
    assert explorer.synth_job["state"] == "done"
    final = explorer.synthesis
    assert final["final"] and final["step"] == 12
    assert decode_payload(final["images"]).shape == (1, 48, 48, 3)
    trace = decode_payload(final["trace"])
    assert trace.shape == (12,) and trace[-1] > trace[0]
    streamed = [step for step, _ in frames[:-1]]
    assert streamed and streamed[0] == 1 and streamed == sorted(streamed)
    assert {name for _, name in frames} == {"cnnvis-jobs"}  # computed off the main thread


def test_stop_keeps_the_image_and_resume_continues_where_it_stopped(explorer) -> None:
    explorer.synthesize("feature", steps=2000, size=48)
    deadline = threading.Event()
    while not (explorer.synthesis and explorer.synthesis["step"] >= 3):
        deadline.wait(0.05)
    explorer.stop_synthesis()
    assert explorer.wait(60)
    job, stopped = explorer.synth_job, explorer.synthesis
    assert job["state"] == "cancelled" and job["resumable"]
    assert stopped["final"] and stopped["stopped"] and 3 <= stopped["step"] < 2000
    explorer.selected_channel = 7  # a new pick does not change what is resumed
    explorer.resume_synthesis()
    while not (explorer.synthesis and explorer.synthesis["step"] >= stopped["step"] + 3):
        deadline.wait(0.05)
    explorer.stop_synthesis()
    assert explorer.wait(60)
    resumed = explorer.synthesis
    assert resumed["step"] > stopped["step"]
    assert resumed["label"] == stopped["label"] and resumed["label"].endswith("channel 4")
    before, after = decode_payload(stopped["trace"]), decode_payload(resumed["trace"])
    np.testing.assert_array_equal(after[: len(before)], before)  # the curve continues


def test_reseed_and_pins(explorer) -> None:
    explorer.synthesize("feature", steps=3, size=32)
    explorer.wait(60)
    first = decode_payload(explorer.synthesis["images"]).copy()
    explorer.pin()
    explorer.reseed()
    explorer.wait(60)
    assert explorer.synth_params["seed"] != 0
    assert not np.array_equal(decode_payload(explorer.synthesis["images"]), first)
    explorer.pin()
    assert [p["label"] for p in explorer.synth_pins] == [explorer.synthesis["label"]] * 2
    # Pins of the same target are told apart by their seed (and step).
    seed = explorer.synth_params["seed"]
    assert [p["detail"] for p in explorer.synth_pins] == [
        "step 3 · seed 0",
        f"step 3 · seed {seed}",
    ]
    send_from_browser(explorer, {"type": "synth", "action": "unpin", "index": 0})
    assert len(explorer.synth_pins) == 1


def test_adversarial_view_has_both_predictions_and_the_magnified_perturbation(explorer) -> None:
    explorer.synthesize("adversarial", epsilon=2.0)
    explorer.wait(60)
    view = explorer.synthesis["adversarial"]
    assert view["before"]["label"] == "Egyptian cat" and view["after"]["index"] != 285
    perturbation = decode_payload(view["perturbation"])
    # +-epsilon magnified to 0 / 255; a pixel clipped at 0 or 1 moves less (or not: 128).
    assert np.isin(perturbation, (0, 255)).mean() > 0.95
    assert view["epsilon"] == 2.0


def test_layer_grid_fills_every_channel(explorer) -> None:
    explorer.selected_layer = "_blocks.0"  # 16 channels: four CPU batches
    grids = []
    explorer.observe(lambda c: grids.append(c["new"]), "feature_grid")
    explorer.visualize_layer(steps=2, size=32)
    assert explorer.wait(120)
    assert explorer.feature_grid_job["state"] == "done"
    tiles = decode_payload(explorer.feature_grid["images"])
    assert tiles.shape == (16, 32, 32, 3) and explorer.feature_grid["layer"] == "_blocks.0"
    assert not (tiles == 128).all(axis=(1, 2, 3)).any(), "a tile was never drawn"
    assert len(grids) >= 2  # filled batch by batch


@pytest.mark.parametrize(
    "kind",
    [k for k, s in KINDS.items() if s.output == "images" and k not in ("feature", "adversarial")],
)
def test_every_kind_runs_in_the_panel(explorer, kind: str) -> None:
    explorer.synthesize(kind, steps=2)
    assert explorer.wait(120)
    assert explorer.synth_job["state"] == "done", explorer.message
    assert decode_payload(explorer.synthesis["images"]).ndim == 4


def test_bad_requests_leave_the_panel_usable(explorer) -> None:
    explorer.selected_channel = -1
    send_from_browser(explorer, {"type": "synth", "action": "start"})
    assert "pick a channel" in explorer.message["text"]
    # Also beside the panel's buttons: the banner may be scrolled out of view.
    assert explorer.synth_job["state"] == "error" and explorer.synth_job["id"] == 0
    assert "pick a channel" in explorer.synth_job["error"]
    send_from_browser(explorer, {"type": "synth", "action": "resume"})
    assert "nothing to resume" in explorer.message["text"]
    assert "nothing to resume" in explorer.synth_job["error"]
    explorer.selected_layer = "_fc"
    send_from_browser(explorer, {"type": "synth", "action": "layer"})
    assert "no channel maps" in explorer.feature_grid_job["error"]
    explorer.selected_layer = "_blocks.3"
    kind, params = explorer.synth_kind, dict(explorer.synth_params)
    with pytest.raises(ValueError, match="steps"):
        explorer.synthesize("class", steps=0)
    assert (explorer.synth_kind, explorer.synth_params) == (kind, params)  # nothing changed
    explorer.synthesize("dream", steps=50)
    while not (explorer.synthesis and explorer.synthesis["kind"] == "dream"):
        threading.Event().wait(0.05)
    explorer.stop_synthesis()
    explorer.wait(60)
    assert explorer.synthesis["stopped"] and not explorer.synth_job["resumable"]
    with pytest.raises(ValueError, match="nothing to resume"):
        explorer.resume_synthesis()  # deep dream does not resume
    explorer.selected_channel = 2
    explorer.synthesize("feature", steps=2, size=32)
    assert explorer.wait(60) and explorer.synth_job["state"] == "done"


def test_erhan_kind_shows_every_restart_and_their_agreement(explorer) -> None:
    explorer.selected_channel = 3
    explorer.synthesize("erhan", steps=3, size=32, restarts=3)
    assert explorer.wait(120)
    assert explorer.synth_job["state"] == "done", explorer.message
    assert decode_payload(explorer.synthesis["images"]).shape == (3, 32, 32, 3)
    assert "restarts agree: correlation" in explorer.synthesis["label"]
