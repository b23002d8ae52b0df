"""cv.dissect against a straightforward implementation (store every activation, NumPy quantile,
sums by definition); thresholds at the top q; stop and resume; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnnvis_widget as cv
from cnnvis_widget.atlas.fingerprint import model_fingerprint
from tests.support_concepts import MASK, TABLE, TinyConcepts, tiny_cnn
from tests.test_dissection_tally import straightforward_iou

LAYERS = ["1", "3"]  # ReLU outputs: 6 x 32 x 32 and 8 x 16 x 16
Q = 0.02  # many positions above it, and the quantile sketch still exact (rank_cap / q positions)


def preprocess() -> cv.Preprocess:
    return cv.Preprocess(
        input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize=32
    )


def straightforward(model, data, layer: str, q: float) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds (C,), IoU (C, L)) storing every activation of every image."""
    acts = torch.cat([
        cv.activations(model, preprocess()(data[i][0]), [layer])[layer] for i in range(len(data))
    ]).double()  # fmt: skip
    units = acts.shape[1]
    thresholds = np.quantile(acts.transpose(0, 1).reshape(units, -1).numpy(), 1 - q, axis=1)
    maps = F.interpolate(acts.float(), size=(MASK, MASK), mode="bilinear", align_corners=False)
    masks = (maps > torch.tensor(thresholds, dtype=torch.float32)[None, :, None, None]).numpy()
    iou = straightforward_iou(masks, [data[i][1] for i in range(len(data))], table=TABLE)
    return thresholds, iou


@pytest.fixture(scope="module")
def data():
    return TinyConcepts(24)


@pytest.mark.parametrize(("cache_mb", "tally_forwards"), [(1024, 0), (0, 5), (0.3, 5)])
def test_dissect_equals_the_straightforward_computation(data, cache_mb, tally_forwards):
    """The same numbers whether the tally reads the first pass's maps (they fit in cache_mb)
    or runs the model again (no cache; a cache that overflows halfway); 24 images in 5
    batches of 5."""
    model = tiny_cnn()
    before = model_fingerprint(model)
    forwards: list[int] = []
    hook = model[0].register_forward_hook(lambda *_: forwards.append(1))
    baseline = len(forwards)
    without_tally = cv.unit_atlas(model, data, LAYERS, 3, q=Q, batch_size=5, progress=False,
                                  preprocess=cv.preprocess.WholeImage(preprocess()))  # fmt: skip
    atlas_forwards = len(forwards) - baseline
    del without_tally
    start = len(forwards)
    result = cv.dissect(model, data, LAYERS, q=Q, batch_size=5, progress=False,
                        preprocess=preprocess(), top_k=3, cache_mb=cache_mb)  # fmt: skip
    hook.remove()
    assert len(forwards) - start == atlas_forwards + tally_forwards  # one probe
    assert model_fingerprint(model) == before and not model.training
    assert result.complete and result.images == 24
    for layer in LAYERS:
        thresholds, iou = straightforward(model, data, layer, Q)
        np.testing.assert_allclose(result.layers[layer].thresholds.numpy(), thresholds, rtol=1e-6)
        np.testing.assert_allclose(result.iou(layer).numpy(), iou, atol=1e-12)
        rows = result.units(layer)
        assert [row.label for row in rows] == iou.argmax(axis=1).tolist()
        assert all(row.detector == (row.iou > 0.04) for row in rows)
    summary = result.summary()
    assert set(summary) == set(LAYERS) and set(summary["1"]) == {"color", "object", "scene"}
    assert result.atlas is not None and len(result.atlas.top("3", 0)) == 3


def test_the_threshold_leaves_q_of_all_positions_above_it(data):
    model = tiny_cnn(1)
    result = cv.dissect(model, data, ["3"], q=0.005, progress=False, preprocess=preprocess())
    acts = torch.cat([
        cv.activations(model, preprocess()(data[i][0]), ["3"])["3"] for i in range(len(data))
    ])  # fmt: skip
    values = acts.transpose(0, 1).reshape(8, -1)
    above = (values > result.layers["3"].thresholds[:, None]).double().mean(dim=1)
    live = (values > 0).double().mean(dim=1) > 0.01  # units that are not nearly all zero
    assert live.sum() >= 4
    assert torch.all((above[live] - 0.005).abs() <= 0.001), above


def test_a_stopped_dissection_resumes_to_the_uninterrupted_result(data, tmp_path):
    model = tiny_cnn()
    whole = cv.dissect(
        model, data, LAYERS, q=Q, batch_size=4, progress=False, preprocess=preprocess()
    )
    calls = []

    def stop_in_the_tally(done, total):
        calls.append(done)
        return len(calls) == 9  # 6 batches of the first pass, then 3 of the tally

    stopped = cv.dissect(model, data, LAYERS, q=Q, batch_size=4, progress=False,
                         preprocess=preprocess(), out=tmp_path, checkpoint_every=1,
                         should_stop=stop_in_the_tally)  # fmt: skip
    assert not stopped.complete and stopped.images == 12
    resumed = cv.dissect(model, data, LAYERS, q=Q, batch_size=4, progress=False,
                         preprocess=preprocess(), out=tmp_path,
                         should_stop=lambda done, total: calls.append(-done) and False)  # fmt: skip
    assert resumed.complete and min(-c for c in calls[9:]) == 16  # went on from image 12
    for layer in LAYERS:
        assert torch.equal(resumed.iou(layer), whole.iou(layer))


def test_bad_input_is_refused_with_the_fix(data):
    model = tiny_cnn()
    with pytest.raises(TypeError, match="concept data set"):
        cv.dissect(model, [data[0][0]], ["1"], progress=False, preprocess=preprocess())
    with pytest.raises(ValueError, match="upsample"):
        cv.dissect(model, data, ["1"], upsample="cubic", progress=False, preprocess=preprocess())
    with pytest.raises(ValueError, match="no layer"):
        cv.dissect(model, data, ["1"], progress=False, preprocess=preprocess()).units("9")


def test_a_subset_of_a_concept_data_set_is_dissected(data):
    part = torch.utils.data.Subset(data, range(0, 24, 2))
    result = cv.dissect(tiny_cnn(), part, ["3"], q=Q, progress=False, preprocess=preprocess())
    assert result.complete and result.images == 12 and result.table is TABLE
