"""The user's model is never changed, not even for a moment, and other threads never notice a
method running: flags, parameters, buffers and hooks stay as they are during a call; tracing
patches nothing another thread can see; the user's own hooks and parametrizations take part
in every answer (the fast path steps aside for them); caches do not grow with a changing
model; gradient methods work inside ``torch.inference_mode()``."""

from __future__ import annotations

import threading

import pytest
import torch
import torchvision
from support import TinyCNN, TinyResidual, hook_count, seeded
from torch import nn
from torch.nn.utils import parametrizations, prune

import cnnvis_widget as cv
from cnnvis_widget import layout
from cnnvis_widget.fx_trace import ThreadSafeTracer
from cnnvis_widget.methods import fast_model as fast_model_module
from cnnvis_widget.methods.fast_model import fast_model
from cnnvis_widget.model_view import eval_view, user_hooks
from cnnvis_widget.synthesis.network import SynthesisNet

PIXEL_METHODS = ["saliency", "integrated_gradients", "smoothgrad", "occlusion"]
SMALL = {"occlusion": {"window": 8, "stride": 4}, "smoothgrad": {"n_samples": 4}}
"""Settings for 16 x 16 inputs."""


def _state(model: nn.Module) -> dict[str, object]:
    """Everything a call must leave as it is: flags, requires_grad, .grad, tensor values and
    identities, hooks, attributes."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [p.grad for p in model.parameters()],
        "tensors": {k: (id(v), v.clone()) for k, v in model.state_dict(keep_vars=True).items()},
        "hooks": hook_count(model),
        "attributes": [sorted(vars(m)) for m in model.modules()],
    }


def _assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grad"] == before["grad"]
    assert after["hooks"] == before["hooks"]
    assert after["attributes"] == before["attributes"]
    b_tensors, a_tensors = before["tensors"], after["tensors"]
    assert isinstance(b_tensors, dict) and isinstance(a_tensors, dict)
    assert a_tensors.keys() == b_tensors.keys()
    for key, (ident, value) in b_tensors.items():
        assert a_tensors[key][0] == ident, key
        assert torch.equal(a_tensors[key][1], value), key


# --------------------------------------------------------------------------- the view


def test_view_has_the_same_names_and_function_and_changes_nothing(residual, tiny_input) -> None:
    residual.train()
    before = _state(residual)
    view = eval_view(residual)
    assert [n for n, _ in view.named_modules()] == [n for n, _ in residual.named_modules()]
    assert not any(m.training for m in view.modules())
    assert not any(p.requires_grad for p in view.parameters())
    view.relu.register_forward_hook(lambda *_: None)
    view.eval().train()  # flags of the view only
    view.eval()
    with torch.no_grad():
        got = view(tiny_input)
    _assert_same_state(before, _state(residual))
    residual.eval()
    with torch.no_grad():
        assert torch.equal(got, residual(tiny_input))
    # The view shares storage: an in-place change of the model is seen by an existing view.
    with torch.no_grad():
        residual.fc.bias.add_(1.0)
        assert torch.allclose(view(tiny_input), residual(tiny_input))


@pytest.mark.parametrize(
    "method", ["saliency", "gradcam", "smoothgrad", "occlusion", "guided_backprop", "scorecam"]
)
def test_nothing_changes_while_a_method_runs(residual, tiny_input, method) -> None:
    """Checked from inside the call (``on_step`` runs mid-computation) and after it, on a
    model left in train mode with gradients and a hook of the user's."""
    residual.train()
    residual.fc.weight.grad = torch.ones_like(residual.fc.weight)
    residual.conv1.register_forward_hook(lambda *_: None)
    before = _state(residual)
    seen: list[int] = []

    def during(_partial: torch.Tensor, _done: float) -> None:
        _assert_same_state(before, _state(residual))
        seen.append(1)

    cv.attribute(residual, tiny_input, method, target=1, on_step=during, **SMALL.get(method, {}))
    _assert_same_state(before, _state(residual))
    if method in ("smoothgrad", "occlusion", "scorecam"):
        assert seen, "on_step was never called: the check inside the call did not run"


def test_another_thread_never_sees_the_model_in_eval_mode() -> None:
    """A widget job computes in the background while the user's cell trains: the user's
    thread must see their flags throughout, their own train()/eval() must stick, and batch
    norm statistics change only through the user's own passes."""
    torch.manual_seed(0)
    model = TinyResidual().train()
    x = torch.randn(2, 3, 16, 16)
    stats = [b.clone() for b in model.buffers()]
    done = threading.Event()
    errors: list[BaseException] = []

    def background() -> None:
        try:
            for _ in range(15):
                cv.attribute(model, x, "smoothgrad", target=0, n_samples=4)
                cv.attribute(model, x, "gradcam", target=0, layer="conv2")
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            done.set()

    worker = threading.Thread(target=background)
    worker.start()
    observed_eval = 0
    flips = 0
    while not done.is_set():
        observed_eval += sum(not m.training for m in model.modules())
        model.eval()  # the user switches modes meanwhile
        model.train()
        flips += 1
    worker.join()
    assert not errors, errors
    assert flips > 10
    assert observed_eval == 0
    assert all(m.training for m in model.modules())
    for stat, now in zip(stats, model.buffers(), strict=True):
        assert torch.equal(stat, now), "a method's forward pass updated batch-norm statistics"


