"""``python -m cnnvis_widget relevant``: the command line fits the relevant filters, prints each
class's, and saves a result that cv.RelevantFeatures.load reads back equal."""

from __future__ import annotations

import pytest
import torch

import cnnvis_widget as cv
from cnnvis_widget.__main__ import main


def test_the_relevant_command_saves_what_it_prints(tmp_path, capsys) -> None:
    out = tmp_path / "relevant"
    code = main([
        "relevant", "--model", "fashion_cnn", "--data", "fashion_mnist:test", "--limit", "200",
        "--layers", "features.conv4", "features.conv5", "--mu", "3", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    loaded = cv.RelevantFeatures.load(out)
    assert loaded.responses.images == 200 and loaded.mu == 3
    assert loaded.responses.layers == ["features.conv4", "features.conv5"]
    names = cv.datasets.fashion_mnist("test").classes
    for label in loaded.classes:
        found = loaded.relevant(label)
        assert found and all(f.weight > 0 for f in found)
        assert sum(f.weight for f in found) <= 3 + 1e-6
        strongest = found[0]
        line = next(x for x in printed.splitlines() if x.startswith(f"{names[label]}: "))
        assert line.startswith(f"{names[label]}: {len(found)} | ")
        assert f"{strongest.layer}:{strongest.channel} ({strongest.weight:.2f})" in line
    assert torch.isfinite(loaded.weights).all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--mu", "-1"], "mu must be"),
        (["--layers", "nope"], "unknown layer 'nope'"),
        (["--per-class", "50"], "pass per_class <= "),
        (["--data", "/nonexistent/folder"], "nonexistent"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(tmp_path, capsys, arguments, message):
    base = {"--model": "fashion_cnn", "--data": "fashion_mnist:test", "--limit": "40",
            "--out": str(tmp_path / "r")}  # fmt: skip
    for flag, value in zip(arguments[::2], arguments[1::2], strict=True):
        base[flag] = value
    code = main(["relevant", *[part for pair in base.items() for part in pair]])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error
    last = error.strip().splitlines()[-1]  # after the progress bar, if the pass ran
    assert last.startswith("python -m cnnvis_widget relevant: error: ") and message in last


@pytest.mark.parametrize("value", ["-5", "0", "x"])
def test_limit_and_batch_size_must_be_positive(capsys, value) -> None:
    for flag in ("--limit", "--batch-size"):
        with pytest.raises(SystemExit) as stop:
            main(["relevant", "--model", "fashion_cnn", "--data", "fashion_mnist:test",
                  "--out", "x", flag, value])  # fmt: skip
        assert stop.value.code == 2 and flag in capsys.readouterr().err
