"""CAM, Grad-CAM++, Layer-CAM and Score-CAM: equal to pytorch-grad-cam, closed forms on tiny
models, batch = per-sample, and the model is left as found.

Comparisons with pytorch-grad-cam are made twice: at the layer's resolution on the raw map
(their ``get_cam_image`` on the activations and gradients their own hooks recorded, then their
ReLU), and on their public output at image size (their ``scale_cam_image``: min-max, then
``cv2.resize`` bilinear, which equals our ``cv.upsample`` to float32 rounding, then min-max
again; the min-max removes any positive per-sample scale, so we apply the same to
``cv.upsample(ours)``). Their hooks keep the layer output without copying, so an in-place op
after the layer would corrupt their copy: the layers chosen here are not modified in place and
run once per forward.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from support import BackwardSpy, TinyCNN, hook_count, reused_relu_layers, seeded
from torch import nn

import cnnvis_widget as cv

CAM_METHODS = ["cam", "gradcam", "gradcam_plus_plus", "layercam", "scorecam"]
REFERENCE = {"gradcam_plus_plus": GradCAMPlusPlus, "layercam": LayerCAM}
# Layers that run once and are not modified in place afterwards (see the module docstring).
ARCH_LAYERS = {"resnet18": ["layer4", "layer2.0.conv1"], "vgg11": ["features.19", "features.10"]}
# Score-CAM costs one forward per channel and sample: layers with few channels or a small model.
SCORECAM_LAYERS = {"resnet18": ["layer4"], "vgg11": ["features.4"]}
TARGETS = [3, 500, 999]


def torchvision_model(arch: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return tvm.get_model(arch, weights=None).to(dtype).eval()


def image_batch(size: int = 64, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, size, size, dtype=dtype)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ``scale_cam_image`` normalization, per map."""
    maps = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return maps / (1e-7 + maps.amax(dim=(-2, -1), keepdim=True))


def close(ours: torch.Tensor, ref: torch.Tensor, rtol: float, atol_of_max: float) -> bool:
    """allclose with the absolute tolerance relative to the reference's largest value."""
    atol = atol_of_max * float(ref.abs().max().clamp_min(1e-30))
    return torch.allclose(ours, ref.to(ours.dtype), rtol=rtol, atol=atol)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def with_rescaled_layer(model: nn.Module, layer: str, factor: float) -> tuple[nn.Module, str]:
    """A copy of ``model`` where ``layer`` is followed by x * factor then x / factor: the same
    function (factor is a power of two, so bit for bit), whose new layer ``layer.1`` has
    activations A * factor and gradients g / factor."""
    model = copy.deepcopy(model)
    parent, _, child = layer.rpartition(".")
    owner = model.get_submodule(parent)
    setattr(owner, child, nn.Sequential(getattr(owner, child), Scale(factor), Scale(1 / factor)))
    return model, f"{layer}.1"