# --------------------------------------------------------------------------- tracing


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_tracing_does_not_break_forward_passes_in_other_threads() -> None:
    """CNN Fixations traces with torch.fx, which patches nn.Module.__call__ process-wide while
    it traces; plain forwards of an unrelated model in another thread must not notice."""
    traced, other = _resnet18(), seeded(TinyCNN(), dtype=torch.float32)
    x, y = torch.randn(1, 3, 64, 64), torch.randn(2, 3, 16, 16)
    done = threading.Event()

    def fixations() -> None:
        try:
            for _ in range(4):
                cv.attribute(traced, x, "cnn_fixations", target=0)
        finally:
            done.set()

    with torch.no_grad():
        expected = other(y)
    worker = threading.Thread(target=fixations)
    worker.start()
    calls, failures = 0, []
    with torch.no_grad():
        while not done.is_set():
            try:
                assert torch.equal(other(y), expected)
            except Exception as error:
                failures.append(repr(error))
            calls += 1
    worker.join()
    assert calls > 20
    assert failures == []


def test_overlapping_traces_leave_nn_module_as_it_was() -> None:
    call, getattr_ = nn.Module.__call__, nn.Module.__getattr__
    x = torch.randn(1, 3, 48, 48)
    errors: list[BaseException] = []

    def fixations() -> None:
        try:
            model = _resnet18()
            for _ in range(3):
                cv.attribute(model, x, "cnn_fixations", target=0)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=fixations) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert nn.Module.__call__ is call
    assert nn.Module.__getattr__ is getattr_


