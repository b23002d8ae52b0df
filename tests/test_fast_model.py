"""The fast stand-in used for whole-network passes: same function, original untouched, cache
follows weight changes."""

from __future__ import annotations

import torch
from support import hook_count, resnet18_with_batch_norm_statistics
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.methods.fast_model import fast_model


def _resnet() -> nn.Module:
    return resnet18_with_batch_norm_statistics()


def test_stand_in_folds_batch_norm_and_computes_the_same_function() -> None:
    model = _resnet()
    stand_in = fast_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in stand_in.modules())
    assert all(not p.requires_grad for p in stand_in.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), stand_in(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_original_model_is_untouched_and_unfolded_weights_are_shared() -> None:
    model = _resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_required = [p.requires_grad for p in model.parameters()]
    stand_in = fast_model(model)
    cv.attribute(model, torch.randn(1, 3, 64, 64), "smoothgrad", target=1, n_samples=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == grads_required
    assert all(p.grad is None for p in model.parameters())
    assert hook_count(model) == 0 and hook_count(stand_in) == 0
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fc = dict(stand_in.named_modules())["inner.fc"]
    assert fc.weight.data_ptr() == model.fc.weight.data_ptr()  # not folded: shared, not copied


def test_cache_follows_in_place_changes_and_is_replaced_after_a_new_module() -> None:
    model = _resnet()
    x = torch.randn(1, 3, 64, 64)
    first = fast_model(model)
    assert fast_model(model) is first
    with torch.no_grad():
        model.conv1.weight.mul_(-1.0)  # in place: same tensor, new version
        model.bn1.running_var.mul_(2.0)  # a folded batch norm's statistics
    second = fast_model(model)
    assert second is first  # refreshed in place, not rebuilt
    with torch.no_grad():
        assert torch.allclose(second(x), model(x), rtol=1e-4, atol=1e-4)
    model.fc = nn.Linear(512, 10)  # replaced module
    third = fast_model(model)
    assert third is not second
    with torch.no_grad():
        assert torch.allclose(third(x), model(x), rtol=1e-4, atol=1e-4)
    assert cv.attribute(model, x, "saliency", target=9).shape == x.shape


def test_untraceable_model_falls_back_to_the_unfolded_copy() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.head = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.bn(self.conv(x))
            if h.mean() > 0:  # data-dependent control flow: torch.fx cannot trace this
                h = h * 2
            return self.head(h.mean((2, 3)))

    torch.manual_seed(0)
    model = Branchy().eval()
    x = torch.randn(2, 3, 8, 8)
    fast = cv.attribute(model, x, "gradient_x_input", target=[0, 2])
    exact = cv.attribute(model, x, "gradient_x_input", target=[0, 2], fast=False)
    assert torch.allclose(fast, exact, rtol=1e-5, atol=1e-7)
    assert any(isinstance(m, nn.BatchNorm2d) for m in fast_model(model).modules())


def test_lite0_fast_path_matches_the_exact_one(lite0) -> None:
    x = lite0.preprocess(cv.sample_image("cat"))
    for method in ["saliency", "guided_backprop"]:
        exact = cv.attribute(lite0.module, x, method, target=281, fast=False)
        fast = cv.attribute(lite0.module, x, method, target=281)
        scale = float(exact.abs().max())
        assert float((fast - exact).abs().mean()) <= 1e-4 * scale, method
        assert torch.corrcoef(torch.stack([fast.flatten(), exact.flatten()]))[0, 1] > 0.999


def test_folding_is_checked_and_undone_when_a_conv_transforms_its_weight() -> None:
    class StandardizedConv(nn.Conv2d):
        """Weight standardization: folding a batch norm into ``weight`` would be undone."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.weight
            w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
            return self._conv_forward(x, w, self.bias)

    torch.manual_seed(0)
    model = nn.Sequential(
        StandardizedConv(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3)
    )
    model(torch.randn(1, 3, 8, 8))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 3)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    assert any(isinstance(m, nn.BatchNorm2d) for m in fast_model(model, x).modules())
    fast = cv.attribute(model, x, "saliency", target=1)
    assert torch.allclose(fast, cv.attribute(model, x, "saliency", target=1, fast=False), atol=1e-6)


def test_lite0_batch_norms_are_folded(lite0) -> None:
    stand_in = fast_model(lite0.module, lite0.preprocess(cv.sample_image("cat")))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in stand_in.modules())


class _ValueBranch(nn.Module):
    """Data-dependent control flow: a trace would keep only one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3))
        return y if bool(y.sum() > 0) else -y