def reference_maps(
    cam_class: type, model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch-grad-cam's (raw ReLU'd map at the layer's resolution, public output)."""
    wanted = [ClassifierOutputTarget(t) for t in targets]
    with cam_class(model, [model.get_submodule(layer)]) as method:
        method.batch_size = 64  # Score-CAM's masked images per pass (speed only)
        output = method(x, targets=wanted)
        recorded = method.activations_and_grads
        activation = recorded.activations[0].numpy()
        gradient = recorded.gradients[0].numpy() if recorded.gradients else None
        raw = method.get_cam_image(x, None, wanted, activation, gradient, False)
    return torch.from_numpy(np.maximum(raw, 0)), torch.from_numpy(output)


def check_against_reference(
    ours: torch.Tensor, raw: torch.Tensor, output: torch.Tensor, per_sample_scale: bool = False
) -> None:
    assert ours.shape == (raw.shape[0], 1, *raw.shape[1:])
    mine = ours[:, 0]
    if per_sample_scale:
        assert bool((mine.amax(dim=(1, 2)) > 0).all()) and bool((raw.amax(dim=(1, 2)) > 0).all())
        mine = mine / mine.amax(dim=(1, 2), keepdim=True)
        raw = raw / raw.amax(dim=(1, 2), keepdim=True)
    # float32 models, different summation orders: about 1e-6 of the largest value measured.
    assert close(mine, raw, rtol=1e-4, atol_of_max=1e-5)
    upsampled = minmax(cv.upsample(ours, output.shape[-2:]))[:, 0]
    # [0, 1] maps; measured differences are below 1e-5 (float32 cv2.resize vs torch).
    assert torch.allclose(upsampled, output, atol=1e-4, rtol=0)


# pytorch-grad-cam adds eps = 1e-6 to the Grad-CAM++ denominator 2 g^2 + (sum A) g^3; with
# gradients around 1e-2 (random weights) that changes alpha by several percent, so the raw
# formulas differ. Ours has no eps, which makes it invariant to rescaling the layer
# (A -> A * s, g -> g / s leaves alpha and the map unchanged; tested below). Comparing on the
# rescaled model with s = 2^-16 makes their eps negligible (g^2 grows by 2^32) without
# changing the function: an exact comparison of the formulas rather than a loose tolerance.
GRADCAM_PP_FACTOR = 2.0**-16


def reference_for(method: str, model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]):
    if method == "gradcam_plus_plus":
        model, layer = with_rescaled_layer(model, layer, GRADCAM_PP_FACTOR)
    return reference_maps(REFERENCE[method], model, layer, x, targets)


@pytest.mark.parametrize("method", ["gradcam_plus_plus", "layercam"])
@pytest.mark.parametrize("arch", list(ARCH_LAYERS))
def test_gradient_cams_equal_pytorch_grad_cam(arch: str, method: str) -> None:
    model = torchvision_model(arch)
    x = image_batch()
    for layer in ARCH_LAYERS[arch]:
        ours = cv.attribute(model, x, method, target=TARGETS, layer=layer)
        raw, output = reference_for(method, model, layer, x, TARGETS)
        check_against_reference(ours, raw, output)
        assert hook_count(model) == 0


@pytest.mark.parametrize("method", ["gradcam_plus_plus", "layercam"])
def test_gradient_cams_equal_pytorch_grad_cam_on_lite0(lite0, method: str) -> None:
    x = torch.cat([lite0.preprocess(cv.sample_image(n)) for n in ["cat", "coffee"]])
    targets = [281, 967]
    ours = cv.attribute(lite0.module, x, method, target=targets, layer="_bn1")
    raw, output = reference_for(method, lite0.module, "_bn1", x, targets)
    check_against_reference(ours, raw, output)


def test_gradcam_plus_plus_has_no_eps_scale_dependence(tiny, tiny_input) -> None:
    # The rescaled model computes the same function; the eps-free formula gives the same map.
    targets = [0, 4, 9]
    ours = cv.attribute(tiny, tiny_input, "gradcam_plus_plus", target=targets, layer="relu2")
    for factor in [2.0**-20, 2.0**20]:
        model, layer = with_rescaled_layer(tiny, "relu2", factor)
        again = cv.attribute(model, tiny_input, "gradcam_plus_plus", target=targets, layer=layer)
        assert torch.allclose(again, ours, rtol=1e-12, atol=0)


