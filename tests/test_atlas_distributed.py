"""The dataset pass under torchrun: 2 processes on CPU (gloo) give the single-process result,
through the command line a long run would use."""

from __future__ import annotations

import subprocess
import sys

import torch

import cnnvis_widget as cv

COMMAND = [
    "-m", "cnnvis_widget", "atlas", "--model", "fashion_cnn", "--data", "fashion_mnist:test",
    "--layers", "features.relu3", "features.relu5", "--limit", "301", "--batch-size", "64",
]  # fmt: skip


def run(arguments: list[str]) -> None:
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_two_processes_give_the_single_process_atlas(tmp_path) -> None:
    run([*COMMAND, "--out", str(tmp_path / "one")])
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run([*torchrun, *COMMAND, "--out", str(tmp_path / "two")])
    one, two = cv.UnitAtlas.load(tmp_path / "one"), cv.UnitAtlas.load(tmp_path / "two")
    assert one.images == two.images == 301 and one.complete and two.complete
    assert one.model_fingerprint == two.model_fingerprint
    for layer in one.layers:
        units = one.stats[layer].units
        assert all(one.top(layer, u) == two.top(layer, u) for u in range(units)), layer
        a, b = one.summary(layer), two.summary(layer)
        assert torch.equal(a["quantile"], b["quantile"]) and torch.equal(a["max"], b["max"])
        for key in ("mean", "std", "class_means"):  # float64 sums in another order
            assert torch.allclose(a[key], b[key], rtol=1e-12, atol=0, equal_nan=True), key
