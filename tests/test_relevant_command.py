"""``python -m cnnvis_widget relevant``: the command line fits the relevant filters, prints each
class's, and saves a result that cv.RelevantFeatures.load reads back equal."""

from __future__ import annotations

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