def test_frozen_inference_gives_the_models_logits_with_either_choice(monkeypatch) -> None:
    import cnnvis_widget.methods.frozen_inference as frozen

    model = _resnet()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    for forced in (True, False):
        monkeypatch.setattr(frozen.FrozenInference, "_faster", staticmethod(lambda b, f=forced: f))
        runner = frozen.FrozenInference(fast_model(model, x[:1]))
        with torch.no_grad():
            outputs = [runner(x), runner(x), runner(x[:1]), runner(x[:1])]
        # Decided per shape (batch size included), once.
        assert runner._use_graph == {tuple(x.shape): forced, (1, *x.shape[1:]): forced}
        # The graph's prepacked weights are kept only while some shape uses them.
        assert (tuple(x.shape[1:]) in runner._graphs) is forced
        # The model's logits, and identical from call to call (the first call, which checks
        # and times, returns the chosen candidate's output too).
        for got in outputs:
            torch.testing.assert_close(got, expected[: len(got)], rtol=1e-4, atol=1e-3)
        assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[2], outputs[3])
    # Gradients always go through the eager stand-in.
    assert runner(x.requires_grad_(True)).requires_grad


def test_a_last_partial_batch_is_padded_to_a_decided_one(monkeypatch) -> None:
    import cnnvis_widget.methods.frozen_inference as frozen

    monkeypatch.setattr(frozen.FrozenInference, "_faster", staticmethod(lambda best: True))
    model = _resnet()
    x = torch.randn(4, 3, 64, 64)
    runner = frozen.FrozenInference(fast_model(model, x[:1]))
    with torch.no_grad():
        expected = model(x)
        runner(x)  # decides batch 4
        got = runner(x[:3])  # padded to 4: no new checks or timings
        assert runner._use_graph == {tuple(x.shape): True}
        torch.testing.assert_close(got, expected[:3], rtol=1e-4, atol=1e-3)
        assert torch.equal(got, runner(x[:3]))
        runner(x[:1])  # less than half: a shape of its own
    assert (1, *x.shape[1:]) in runner._use_graph
    # Where the full batch chose eager, a smaller one runs eager unpadded.
    monkeypatch.setattr(frozen.FrozenInference, "_faster", staticmethod(lambda best: False))
    runner = frozen.FrozenInference(fast_model(model, x[:1]))
    with torch.no_grad():
        runner(x)
        torch.testing.assert_close(runner(x[:3]), expected[:3], rtol=1e-4, atol=1e-3)
    assert runner._use_graph == {tuple(x.shape): False}


def test_frozen_inference_refuses_value_dependent_branches(monkeypatch) -> None:
    import cnnvis_widget.methods.frozen_inference as frozen

    monkeypatch.setattr(frozen.FrozenInference, "_faster", staticmethod(lambda best: True))
    torch.manual_seed(0)
    model = _ValueBranch().eval()
    runner = frozen.FrozenInference(fast_model(model))
    with torch.no_grad():
        for sign in (1.0, -1.0, 1.0):
            x = sign * torch.randn(2, 3, 8, 8)
            torch.testing.assert_close(runner(x), model(x))
    assert runner._graphs == {} and not any(runner._use_graph.values())


def test_masked_and_occluded_passes_match_the_exact_model(monkeypatch) -> None:
    """Score-CAM and occlusion run their many forward passes through the frozen graph (forced
    here, whatever the timing says); the maps equal those of the model itself (fast=False)."""
    import cnnvis_widget.methods.frozen_inference as frozen

    used: list[bool] = []
    monkeypatch.setattr(
        frozen.FrozenInference, "_faster", staticmethod(lambda best: used.append(True) or True)
    )
    model = _resnet()
    x = torch.randn(2, 3, 64, 64)
    for method, options in (
        ("scorecam", {"layer": "layer3"}),
        ("occlusion", {"window": 16, "stride": 16}),
    ):
        fast = cv.attribute(model, x, method, target=[1, 2], **options)
        exact = cv.attribute(model, x, method, target=[1, 2], fast=False, **options)
        torch.testing.assert_close(fast, exact, rtol=1e-3, atol=1e-4 * float(exact.abs().max()))
    assert used  # the graph was checked and chosen for at least one shape


class _DictOutput(nn.Module):
    """A model returning a Hugging Face-style output (a dict with ``.logits``)."""

    class Output(dict):
        @property
        def logits(self) -> torch.Tensor:
            return self["logits"]

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> dict:
        return self.Output(logits=self.fc(self.conv(x).mean(dim=(2, 3))))


def test_models_with_dict_outputs_run_eager() -> None:
    torch.manual_seed(0)
    model = _DictOutput().eval()
    x = torch.randn(2, 3, 16, 16)
    fast = cv.attribute(model, x, "occlusion", target=1, window=8, stride=8)
    exact = cv.attribute(model, x, "occlusion", target=1, window=8, stride=8, fast=False)
    torch.testing.assert_close(fast, exact)


def test_a_bfloat16_call_first_does_not_leave_the_stand_in_unfolded() -> None:
    model = _resnet()
    x = torch.randn(2, 3, 32, 32)
    cv.attribute(model, x, "smoothgrad", target=1, n_samples=2, precision="bfloat16")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast_model(model).modules())