class AlignCornersFalse(nn.Module):
    """Stand-in for ``nn.UpsamplingBilinear2d`` (which is align_corners=True)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def scorecam_reference(model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]):
    """pytorch-grad-cam's ScoreCAM, with its mask upsampling switched to align_corners=False.

    It upsamples the masks with nn.UpsamplingBilinear2d (align_corners=True); we upsample
    with (bilinear, align_corners=False, as the Score-CAM authors' code does), and the
    masks, hence the scores, differ by up to ~10% of the map. With the same upsampling the
    rest of its algorithm is ``channel_softmax``, except that a constant channel becomes an
    all-zero mask whose score enters its channel softmax, where we skip it. For layers whose
    constant channels are all zero (checked) that only rescales each sample's map.
    """
    activation = cv.activations(model, x, [layer])[layer].flatten(2)
    constant = activation.amax(dim=2) == activation.amin(dim=2)
    assert bool((activation[..., 0][constant] == 0).all()), "a constant channel is not zero"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn, "UpsamplingBilinear2d", AlignCornersFalse)
        return reference_maps(ScoreCAM, model, layer, x, targets)


@pytest.mark.parametrize("arch", list(SCORECAM_LAYERS))
def test_scorecam_channel_softmax_equals_pytorch_grad_cam(arch: str) -> None:
    model = torchvision_model(arch)
    x = image_batch()
    for layer in SCORECAM_LAYERS[arch]:
        ours = cv.attribute(
            model, x, "scorecam", target=TARGETS, layer=layer, weights="channel_softmax"
        )
        raw, output = scorecam_reference(model, layer, x, TARGETS)
        check_against_reference(ours, raw, output, per_sample_scale=True)
        assert hook_count(model) == 0


def test_scorecam_channel_softmax_equals_pytorch_grad_cam_on_lite0(lite0) -> None:
    x = torch.cat([lite0.preprocess(cv.sample_image(n)) for n in ["cat", "coffee"]])
    targets = [281, 967]
    layer = "_blocks.3._bn2"  # 40 channels: 80 masked forwards at 224 px
    ours = cv.attribute(
        lite0.module, x, "scorecam", target=targets, layer=layer, weights="channel_softmax"
    )
    raw, output = scorecam_reference(lite0.module, layer, x, targets)
    check_against_reference(ours, raw, output, per_sample_scale=True)


# --- CAM ---------------------------------------------------------------------------------


def tiny_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.relu2(model.conv2(model.pool(model.relu1(model.conv1(x)))))


def test_cam_closed_form_and_gradcam_identity_on_tiny(tiny, tiny_input) -> None:
    targets = torch.tensor([0, 4, 9])
    ours = cv.attribute(tiny, tiny_input, "cam", target=targets, layer="relu2")
    a = tiny_features(tiny, tiny_input)
    expected = torch.relu(torch.einsum("nk,nkhw->nhw", tiny.fc.weight[targets], a))[:, None]
    assert torch.allclose(ours, expected.detach(), rtol=1e-12, atol=0)
    # Grad-CAM on a GAP + linear head: alpha_k = w_ck / (h w), so Grad-CAM = ReLU(CAM) / (h w).
    grad = cv.attribute(tiny, tiny_input, "gradcam", target=targets, layer="relu2")
    z = a.shape[2] * a.shape[3]
    assert torch.allclose(grad, ours / z, rtol=1e-10, atol=1e-14 * float(ours.max()))


@pytest.mark.parametrize("arch,layer", [("resnet18", "layer4"), ("mobilenet_v2", "features.18")])
def test_cam_equals_gradcam_times_area_on_torchvision(arch: str, layer: str) -> None:
    # float64 so the identity is checked to 1e-10, not to float32 rounding.
    model = torchvision_model(arch, torch.float64)
    x = image_batch(96, torch.float64)
    ours = cv.attribute(model, x, "cam", target=TARGETS, layer=layer)
    grad = cv.attribute(model, x, "gradcam", target=TARGETS, layer=layer)
    z = ours.shape[2] * ours.shape[3]
    assert float(ours.max()) > 0
    assert torch.allclose(grad, ours / z, rtol=1e-10, atol=1e-12 * float(ours.max()) / z)
    assert hook_count(model) == 0


def test_cam_equals_gradcam_times_area_on_lite0(lite0) -> None:
    model = copy.deepcopy(lite0.module).double()
    x = torch.cat([lite0.preprocess(cv.sample_image(n)) for n in ["cat", "coffee"]]).double()
    ours = cv.attribute(model, x, "cam", target=[281, 967], layer="_swish")
    grad = cv.attribute(model, x, "gradcam", target=[281, 967], layer="_swish")
    z = ours.shape[2] * ours.shape[3]
    assert ours.shape == (2, 1, 7, 7) and float(ours.max()) > 0
    assert torch.allclose(grad, ours / z, rtol=1e-10, atol=1e-12 * float(ours.max()) / z)
    # The real float32 bundle as shipped: the default layer is the same "_swish" (last call).
    default = cv.attribute(lite0.module, x.float(), "cam", target=[281, 967])
    assert close(default, ours.float(), rtol=1e-4, atol_of_max=1e-5)


def test_cam_rejects_vgg_with_a_clear_message() -> None:
    model = torchvision_model("vgg11")
    x = image_batch()
    for layer in ["features.20", None]:  # None: the default layer (avgpool)
        with pytest.raises(ValueError, match="use gradcam for this model/layer") as error:
            cv.attribute(model, x, "cam", layer=layer)
        assert "classifier.6" in str(error.value)
        assert hook_count(model) == 0


class HiddenLayerHead(nn.Module):
    """T1 features -> GAP -> linear(16->16) -> ReLU -> linear(16->10): shapes fit, CAM does not."""

    def __init__(self, tiny: nn.Module) -> None:
        super().__init__()
        self.tiny = tiny
        self.hidden = nn.Linear(16, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tiny.relu2(self.tiny.conv2(self.tiny.pool(self.tiny.relu1(self.tiny.conv1(x)))))
        return self.out(torch.relu(self.hidden(a.mean(dim=(2, 3)))))


class MaxPoolHead(TinyCNN):
    """T1 with global max pooling instead of average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.gap = nn.AdaptiveMaxPool2d(1)


@pytest.mark.parametrize("head", ["hidden_linear", "max_pool"])
def test_cam_checks_the_head_numerically(tiny, tiny_input, head: str) -> None:
    # Shapes fit in both (16 channels, last linear takes 16), only the values tell.
    if head == "hidden_linear":
        model, layer, last = seeded(HiddenLayerHead(tiny)), "tiny.relu2", "out"
    else:
        model, layer, last = seeded(MaxPoolHead()), "relu2", "fc"
    with pytest.raises(ValueError, match="use gradcam for this model/layer") as error:
        cv.attribute(model, tiny_input, "cam", layer=layer)
    assert f"not {last}(global average of '{layer}')" in str(error.value)
    assert hook_count(model) == 0


# --- closed forms on the GAP head of T1 --------------------------------------------------


def test_layercam_equals_gradcam_when_class_weights_are_non_negative(tiny, tiny_input) -> None:
    # On conv -> ReLU -> GAP -> linear, dy_c/dA^k_ij = w_ck / Z everywhere (Z = h w), so
    # Layer-CAM = ReLU(sum_k ReLU(w_ck) A^k) / Z and Grad-CAM = ReLU(sum_k w_ck A^k) / Z: equal
    # (scale 1, not Z) when every w_ck >= 0, and the first formula holds for any weights.
    targets = torch.tensor([0, 4, 9])
    a = tiny_features(tiny, tiny_input)
    z = a.shape[2] * a.shape[3]
    layer = cv.attribute(tiny, tiny_input, "layercam", target=targets, layer="relu2")
    expected = torch.einsum("nk,nkhw->nhw", torch.relu(tiny.fc.weight[targets]), a)[:, None] / z
    assert torch.allclose(layer, torch.relu(expected).detach(), rtol=1e-10, atol=0)
    grad = cv.attribute(tiny, tiny_input, "gradcam", target=targets, layer="relu2")
    assert not torch.allclose(layer, grad)  # mixed-sign weights: they differ
    with torch.no_grad():
        tiny.fc.weight.abs_()
    layer = cv.attribute(tiny, tiny_input, "layercam", target=targets, layer="relu2")
    grad = cv.attribute(tiny, tiny_input, "gradcam", target=targets, layer="relu2")
    assert float(grad.max()) > 0
    assert torch.allclose(layer, grad, rtol=1e-10, atol=1e-14 * float(grad.max()))


def test_gradcam_plus_plus_closed_form_on_gap_head(tiny, tiny_input) -> None:
    # g = w_ck / Z everywhere and sum_ab A^k_ab = Z mean(A^k), so alpha_k = 1 / (2 + w_ck
    # mean(A^k)) and the channel weight is sum_ij ReLU(g) alpha = ReLU(w_ck) / (2 + w_ck mean(A^k)).
    targets = torch.tensor([1, 5, 8])
    a = tiny_features(tiny, tiny_input)
    w = tiny.fc.weight[targets].detach()
    weights = torch.relu(w) / (2 + w * a.mean(dim=(2, 3)))
    expected = torch.relu(torch.einsum("nk,nkhw->nhw", weights, a))[:, None]
    ours = cv.attribute(tiny, tiny_input, "gradcam_plus_plus", target=targets, layer="relu2")
    assert float(ours.max()) > 0
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-14 * float(expected.max()))


