"""cv.dissect under torchrun: 2 processes on CPU (gloo), through the command line on a small
offline concept set, give the single-process dissection exactly (thresholds, top images, and
the IoU tally's integer sums), saved so that cv.DissectionResult.load reads it back; a
2-process dissection killed halfway through its tally pass resumes every rank from its own
checkpoint to that same result."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import cnnvis_widget as cv

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["features.relu3", "features.relu5"]
SMALL = "per_concept=1,whole_per_concept=1,size=64"  # 64 images, 32 x 32 label maps
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

# The same dissection as the command line's, as a script: batches of 8, a checkpoint after
# every batch; with "kill", every rank dies (os._exit: no cleanup, no final save) once its
# tally has done 16 images (after a barrier, so both have checkpointed them). With "resume",
# each rank writes the first image count its should_stop sees (the atlas is complete, so it
# is the tally's): a resumed rank starts from its checkpoint, not from 0.
SCRIPT = textwrap.dedent("""
    import os, sys
    import torch.distributed as dist
    import cnnvis_widget as cv
    from cnnvis_widget.__main__ import concept_source

    out, mode, spec = sys.argv[1], sys.argv[2], sys.argv[3]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    calls = []

    def should_stop(done, total):
        calls.append(done)
        if mode == "resume" and len(calls) == 1:  # the atlas is complete: the tally's first
            with open(f"{out}.first-{rank}", "w") as file:
                file.write(str(done))
        if mode == "kill" and len(calls) == 6:  # 4 atlas batches, then 16 tally images
            dist.barrier()
            os._exit(3)
        return False

    cv.dissect(cv.load_model("fashion_cnn"), concept_source(spec, None),
               ["features.relu3", "features.relu5"], q=0.02, batch_size=8, out=out,
               checkpoint_every=1, progress=False, should_stop=should_stop)
    if dist.is_initialized():
        dist.destroy_process_group()
""")


def run(arguments: list[str], expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The small concept set, built once here (the runs read it from this cache)."""
    cache = tmp_path_factory.mktemp("concepts")
    text = f"concepts:{SMALL},cache_dir={cache}"
    from cnnvis_widget.__main__ import concept_source

    assert len(concept_source(text, None)) == 64
    return text


@pytest.fixture(scope="module")
def single(spec: str) -> cv.DissectionResult:
    """The single-process dissection of the small concept set, in this process."""
    from cnnvis_widget.__main__ import concept_source

    return cv.dissect(cv.load_model("fashion_cnn"), concept_source(spec, None), LAYERS, q=0.02,
                      batch_size=8, progress=False)  # fmt: skip


def assert_same_dissection(one: cv.DissectionResult, two: cv.DissectionResult) -> None:
    assert one.complete and two.complete and one.images == two.images == 64
    assert one.table == two.table
    assert one.atlas is not None and two.atlas is not None
    assert one.atlas.data_fingerprint == two.atlas.data_fingerprint
    for layer in LAYERS:
        a, b = one.layers[layer], two.layers[layer]
        assert torch.equal(a.thresholds, b.thresholds), layer
        for key, value in a.tally.state_dict().items():  # integer sums: exactly
            assert torch.equal(value, b.tally.state_dict()[key]), (layer, key)
        assert torch.equal(one.iou(layer), two.iou(layer))
        units = len(a.thresholds)
        assert all(one.atlas.top(layer, u) == two.atlas.top(layer, u) for u in range(units))
    assert one.summary() == two.summary()


def test_two_processes_give_the_single_process_dissection(spec, single, tmp_path) -> None:
    out = tmp_path / "two"
    done = run([
        *TORCHRUN, "-m", "cnnvis_widget", "dissect", "--model", "fashion_cnn", "--data", spec,
        "--layers", *LAYERS, "--q", "0.02", "--batch-size", "8", "--out", str(out),
    ])  # fmt: skip
    assert_same_dissection(single, cv.DissectionResult.load(out))
    for layer, counts in single.summary().items():  # the printed table (rank 0 only)
        row = f"{layer} | {len(single.layers[layer].thresholds)} | "
        row += f"{len(single.detectors(layer))} | " + " | ".join(map(str, counts.values()))
        assert done.stdout.count(row) == 1, done.stdout


def test_a_killed_two_process_tally_resumes_every_rank(spec, single, tmp_path) -> None:
    script, out = tmp_path / "dissect.py", tmp_path / "two"
    script.write_text(SCRIPT)
    run([*TORCHRUN, str(script), str(out), "kill", spec], expect=1)  # a worker failed
    assert cv.UnitAtlas.load(out / "atlas").complete  # the first pass is whole, merged
    assert not (out / "tally" / "tally.json").exists()  # no whole tally: a shard per rank
    assert not (out / "dissection.json").exists()
    for rank in (0, 1):
        shard = (out / "tally" / f"rank-{rank}-of-2" / "tally.json").read_text()
        assert '"images": 16' in shard and '"total": 32' in shard
    with pytest.raises(FileNotFoundError, match="incomplete"):
        cv.DissectionResult.load(out)
    run([*TORCHRUN, str(script), str(out), "resume", spec])
    for rank in (0, 1):  # each rank's tally went on after its 16 checkpointed images
        assert Path(f"{out}.first-{rank}").read_text() == "24"
        assert not (out / "tally" / f"rank-{rank}-of-2").exists()
    assert_same_dissection(single, cv.DissectionResult.load(out))
