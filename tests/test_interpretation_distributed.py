"""relevant_features under torchrun: 2 processes on CPU (gloo) give the single-process
responses and weights (each rank pools its shard, the rows are merged by dataset index)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from cnnvis_widget.interpretation import RelevantFeatures

TESTS = Path(__file__).parent
SCRIPT = textwrap.dedent(f"""
    import os, sys
    sys.path.insert(0, {str(TESTS)!r})
    import torch.distributed as dist
    from test_interpretation_support import BarNet, bars, identity
    from cnnvis_widget.interpretation import relevant_features

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    relevant_features(BarNet().eval(), bars(37), mu=0.5, batch_size=4, out=sys.argv[1],
                      progress=False, preprocess=identity)
    if dist.is_initialized():
        dist.destroy_process_group()
""")
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run(arguments: list[str]) -> None:
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_two_processes_give_the_single_process_result(tmp_path) -> None:
    script = tmp_path / "relevant_pass.py"
    script.write_text(SCRIPT)
    run([str(script), str(tmp_path / "one")])
    run([*TORCHRUN, str(script), str(tmp_path / "two")])
    one, two = RelevantFeatures.load(tmp_path / "one"), RelevantFeatures.load(tmp_path / "two")
    assert one.complete and two.complete and one.responses.images == 37
    assert not list((tmp_path / "two").glob("rank-*"))  # shard checkpoints deleted
    indices, responses, labels = one.responses.table()
    assert torch.equal(indices, torch.arange(37))
    assert torch.equal(two.responses.table()[0], indices)
    assert torch.equal(two.responses.table()[2], labels)
    assert torch.allclose(two.responses.table()[1], responses, rtol=1e-6, atol=0)
    assert torch.allclose(two.weights, one.weights, rtol=1e-6, atol=1e-9)
    for label in (0, 1):
        assert [(f.layer, f.channel) for f in one.relevant(label)] == [
            (f.layer, f.channel) for f in two.relevant(label)
        ]