class OneChannel(nn.Module):
    """conv(3->4) -> ReLU -> GAP -> linear(4->5), where the logits read channel 0 only and
    channels 1-3 of the conv are constant (zero kernels; biases 0, 0.5, -0.3)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)
        with torch.no_grad():
            self.conv.weight[1:] = 0
            self.conv.bias[1:] = torch.tensor([0.0, 0.5, -0.3])
            self.fc.weight[:, 1:] = 0
        self.double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_scorecam_on_a_one_channel_logit_is_proportional_to_that_channel(tiny_input) -> None:
    # Constant channels are skipped (weight 0): otherwise the 0.5 channel would add a constant.
    model = OneChannel()
    targets = torch.tensor([0, 2, 4])
    with torch.no_grad():
        a0 = model.conv(tiny_input)[:, :1]
        up = F.interpolate(a0, size=(16, 16), mode="bilinear", align_corners=False)
        low, high = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
        masked = model(tiny_input * (up - low) / (high - low))
        s = masked.softmax(dim=1).gather(1, targets.view(-1, 1)).view(-1, 1, 1, 1)
    ours = cv.attribute(model, tiny_input, "scorecam", target=targets, layer="conv")
    assert torch.allclose(ours, s * torch.relu(a0), rtol=1e-12, atol=0)
    # channel_softmax: a softmax over the one non-constant channel gives it weight 1.
    ours = cv.attribute(
        model, tiny_input, "scorecam", target=targets, layer="conv", weights="channel_softmax"
    )
    assert torch.allclose(ours, torch.relu(a0), rtol=1e-12, atol=0)
    # All channels constant (zero image): an all-zero map, no NaN.
    for weights in ["class_softmax", "channel_softmax"]:
        zero = torch.zeros_like(tiny_input)
        ours = cv.attribute(model, zero, "scorecam", target=targets, layer="conv", weights=weights)
        assert torch.equal(ours, torch.zeros(3, 1, 16, 16, dtype=torch.float64))


def scorecam_by_hand(
    model: nn.Module, x: torch.Tensor, a: torch.Tensor, targets: list[int], weights: str
) -> torch.Tensor:
    """The authors' loop (one sample, one channel at a time); ``a`` is the layer output."""
    maps = []
    for n, target in enumerate(targets):
        scores, kept = [], []
        for k in range(a.shape[1]):
            up = F.interpolate(a[n : n + 1, k : k + 1], size=x.shape[-2:], mode="bilinear")
            if up.max() == up.min():
                continue
            logits = model(x[n : n + 1] * (up - up.min()) / (up.max() - up.min()))[0]
            scores.append(
                logits.softmax(0)[target] if weights == "class_softmax" else logits[target]
            )
            kept.append(k)
        s = torch.stack(scores)
        if weights == "channel_softmax":
            s = s.softmax(0)
        maps.append(torch.relu(torch.einsum("k,khw->hw", s, a[n, kept])))
    return torch.stack(maps)[:, None]


