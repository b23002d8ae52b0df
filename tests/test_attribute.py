"""Grad-CAM and saliency: equal to Captum and closed forms, and the model is left as found."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision.models as tvm
from captum.attr import LayerGradCam, Saliency
from support import BackwardSpy, hook_count, reused_relu_layers
from torch import nn

import cnnvis_widget as cv

ARCH_LAYERS = {
    "resnet18": ["layer4", "layer3.1.relu", "layer2.0.conv1"],
    "vgg11": ["features.18", "features.19", "features.10"],
    "alexnet": ["features.10", "features.11"],
    "mobilenet_v2": ["features.18", "features.10.conv.1"],
    "efficientnet_b0": ["features.8", "features.5.0.block.1"],
    "densenet121": ["features.denseblock4", "features.norm5"],
    "googlenet": ["inception5b", "inception4c.branch2"],
}


def modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


@pytest.mark.parametrize("arch", list(ARCH_LAYERS))
def test_gradcam_equals_captum_per_sample(arch: str) -> None:
    torch.manual_seed(0)
    model = tvm.get_model(arch, weights=None).eval()
    x = torch.randn(3, 3, 96, 96)
    targets = [3, 500, 999]
    for layer in ARCH_LAYERS[arch]:
        ours = cv.attribute(model, x, "gradcam", target=targets, layer=layer)
        ref = (
            LayerGradCam(model, modules(model)[layer])
            .attribute(x, target=targets, relu_attributions=True)
            .detach()
        )
        assert ours.shape == ref.shape and ours.shape[1] == 1
        scale = ref.abs().max().clamp_min(1e-12)
        assert torch.allclose(ours, ref, atol=1e-5 * float(scale), rtol=1e-4), (arch, layer)
        assert hook_count(model) == 0


def test_gradcam_equals_captum_on_lite0(lite0) -> None:
    x = torch.cat([lite0.preprocess(cv.sample_image(n)) for n in ["cat", "coffee"]])
    targets = [281, 967]
    for layer in ["_swish", "_blocks.10", "_blocks.3._bn2"]:
        ours = cv.attribute(lite0.module, x, "gradcam", target=targets, layer=layer)
        ref = (
            LayerGradCam(lite0.module, modules(lite0.module)[layer.split("@")[0]])
            .attribute(x, target=targets, relu_attributions=True)
            .detach()
        )
        assert torch.allclose(ours, ref, atol=1e-5 * float(ref.abs().max()), rtol=1e-4), layer


def test_gradcam_closed_form_on_gap_head(tiny, tiny_input) -> None:
    # With conv -> ReLU -> GAP -> linear, alpha_k = w_ck / Z, so Grad-CAM = ReLU(CAM) / Z.
    targets = torch.tensor([0, 4, 9])
    ours = cv.attribute(tiny, tiny_input, "gradcam", target=targets, layer="relu2")
    with torch.no_grad():
        a = tiny.relu2(tiny.conv2(tiny.pool(tiny.relu1(tiny.conv1(tiny_input)))))
        cam = torch.einsum("nk,nkhw->nhw", tiny.fc.weight[targets], a)[:, None]
    z = a.shape[2] * a.shape[3]
    assert torch.allclose(ours, torch.relu(cam) / z, rtol=1e-10, atol=1e-12)


def test_gradcam_default_target_and_layer(tiny, tiny_input) -> None:
    with torch.no_grad():
        predicted = tiny(tiny_input).argmax(1)
    default = cv.attribute(tiny, tiny_input, "gradcam")
    explicit = cv.attribute(tiny, tiny_input, "gradcam", target=predicted, layer="relu2")
    assert torch.equal(default, explicit)


def test_gradcam_backpropagates_only_to_the_layer(tiny, tiny_input) -> None:
    spy = BackwardSpy()
    model = nn.Sequential(spy, tiny).eval()
    cv.attribute(model, tiny_input, "gradcam", layer="1.relu2")
    assert spy.backward_calls == 0
    cv.attribute(model, tiny_input, "saliency", fast=False)  # a pixel method does reach the input
    assert spy.backward_calls == 1


def test_inplace_and_reused_relu_give_the_same_cam(residual, tiny_input) -> None:
    # Reference: the same network with fresh non-in-place ReLUs, computed by hand.
    targets = [1, 2, 3]
    ours = cv.attribute(residual, tiny_input, "gradcam", target=targets, layer="block_conv")
    x = tiny_input
    r = residual
    h = torch.relu(r.bn1(r.conv1(x)))
    a = r.block_conv(h).detach().requires_grad_(True)
    logits = r.fc(r.gap(torch.relu(r.conv2(torch.relu(a + h)))).flatten(1))
    score = logits.gather(1, torch.tensor(targets).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, a)
    expected = torch.relu((grad.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_saliency_equals_autograd_and_captum(tiny, tiny_input) -> None:
    targets = [0, 5, 7]
    ours = cv.attribute(tiny, tiny_input, "saliency", target=targets)
    x = tiny_input.clone().requires_grad_(True)
    score = tiny(x).gather(1, torch.tensor(targets).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    assert torch.allclose(ours, grad, rtol=1e-12)
    ref = Saliency(tiny).attribute(tiny_input, target=targets, abs=False)
    assert torch.allclose(ours, ref, rtol=1e-12)


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_model_is_left_exactly_as_found(residual, tiny_input, method: str) -> None:
    model = residual
    model.train()
    model.fc.eval()  # a mixed mode must come back as it was
    model.conv1.weight.requires_grad_(False)
    model.conv2.weight.grad = torch.full_like(model.conv2.weight, 7.0)
    before = copy.deepcopy(model.state_dict())
    modes = {name: m.training for name, m in model.named_modules()}
    result = cv.attribute(model, tiny_input, method, target=1)
    # Eval mode was used: dropout and batch statistics would make two runs differ.
    assert torch.equal(result, cv.attribute(model, tiny_input, method, target=1))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad
    assert torch.equal(model.conv2.weight.grad, torch.full_like(model.conv2.weight, 7.0))
    assert model.fc.weight.grad is None
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert hook_count(model) == 0
    assert not tiny_input.requires_grad and tiny_input.grad is None


def test_hooks_removed_and_mode_restored_after_an_error(residual, tiny_input) -> None:
    residual.train()
    with pytest.raises(ValueError, match="out of range"):
        cv.attribute(residual, tiny_input, "gradcam", target=10, layer="conv2")
    assert hook_count(residual) == 0
    assert all(m.training for m in residual.modules())
    assert torch.is_grad_enabled()


def test_bad_arguments_name_the_fix(tiny, tiny_input) -> None:
    with pytest.raises(ValueError, match="gradcam"):
        cv.attribute(tiny, tiny_input, "gradcm")
    with pytest.raises(ValueError, match="Valid layer names"):
        cv.attribute(tiny, tiny_input, "gradcam", layer="conv9")
    with pytest.raises(ValueError, match="one per sample"):
        cv.attribute(tiny, tiny_input, "gradcam", target=[1, 2])
    with pytest.raises(ValueError, match="unsqueeze"):
        cv.attribute(tiny, tiny_input[0], "saliency")
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        cv.attribute(tiny, tiny_input, "gradcam", layer="fc")
    with pytest.raises(TypeError, match="takes no layer"):
        cv.attribute(tiny, tiny_input, "saliency", layer="conv1")
    with pytest.raises(TypeError, match="does not take"):
        cv.attribute(tiny, tiny_input, "gradcam", steps=3)


def test_registry_describes_methods() -> None:
    assert {"gradcam", "saliency"} <= set(cv.METHODS)
    gradcam = cv.METHODS["gradcam"]
    assert gradcam.output == "layer" and gradcam.uses_layer and not gradcam.signed
    assert cv.METHODS["saliency"].output == "pixel" and cv.METHODS["saliency"].signed
    assert "Selvaraju" in gradcam.summary


def test_upsample_to_image_size(tiny, tiny_input) -> None:
    cam = cv.attribute(tiny, tiny_input, "gradcam")
    up = cv.upsample(cam, tiny_input.shape[-2:])
    assert up.shape == (3, 1, 16, 16)
    expected = torch.nn.functional.interpolate(
        cam, size=(16, 16), mode="bilinear", align_corners=False
    )
    assert torch.equal(up, expected)


def test_gradcam_on_each_call_of_a_reused_inplace_relu(residual, tiny_input) -> None:
    # relu@1 is the block output relu(block_conv(h) + h); relu (= relu@2) follows conv2.
    targets = [4, 0, 9]
    for name, (a, g) in reused_relu_layers(residual, tiny_input, targets).items():
        expected = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
        ours = cv.attribute(residual, tiny_input, "gradcam", target=targets, layer=name)
        assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12), name


def test_float32_input_to_a_float64_model(tiny, tiny_input) -> None:
    ours = cv.attribute(tiny, tiny_input.float(), "gradcam", target=1)
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, cv.attribute(tiny, tiny_input, "gradcam", target=1), atol=1e-6)


def test_grad_mode_is_restored_under_no_grad(tiny, tiny_input) -> None:
    with torch.no_grad():
        cv.attribute(tiny, tiny_input, "gradcam")
        cv.attribute(tiny, tiny_input, "saliency")
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


class Exploding(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_hooks_removed_when_the_forward_raises(tiny, tiny_input) -> None:
    model = nn.Sequential(tiny.conv1, Exploding()).train()
    for method in ["gradcam", "saliency"]:
        with pytest.raises(RuntimeError, match="boom"):
            cv.attribute(model, tiny_input, method, layer="0" if method == "gradcam" else None)
        assert hook_count(model) == 0 and all(m.training for m in model.modules())
        assert torch.is_grad_enabled()


class SideBranch(nn.Module):
    """A layer that runs but does not feed the logits."""

    def __init__(self, tiny: nn.Module) -> None:
        super().__init__()
        self.tiny = tiny
        self.side = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        return self.tiny(x)


def test_layer_off_the_path_to_the_logits(tiny, tiny_input) -> None:
    model = SideBranch(tiny).double()
    with pytest.raises(ValueError, match="does not feed"):
        cv.attribute(model, tiny_input, "gradcam", layer="side")


def test_non_integer_targets_are_rejected(tiny, tiny_input) -> None:
    with pytest.raises(ValueError, match="class indices"):
        cv.attribute(tiny, tiny_input, "gradcam", target=2.7)  # type: ignore[arg-type]
    assert (
        cv.attribute(tiny, tiny_input, "gradcam", target=torch.tensor([1.0, 2.0, 3.0])).shape[0]
        == 3
    )
