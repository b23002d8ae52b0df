"""cv.DissectionResult.load: a finished dissection's folder reloads without the model and without
recomputing, equal to the computed result; a folder whose passes are incomplete is refused."""

from __future__ import annotations

import json

import pytest
import torch

import cnnvis_widget as cv
from tests.support_concepts import TinyConcepts, tiny_cnn
from tests.test_dissection import LAYERS, Q, preprocess


@pytest.fixture(scope="module")
def data() -> TinyConcepts:
    return TinyConcepts(24)


def run(data: TinyConcepts, out, **kwargs) -> cv.DissectionResult:
    return cv.dissect(tiny_cnn(), data, LAYERS, q=Q, batch_size=4, top_k=3, progress=False,
                      preprocess=preprocess(), out=out, union="annotated", **kwargs)  # fmt: skip


def test_a_finished_dissection_reloads_equal_without_the_model(data, tmp_path) -> None:
    computed = run(data, tmp_path)
    manifest = json.loads((tmp_path / "dissection.json").read_text())
    assert manifest["layers"] == LAYERS and manifest["provenance"]["union"] == "annotated"
    loaded = cv.DissectionResult.load(tmp_path)
    assert loaded.complete and (loaded.images, loaded.total) == (24, 24)
    assert (loaded.q, loaded.iou_threshold, loaded.table) == (Q, 0.04, data.concepts)
    assert loaded.data is None and loaded.atlas is not None
    for layer in LAYERS:
        assert torch.equal(loaded.layers[layer].thresholds, computed.layers[layer].thresholds)
        assert torch.equal(loaded.iou(layer), computed.iou(layer))
        assert loaded.units(layer) == computed.units(layer)
        assert all(
            loaded.atlas.top(layer, u) == computed.atlas.top(layer, u)  # type: ignore[union-attr]
            for u in range(len(loaded.layers[layer].thresholds))
        )
    assert loaded.summary() == computed.summary()
    with_data = cv.DissectionResult.load(tmp_path, concepts=data)
    assert with_data.data is data
    with pytest.raises(ValueError, match="24"):
        cv.DissectionResult.load(tmp_path, concepts=TinyConcepts(10))


def test_a_folder_with_incomplete_passes_is_refused(data, tmp_path) -> None:
    calls: list[int] = []
    stopped = run(data, tmp_path / "tally", checkpoint_every=1,
                  should_stop=lambda done, total: calls.append(done) or len(calls) == 8)  # fmt: skip
    assert not stopped.complete  # 6 batches of the atlas, 2 of the tally
    assert not (tmp_path / "tally" / "dissection.json").exists()
    with pytest.raises(ValueError, match=r"second pass \(IoU tally\) has seen 8 of 24"):
        cv.DissectionResult.load(tmp_path / "tally")
    (tmp_path / "tally" / "tally" / "tally.json").unlink()  # as a torchrun pass stopped
    with pytest.raises(FileNotFoundError, match=r"no saved IoU tally.*resumes"):
        cv.DissectionResult.load(tmp_path / "tally")
    run(data, tmp_path / "atlas", checkpoint_every=1, should_stop=lambda done, total: done >= 8)
    with pytest.raises(ValueError, match=r"first pass \(atlas\) has seen 8 of 24"):
        cv.DissectionResult.load(tmp_path / "atlas")
    with pytest.raises(FileNotFoundError, match="no saved first pass"):
        cv.DissectionResult.load(tmp_path)
    # finished in place, it loads
    finished = run(data, tmp_path / "tally")
    assert torch.equal(cv.DissectionResult.load(tmp_path / "tally").iou("3"), finished.iou("3"))