@pytest.mark.parametrize("weights", ["class_softmax", "channel_softmax"])
def test_scorecam_equals_the_per_channel_loop(tiny, tiny_input, weights: str) -> None:
    targets = [2, 7, 7]
    a = tiny_features(tiny, tiny_input)
    with torch.no_grad():
        expected = scorecam_by_hand(tiny, tiny_input, a, targets, weights)
    for batch_size in [1, 5, 1024]:
        ours = cv.attribute(
            tiny,
            tiny_input,
            "scorecam",
            target=targets,
            layer="relu2",
            weights=weights,
            batch_size=batch_size,
        )
        assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-14 * float(expected.max()))


class Recorder(nn.Module):
    """Records the batch size and grad mode of every forward of the wrapped model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.inner(x)


def test_scorecam_batches_are_bounded_and_gradient_free(tiny, tiny_input) -> None:
    model = Recorder(tiny)
    # fast=False: the masked passes must reach this Recorder, not the cached stand-in.
    cv.attribute(model, tiny_input, "scorecam", layer="inner.relu2", batch_size=7, fast=False)
    first, *masked = model.calls
    assert first == (3, False)
    assert all(size <= 7 and not grad for size, grad in masked)
    channels = tiny_features(tiny, tiny_input).flatten(2)
    valid = int((channels.amax(2) > channels.amin(2)).sum())
    assert sum(size for size, _ in masked) == valid  # one masked image per non-constant channel


def test_scorecam_arguments_are_checked(tiny, tiny_input) -> None:
    with pytest.raises(ValueError, match=r"class_softmax.*channel_softmax"):
        cv.attribute(tiny, tiny_input, "scorecam", weights="softmax")
    with pytest.raises(ValueError, match="batch_size"):
        cv.attribute(tiny, tiny_input, "scorecam", batch_size=-1)
    assert cv.METHODS["scorecam"].defaults() == {"batch_size": 0, "weights": "class_softmax"}


# --- rules every method obeys ------------------------------------------------------------


@pytest.mark.parametrize("method", CAM_METHODS)
def test_batch_equals_each_sample_alone(residual, tiny_input, method: str) -> None:
    residual.train()  # eval mode must be used: dropout and batch statistics would break this
    targets = [4, 0, 9]
    # "relu" (its last call) feeds GAP -> dropout -> fc, so CAM applies too.
    batch = cv.attribute(residual, tiny_input, method, target=targets, layer="relu")
    assert batch.shape == (3, 1, 16, 16) and bool((batch >= 0).all()) and float(batch.max()) > 0
    for n, target in enumerate(targets):
        alone = cv.attribute(residual, tiny_input[n : n + 1], method, target=target, layer="relu")
        assert torch.allclose(batch[n : n + 1], alone, rtol=1e-10, atol=1e-14), (method, n)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_model_is_left_exactly_as_found(residual, tiny_input, method: str) -> None:
    model = residual
    model.train()
    model.fc.eval()
    model.conv1.weight.requires_grad_(False)
    model.conv2.weight.grad = torch.full_like(model.conv2.weight, 7.0)
    before = copy.deepcopy(model.state_dict())
    modes = {name: m.training for name, m in model.named_modules()}
    result = cv.attribute(model, tiny_input, method, target=1, layer="relu")
    assert torch.equal(result, cv.attribute(model, tiny_input, method, target=1, layer="relu"))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad
    assert torch.equal(model.conv2.weight.grad, torch.full_like(model.conv2.weight, 7.0))
    assert model.fc.weight.grad is None and model.block_conv.weight.grad is None
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert hook_count(model) == 0
    assert not tiny_input.requires_grad and tiny_input.grad is None
    # ... also when the method raises.
    with pytest.raises(ValueError):
        cv.attribute(model, tiny_input, method, target=10, layer="relu")
    with pytest.raises(ValueError):
        cv.attribute(model, tiny_input, method, target=1, layer="fc")
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert hook_count(model) == 0 and torch.is_grad_enabled()


@pytest.mark.parametrize("method", CAM_METHODS)
def test_no_backward_below_the_layer(tiny, tiny_input, method: str) -> None:
    spy = BackwardSpy()
    model = nn.Sequential(spy, tiny).eval()
    with torch.no_grad():
        cv.attribute(model, tiny_input, method, layer="1.relu2")
        assert not torch.is_grad_enabled()  # the caller's grad mode is given back
    assert spy.backward_calls == 0


def test_each_call_of_a_reused_inplace_relu(residual, tiny_input) -> None:
    targets = [4, 0, 9]
    r, x = residual, tiny_input
    for name, (a, g) in reused_relu_layers(r, x, targets).items():
        layer = cv.attribute(r, x, "layercam", target=targets, layer=name)
        expected = torch.relu((torch.relu(g) * a).sum(1, keepdim=True))
        assert torch.allclose(layer, expected, rtol=1e-10, atol=1e-14), name
        g2, g3 = g**2, g**3
        alpha = g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g3)
        alpha = torch.where(g != 0, alpha, 0)
        weights = (torch.relu(g) * alpha).sum((2, 3), keepdim=True)
        expected = torch.relu((weights * a).sum(1, keepdim=True))
        plus = cv.attribute(r, x, "gradcam_plus_plus", target=targets, layer=name)
        assert torch.allclose(plus, expected, rtol=1e-10, atol=1e-14), name
        with torch.no_grad():
            expected = scorecam_by_hand(r, x, a, targets, "class_softmax")
        score = cv.attribute(r, x, "scorecam", target=targets, layer=name)
        assert torch.allclose(score, expected, rtol=1e-10, atol=1e-14), name
    # CAM: the last call feeds GAP -> fc; the block output (8 channels) does not.
    a, _ = reused_relu_layers(r, x, targets)["relu"]
    expected = torch.relu(torch.einsum("nk,nkhw->nhw", r.fc.weight[targets], a))[:, None]
    assert torch.allclose(cv.attribute(r, x, "cam", target=targets, layer="relu@2"), expected)
    with pytest.raises(ValueError, match="takes 16 features but layer 'relu@1' has 8 channels"):
        cv.attribute(r, x, "cam", target=targets, layer="relu@1")


def test_registry_describes_the_cam_family() -> None:
    authors = {
        "cam": "Zhou",
        "gradcam": "Selvaraju",
        "gradcam_plus_plus": "Chattopadhay",
        "layercam": "Jiang",
        "scorecam": "Wang",
    }
    for name, author in authors.items():
        method = cv.METHODS[name]
        assert method.family == "cam" and method.output == "layer" and method.uses_layer
        assert not method.signed and author in method.summary and method.cost
    assert "class_softmax" in cv.METHODS["scorecam"].summary


@pytest.mark.parametrize("method", CAM_METHODS)
def test_non_spatial_layer_names_the_fix(tiny, tiny_input, method: str) -> None:
    with pytest.raises(ValueError, match=r"needs a layer with \(N, C, h, w\) output; 'fc'"):
        cv.attribute(tiny, tiny_input, method, layer="fc")
    assert hook_count(tiny) == 0


@pytest.mark.parametrize("arch,layer", [("resnet18", "layer4"), ("vgg11", "features.19")])
def test_guided_gradcam_equals_captum(arch: str, layer: str) -> None:
    from captum.attr import GuidedGradCam

    torch.manual_seed(0)
    model = tvm.get_model(arch, weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    targets = [5, 700]
    ours = cv.attribute(
        model, x, "guided_gradcam", target=targets, layer=layer, interpolation="nearest"
    )
    ref = GuidedGradCam(model, dict(model.named_modules())[layer]).attribute(x, target=targets)
    assert torch.allclose(ours, ref.detach(), rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_guided_gradcam_is_zero_where_gradcam_is(tiny, tiny_input) -> None:
    guided = cv.attribute(tiny, tiny_input, "guided_gradcam", target=[1, 2, 3], layer="relu2")
    heat = cv.upsample(
        cv.attribute(tiny, tiny_input, "gradcam", target=[1, 2, 3], layer="relu2"), (16, 16)
    )
    assert torch.all(guided[heat.expand_as(guided) == 0] == 0)
    assert guided.abs().max() > 0


def test_parameters_are_checked_centrally(tiny, tiny_input) -> None:
    with pytest.raises(ValueError, match=r"scorecam: weights must be one of"):
        cv.attribute(tiny, tiny_input, "scorecam", weights="softmax")
    with pytest.raises(ValueError, match=r"batch_size must lie in \[0, 1024\]"):
        cv.attribute(tiny, tiny_input, "scorecam", batch_size=-1)
    with pytest.raises(TypeError, match="must be an int"):
        cv.attribute(tiny, tiny_input, "smoothgrad", n_samples=2.5)
    with pytest.raises(TypeError, match="True or False"):
        cv.attribute(tiny, tiny_input, "deconvnet", stride_correction="yes")
