"""The dataset pass under torchrun: 2 processes on CPU (gloo) give the single-process result,
through the command line a long run would use; a 2-process pass killed halfway resumes every
rank from its own checkpoint to that same result, and another process count is refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import cnnvis_widget as cv

COMMAND = [
    "-m", "cnnvis_widget", "atlas", "--model", "fashion_cnn", "--data", "fashion_mnist:test",
    "--layers", "features.relu3", "features.relu5", "--limit", "301", "--batch-size", "64",
]  # fmt: skip
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

# The same pass as COMMAND, as a script: batches of 32, a checkpoint after every batch; with
# "kill", every rank dies (os._exit: no cleanup, no final save) once it has done 64 images
# (after a barrier, so both have checkpointed them). Each rank writes the first image count
# its should_stop sees: a resumed rank starts from its checkpoint, not from 0.
SCRIPT = textwrap.dedent("""
    import os, sys
    import torch.distributed as dist
    import cnnvis_widget as cv
    from cnnvis_widget.__main__ import data_source

    out, mode = sys.argv[1], sys.argv[2]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    seen = []

    def should_stop(done, total):
        if not seen:
            with open(f"{out}.first-{rank}", "w") as file:
                file.write(str(done))
        seen.append(done)
        if mode == "kill" and done >= 64:
            dist.barrier()
            os._exit(3)
        return False

    cv.unit_atlas(cv.load_model("fashion_cnn"), data_source("fashion_mnist:test", 301),
                  ["features.relu3", "features.relu5"], k=9, batch_size=32, out=out,
                  checkpoint_every=1, progress=False, should_stop=should_stop)
    if dist.is_initialized():
        dist.destroy_process_group()
""")


def run(arguments: list[str], expect: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, timeout=600)
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> cv.UnitAtlas:
    """The single-process atlas of the first 301 Fashion-MNIST test images."""
    folder = tmp_path_factory.mktemp("single")
    run([*COMMAND, "--out", str(folder)])
    return cv.UnitAtlas.load(folder)


def assert_same_atlas(one: cv.UnitAtlas, two: cv.UnitAtlas) -> None:
    assert one.images == two.images == 301 and one.complete and two.complete
    assert one.model_fingerprint == two.model_fingerprint
    assert one.data_fingerprint == two.data_fingerprint
    for layer in one.layers:
        units = one.stats[layer].units
        assert all(one.top(layer, u) == two.top(layer, u) for u in range(units)), layer
        a, b = one.summary(layer), two.summary(layer)
        assert torch.equal(a["quantile"], b["quantile"]) and torch.equal(a["max"], b["max"])
        for key in ("mean", "std", "class_means"):  # float64 sums in another order
            assert torch.allclose(a[key], b[key], rtol=1e-12, atol=0, equal_nan=True), key


def test_two_processes_give_the_single_process_atlas(single, tmp_path) -> None:
    run([*TORCHRUN, *COMMAND, "--out", str(tmp_path / "two")])
    assert_same_atlas(single, cv.UnitAtlas.load(tmp_path / "two"))


def test_a_killed_two_process_pass_resumes_every_rank(single, tmp_path) -> None:
    script, out = tmp_path / "pass.py", tmp_path / "two"
    script.write_text(SCRIPT)
    run([*TORCHRUN, str(script), str(out), "kill"], expect=1)  # torchrun: a worker failed
    assert not (out / "atlas.json").exists()  # no whole result yet, one checkpoint per rank
    for rank, shard_size in ((0, 151), (1, 150)):
        checkpoint = cv.UnitAtlas.load(out / f"rank-{rank}-of-2")
        assert (checkpoint.images, checkpoint.total) == (64, shard_size)
        assert checkpoint.model_fingerprint == single.model_fingerprint
    # another process count would split the images otherwise: refused, nothing touched
    refused = run([str(script), str(out), "resume"], expect=1)
    assert "2-process pass" in refused.stderr and "--nproc_per_node=2" in refused.stderr
    assert cv.UnitAtlas.load(out / "rank-0-of-2").images == 64
    run([*TORCHRUN, str(script), str(out), "resume"])
    for rank in (0, 1):  # each rank went on after its 64 checkpointed images (2 batches)
        assert Path(f"{out}.first-{rank}").read_text() == "96"
        assert not (out / f"rank-{rank}-of-2").exists()  # deleted once the result is saved
    assert_same_atlas(single, cv.UnitAtlas.load(out))