class WithConstant(nn.Module):
    """Creates a tensor in forward: torch.fx stores it on the traced root as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
        return self.fc(torch.relu(self.conv(x) * scale).mean((2, 3)))


def test_tracing_adds_nothing_to_the_user_model() -> None:
    torch.manual_seed(0)
    model = WithConstant().eval()
    x = torch.rand(1, 3, 12, 12)
    before = _state(model)
    fixations = cv.attribute(model, x, "cnn_fixations")
    cv.attribute(model, x, "saliency")  # the fast path traces a copy
    assert fixations.abs().sum() > 0
    _assert_same_state(before, _state(model))
    assert not any(name.startswith("_tensor_constant") for name in vars(model))


def test_the_thread_check_is_what_protects_other_threads(monkeypatch) -> None:
    """Without the tracer's thread check (fx's plain behaviour), the same race fails: this is
    what the two tests above guard against."""
    monkeypatch.setattr(ThreadSafeTracer, "_other_thread", lambda self: False)
    with pytest.raises(AssertionError):
        test_tracing_does_not_break_forward_passes_in_other_threads()


# --------------------------------------------------------------------------- user hooks


def _zero_output(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(output)


@pytest.mark.parametrize("method", PIXEL_METHODS)
def test_a_users_forward_hook_takes_part_on_the_fast_path(residual, tiny_input, method) -> None:
    residual.conv2.register_forward_hook(_zero_output)
    assert user_hooks(residual) == ["conv2"]
    params = SMALL.get(method, {})
    fast = cv.attribute(residual, tiny_input, method, target=2, fast=True, **params)
    exact = cv.attribute(residual, tiny_input, method, target=2, fast=False, **params)
    # conv2's output is zeroed, so the logits do not depend on the input: zero evidence.
    assert torch.equal(fast, exact)
    assert fast.abs().max() == 0


@pytest.mark.parametrize("method", PIXEL_METHODS)
def test_pruning_and_weight_norm_take_part_on_the_fast_path(method) -> None:
    model = seeded(TinyResidual(), dtype=torch.float32)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 16, 16)
    params = SMALL.get(method, {})
    plain = cv.attribute(model, x, method, target=1, fast=True, **params)
    prune.l1_unstructured(model.conv1, "weight", amount=0.6)
    parametrizations.weight_norm(model.block_conv)
    with torch.no_grad():  # the weight-norm magnitudes change the function visibly
        model.block_conv.parametrizations.weight.original0.mul_(2.0)
    assert set(user_hooks(model)) >= {"conv1", "block_conv"}
    fast = cv.attribute(model, x, method, target=1, fast=True, **params)
    exact = cv.attribute(model, x, method, target=1, fast=False, **params)
    torch.testing.assert_close(fast, exact)
    assert not torch.allclose(fast, plain, atol=1e-4)  # the pruned model is another function


def test_synthesis_and_scores_honour_user_hooks(residual) -> None:
    residual.conv2.register_forward_hook(_zero_output)
    assert SynthesisNet.of(residual).fold is False
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    maps = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    scores = cv.deletion_insertion(residual, x, maps, target=0, steps=4)
    # With conv2 zeroed every image gets the same prediction: flat curves.
    assert torch.allclose(
        scores.deletion_curve, scores.deletion_curve[:, :1].expand_as(scores.deletion_curve)
    )


def test_global_module_hooks_turn_the_fast_path_off(tiny, tiny_input) -> None:
    from torch.nn.modules.module import register_module_forward_hook

    handle = register_module_forward_hook(
        lambda m, i, o: torch.zeros_like(o) if isinstance(m, nn.Linear) else None
    )
    try:
        assert "<global>" in user_hooks(tiny)
        fast = cv.attribute(tiny, tiny_input, "saliency", fast=True)
        assert fast.abs().max() == 0
    finally:
        handle.remove()
    assert user_hooks(tiny) == []


# --------------------------------------------------------------------------- caches


def test_a_model_trained_between_calls_keeps_one_stand_in() -> None:
    """Fine-tuning with explanations in the loop: the stand-in follows the weights (its folded
    batch norms included), is not rebuilt, and nothing accumulates per call."""
    model = seeded(TinyResidual(), dtype=torch.float32).train()
    torch.manual_seed(0)
    x, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stand_ins, choices = set(), []
    for _ in range(6):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()  # in place: weights and batch-norm statistics change
        fast = cv.attribute(model, x, "saliency", target=0, fast=True)
        exact = cv.attribute(model, x, "saliency", target=0, fast=False)
        torch.testing.assert_close(fast, exact, rtol=1e-4, atol=1e-5)
        cv.attribute(model, x, "occlusion", target=0, window=8, stride=8)
        stand_ins.add(id(fast_model(model)))
        choices.append(len(layout._CHOICES))
    assert len(stand_ins) == 1
    assert choices[-1] == choices[1], "a measured choice was added per call"
    assert sum(1 for key in fast_model_module._CACHE if key is model) == 1


def test_a_replaced_parameter_replaces_the_stand_in(tiny, tiny_input) -> None:
    first = fast_model(tiny, tiny_input[:1])
    tiny.fc.weight = nn.Parameter(torch.randn_like(tiny.fc.weight))
    second = fast_model(tiny, tiny_input[:1])
    assert second is not first
    assert fast_model_module._CACHE[tiny] is second
    fast = cv.attribute(tiny, tiny_input, "saliency", fast=True)
    torch.testing.assert_close(fast, cv.attribute(tiny, tiny_input, "saliency", fast=False))


def test_layout_choices_are_bounded() -> None:
    for i in range(layout.KEPT_CHOICES + 10):
        layout.fastest(("bound-test", i), {"a": lambda: None}, torch.device("cpu"))
    assert len(layout._CHOICES) <= layout.KEPT_CHOICES


# --------------------------------------------------------------------------- inference mode


@pytest.mark.parametrize("method", ["saliency", "gradcam", "integrated_gradients", "cnn_fixations"])
def test_methods_run_inside_inference_mode(tiny, tiny_input, method) -> None:
    expected = cv.attribute(tiny, tiny_input, method, target=3)
    with torch.inference_mode():
        inside = cv.attribute(tiny, tiny_input, method, target=3)
        made_inside = tiny_input.clone()
    assert torch.equal(inside, expected)
    assert torch.equal(cv.attribute(tiny, made_inside, method, target=3), expected)


def test_synthesis_runs_inside_inference_mode(tiny) -> None:
    model = tiny.float()
    with torch.inference_mode():
        result = cv.visualize_feature(
            model, "conv2", unit=1, steps=3, size=16, mean=(0.5,) * 3, std=(0.5,) * 3
        )
        x = torch.rand(1, 3, 16, 16)
        dream = cv.deep_dream(model, x, "conv2", steps=2, octaves=1)
    assert torch.isfinite(result.images).all()
    assert torch.isfinite(dream.images).all()


def test_weights_changed_during_a_call_get_a_clear_error(residual, tiny_input) -> None:
    """An optimizer step in another thread while a method backpropagates through the shared
    weights: simulated deterministically by a hook of the user's that changes an earlier
    layer's weight in place after that layer ran."""

    def step(_module: nn.Module, _inputs: object, _output: object) -> None:
        with torch.no_grad():
            residual.conv2.weight.add_(0.01)

    residual.fc.register_forward_hook(step)
    with pytest.raises(RuntimeError, match=r"changed in place.*copy\.deepcopy\(model\)"):
        cv.attribute(residual, tiny_input, "saliency", target=0)


def test_a_wrong_input_size_names_the_size_the_model_runs_at() -> None:
    lenet = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 10),
    ).eval()
    wrong = torch.rand(1, 1, 32, 32)
    for call in (
        lambda: cv.attribute(lenet, wrong, "saliency"),
        lambda: cv.attribute(lenet, wrong, "cnn_fixations"),
        lambda: cv.layers(lenet, wrong),
    ):
        with pytest.raises(ValueError, match=r"failed on 32x32 input.*runs on 28x28 inputs only"):
            call()
    assert cv.attribute(lenet, torch.rand(1, 1, 28, 28), "saliency").shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match=r"mean/std give 3 channel.*takes 1"):
        cv.visualize_feature(lenet, "3", unit=0, steps=2, mean=(0.5,) * 3, std=(0.2,) * 3)
