"""On a GPU, when there is one: every method runs on the model's device, returns its map
there, agrees with the CPU result and leaves the model as found. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from support import hook_count

import cnnvis_widget as cv

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

QUICK = {
    "smoothgrad": {"n_samples": 4},
    "integrated_gradients": {"steps": 8},
    "occlusion": {"window": 32, "stride": 32},
    "scorecam": {"batch_size": 64},
}


@pytest.mark.parametrize("method", [m for m in cv.METHODS if m != "cam"])
def test_method_runs_on_the_gpu_and_matches_the_cpu(method: str) -> None:
    torch.manual_seed(0)
    cpu_model = tvm.resnet18().eval()
    x = torch.randn(2, 3, 96, 96)
    expected = cv.attribute(
        cpu_model, x, method, target=[3, 901], fast=False, **QUICK.get(method, {})
    )
    gpu_model = tvm.resnet18().eval().cuda()
    gpu_model.load_state_dict(cpu_model.state_dict())
    state = {k: v.clone() for k, v in gpu_model.state_dict().items()}
    for fast in (False, True):
        got = cv.attribute(
            gpu_model, x, method, target=[3, 901], fast=fast, **QUICK.get(method, {})
        )
        assert got.device.type == "cuda"
        # TF32 convolutions on the GPU round at about 1e-3; the maps must still agree closely.
        flat_got, flat_expected = got.float().cpu().flatten(), expected.flatten()
        correlation = torch.corrcoef(torch.stack([flat_got, flat_expected]))[0, 1]
        assert correlation > 0.99, (method, fast, float(correlation))
    assert hook_count(gpu_model) == 0
    assert all(torch.equal(state[k], v) for k, v in gpu_model.state_dict().items())
    assert all(p.grad is None for p in gpu_model.parameters())


def test_lite0_on_the_gpu_predicts_as_on_the_cpu(lite0) -> None:
    x = lite0.preprocess(cv.sample_image("coffee"))
    module = lite0.module.cuda()
    try:
        with torch.no_grad():
            probabilities = module(x.cuda()).softmax(1)
        assert int(probabilities.argmax()) == 967  # espresso
        gradcam = cv.attribute(module, x, "gradcam", target=967)
        assert gradcam.device.type == "cuda" and float(gradcam.max()) > 0
    finally:
        lite0.module.cpu()


SYNTHESIS = {
    "visualize_feature": lambda m, x: cv.visualize_feature(m, "layer2", [0, 1, 2], steps=3),
    "visualize_class": lambda m, x: cv.visualize_class(m, 3, steps=3, size=64),
    "invert": lambda m, x: cv.invert(m, x, "layer1", steps=(3, 1)),
    "caricature": lambda m, x: cv.caricature(m, x, "layer2", steps=3),
    "deep_dream": lambda m, x: cv.deep_dream(m, x, "layer2", octaves=2, steps=2),
    "fooling_image": lambda m, x: cv.fooling_image(m, 3, steps=3, size=64),
    "adversarial": lambda m, x: cv.adversarial(m, x, method="pgd", steps=3),
    "style_transfer": lambda m, x: cv.style_transfer(m, x[:1], x[1:], steps=3),
}


@pytest.mark.parametrize("name", list(SYNTHESIS))
def test_synthesis_runs_on_the_gpu_and_leaves_the_model_as_found(name: str) -> None:
    torch.manual_seed(0)
    model = tvm.resnet18().eval().cuda()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64, device="cuda")
    result = SYNTHESIS[name](model, x)
    assert result.images.device.type == "cuda"
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    assert hook_count(model) == 0 and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
