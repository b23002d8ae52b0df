"""The dataset pass (cv.unit_atlas): its statistics equal a brute-force computation that keeps
every activation; a pass killed halfway and started again ends with the uninterrupted result;
a finished pass is reloaded without a forward; stale results are refused; the model is left as
found."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from support import TinyResidual, forwards_of, hook_count, seeded
from torch import nn

import cnnvis_widget as cv

LAYERS = ["conv1", "relu@1", "conv2"]
PREPROCESS = cv.Preprocess(input_size=(16, 16), resize=16, mean=(0.5,) * 3, std=(0.25,) * 3)


class Images(torch.utils.data.Dataset):
    """``count`` seeded random images (3, 16, 16) in [0, 1] with labels 0..4; a few images
    repeated so that maxima tie across images (the lower index must win)."""

    def __init__(self, count: int = 45, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(count, 3, 16, 16, generator=generator)
        for copy, original in ((7, 3), (30, 12)):  # exact ties between images
            if copy < count:
                self.images[copy] = self.images[original]
        self.labels = torch.randint(0, 5, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


@pytest.fixture
def model() -> nn.Module:
    return seeded(TinyResidual(), dtype=torch.float32).eval()


def brute_force(model: nn.Module, data: Images, layer: str, k: int) -> dict[str, object]:
    """Every activation kept, then each statistic the plain way."""
    x = torch.cat([PREPROCESS(image) for image, _ in data])
    acts = cv.activations(model, x, [layer])[layer].double()  # (N, C, h, w)
    flat = acts.flatten(2)
    peak, where = flat.max(dim=2)
    top = []
    for unit in range(acts.shape[1]):
        order = sorted(range(len(data)), key=lambda i: (-peak[i, unit].item(), i))[:k]
        width = acts.shape[3]
        top.append([(i, peak[i, unit].item(), *divmod(int(where[i, unit]), width)) for i in order])
    labels = data.labels
    class_means = torch.stack([flat.mean(2)[labels == c].mean(0) for c in range(5)])
    values = acts.transpose(0, 1).flatten(1).numpy()
    return {
        "top": top,
        "mean": flat.mean(2).mean(0),
        "max": peak.max(0).values,
        "class_means": class_means,
        "quantile": torch.from_numpy(np.quantile(values, 1 - 0.005, axis=1)),
    }


def test_statistics_equal_a_brute_force_computation(model) -> None:
    data = Images()
    atlas = cv.unit_atlas(
        model, data, LAYERS, k=4, batch_size=8, progress=False, preprocess=PREPROCESS
    )
    assert atlas.complete and atlas.images == 45 and atlas.layers == LAYERS
    for layer in LAYERS:
        expected = brute_force(model, data, layer, k=4)
        summary = atlas.summary(layer)
        for unit, rows in enumerate(expected["top"]):
            got = [(e.index, e.value, e.y, e.x) for e in atlas.top(layer, unit)]
            assert [g[0] for g in got] == [r[0] for r in rows], (layer, unit)
            assert np.allclose([g[1] for g in got], [r[1] for r in rows], atol=1e-5)
            assert [g[2:] for g in got] == [r[2:] for r in rows]
        assert torch.allclose(summary["mean"], expected["mean"], atol=1e-6)
        assert torch.allclose(summary["max"], expected["max"], atol=1e-6)
        assert torch.allclose(summary["class_means"], expected["class_means"], atol=1e-6)
        assert torch.allclose(summary["quantile"], expected["quantile"], atol=1e-5)
    # Images 3 and 7 are equal: where both are among a unit's top, 3 (the lower index) first.
    tied = [
        [e.index for e in atlas.top(layer, unit) if e.index in (3, 7)]
        for layer in LAYERS
        for unit in range(atlas.stats[layer].units)
    ]
    assert [3, 7] in tied and [7, 3] not in tied


def saved_tensors(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / "atlas.pt", weights_only=True)


def test_a_pass_killed_halfway_resumes_to_the_uninterrupted_result(model, tmp_path) -> None:
    data = Images()
    whole = cv.unit_atlas(model, data, LAYERS, k=4, batch_size=4, progress=False,
                          preprocess=PREPROCESS, out=tmp_path / "whole")  # fmt: skip
    torch.save(model.state_dict(), tmp_path / "model.pt")
    # A separate process that dies (os._exit: no cleanup, no final save) after batch 5, with
    # checkpoints every 2 batches: 4 batches = 16 images survive.
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(tmp_path.parent)!r})
        sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
        import cnnvis_widget as cv
        from support import TinyResidual
        from test_atlas import LAYERS, PREPROCESS, Images
        model = TinyResidual().eval()
        model.load_state_dict(torch.load({str(tmp_path / "model.pt")!r}, weights_only=True))
        cv.unit_atlas(model, Images(), LAYERS, k=4, batch_size=4, progress=False,
                      preprocess=PREPROCESS, out={str(tmp_path / "resumed")!r},
                      checkpoint_every=2, should_stop=lambda done, total: done >= 20 and os._exit(3))
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == 3, killed.stderr
    checkpoint = cv.UnitAtlas.load(tmp_path / "resumed")
    assert checkpoint.images == 16 and not checkpoint.complete
    with forwards_of(model.conv1) as forwards:  # the pass stops after the deepest layer
        resumed = cv.unit_atlas(model, data, LAYERS, k=4, batch_size=4, progress=False,
                                preprocess=PREPROCESS, out=tmp_path / "resumed")  # fmt: skip
    assert len(forwards) == 8 + 1  # the 29 images left in batches of 4, and the layer probe
    assert resumed.complete and resumed.images == whole.images == 45
    a, b = saved_tensors(tmp_path / "whole"), saved_tensors(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            assert torch.allclose(a[key], b[key], rtol=1e-9, atol=1e-6, equal_nan=True), key
        else:
            assert torch.equal(a[key], b[key]), key


def test_a_finished_pass_is_reloaded_and_a_stale_one_refused(model, tmp_path) -> None:
    data = Images(20)
    args = {"k": 3, "batch_size": 8, "progress": False, "preprocess": PREPROCESS, "out": tmp_path}
    first = cv.unit_atlas(model, data, ["conv2"], **args)
    with forwards_of(model.conv1) as forwards:
        again = cv.unit_atlas(model, data, ["conv2"], **args)
    assert forwards == [] and again.top("conv2", 5) == first.top("conv2", 5)
    with pytest.raises(ValueError, match="holds an atlas of layers"):
        cv.unit_atlas(model, data, ["conv1"], **args)
    changed = seeded(TinyResidual(), seed=1, dtype=torch.float32).eval()
    with pytest.raises(ValueError, match="another model"):
        cv.unit_atlas(changed, data, ["conv2"], **args)
    with pytest.raises(ValueError, match="another data"):
        cv.unit_atlas(model, Images(20, seed=5), ["conv2"], **args)
    with pytest.raises(FileNotFoundError, match="no saved atlas"):
        cv.UnitAtlas.load(tmp_path / "nothing")


def test_the_model_is_left_as_found(model) -> None:
    model.train()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    hooks = hook_count(model)
    cv.unit_atlas(model, Images(12), ["conv1", "conv2"], k=2, batch_size=5, progress=False,
                  preprocess=PREPROCESS)  # fmt: skip
    assert model.training and hook_count(model) == hooks
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name  # batch-norm statistics included


def test_each_batch_is_freed_with_the_batch(model) -> None:
    """A batch's recorded activations are freed when the batch is done, not left to the cyclic
    garbage collector: that let peak memory grow with the data (+119 MB at 10,000 images)."""
    gc.collect()
    gc.disable()
    try:
        before = sum(isinstance(o, cv.capture.Capture) for o in gc.get_objects())
        cv.unit_atlas(model, Images(24), ["conv1", "conv2"], k=2, batch_size=4, progress=False,
                      preprocess=PREPROCESS)  # fmt: skip
        left = sum(isinstance(o, cv.capture.Capture) for o in gc.get_objects()) - before
    finally:
        gc.enable()
    assert left <= 1, left  # at most the layer probe's (cv.layers), never one per batch (6)


def test_bad_requests_are_refused_with_the_fix(model) -> None:
    data = Images(4)
    with pytest.raises(ValueError, match="conv9"):
        cv.unit_atlas(model, data, ["conv9"], preprocess=PREPROCESS, progress=False)
    with pytest.raises(ValueError, match="empty"):
        cv.unit_atlas(model, Images(0), ["conv1"], preprocess=PREPROCESS, progress=False)
    with pytest.raises(ValueError, match="q"):
        cv.unit_atlas(model, data, ["conv1"], q=0, preprocess=PREPROCESS, progress=False)
    with pytest.raises(ValueError, match="k"):
        cv.unit_atlas(model, data, ["conv1"], k=0, preprocess=PREPROCESS, progress=False)


def test_weights_changed_during_the_pass_are_refused():
    bundle = cv.load_model("fashion_cnn")
    data = torch.utils.data.Subset(cv.datasets.fashion_mnist(split="test"), range(64))

    def edit_weights(done, total):
        if done == 32:
            with torch.no_grad():
                bundle.module.fc.bias += 1.0  # as a training step in another thread would
        return False

    with pytest.raises(ValueError, match="changed during the pass"):
        cv.unit_atlas(bundle, data, ["features.relu3"], batch_size=32, progress=False,
                      should_stop=edit_weights)  # fmt: skip
