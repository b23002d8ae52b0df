"""Gradient-family and occlusion maps: equal to Captum, to closed forms on tiny models, and
the model is left as found."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
)
from support import TinyCNN, hook_count, seeded
from torch import nn

import cnnvis_widget as cv

CAPTUM = {
    "guided_backprop": lambda m, x, t: GuidedBackprop(m).attribute(x, target=t),
    "deconvnet": lambda m, x, t: Deconvolution(m).attribute(x, target=t),
    "gradient_x_input": lambda m, x, t: InputXGradient(m).attribute(x, target=t),
    "integrated_gradients": lambda m, x, t: IntegratedGradients(m).attribute(
        x, target=t, n_steps=16, baselines=0.0, internal_batch_size=16
    ),
    "occlusion": lambda m, x, t: Occlusion(m).attribute(
        x, target=t, sliding_window_shapes=(3, 20, 20), strides=(3, 12, 12), baselines=0.0
    ),
}
OURS = {"integrated_gradients": {"steps": 16}, "occlusion": {"window": 20, "stride": 12}}


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "alexnet", "mobilenet_v2"])
@pytest.mark.parametrize("method", list(CAPTUM))
def test_equals_captum_per_sample(arch: str, method: str) -> None:
    if arch == "mobilenet_v2" and method in ("guided_backprop", "deconvnet"):
        pytest.skip("MobileNetV2's ReLU6 modules get the rule here, not in Captum")
    torch.manual_seed(0)
    model = tvm.get_model(arch, weights=None).eval()
    size = 96 if arch != "alexnet" else 112
    x = torch.randn(2, 3, size, size)
    targets = [3, 901]
    exact = cv.attribute(model, x, method, target=targets, fast=False, **OURS.get(method, {}))
    ref = CAPTUM[method](model, x.clone(), targets).detach()
    assert exact.shape == x.shape
    scale = float(ref.abs().max())
    assert scale > 0
    if method == "occlusion":
        # Occlusion values are differences of float32 logits computed in differently sized
        # batches; their rounding error scales with the logits, not with the map.
        with torch.no_grad():
            scale = max(scale, 10 * float(model(x).abs().max()))
    assert torch.allclose(exact, ref, rtol=1e-4, atol=1e-5 * scale), (arch, method)
    # The fast path (folded batch norm, channels-last) rounds differently. Held to the truth
    # in float64: the mean error stays at float32 rounding level; single pixels may differ by
    # up to 1% of the map where a near-tie in a max-pool (or ReLU) is broken the other way,
    # which Captum's float32 result also does (resnet18 x gradient_x_input: 1.0% here). How
    # often that happens depends on the CPU kernels torch picks: once torch.set_num_threads has
    # been called in the process (a dataset pass does), Captum's own float32 integrated
    # gradients on resnet18 are off the float64 truth by 7.6e-5 x scale on average. So the
    # mean is held to float32 rounding (2e-5 x scale) or to twice Captum's own float32 error,
    # whichever is larger.
    fast = cv.attribute(model, x, method, target=targets, **OURS.get(method, {}))
    truth = CAPTUM[method](copy.deepcopy(model).double(), x.double(), targets).detach().float()
    captum_error = float((ref - truth).abs().mean())
    bound = max(2e-5 * scale, 2 * captum_error)
    assert float((fast - truth).abs().mean()) <= bound, (arch, method)
    assert float((fast - truth).abs().max()) <= 1e-2 * scale, (arch, method)
    assert hook_count(model) == 0


def test_equals_captum_on_lite0(lite0) -> None:
    x = torch.cat([lite0.preprocess(cv.sample_image(n)) for n in ["cat", "coffee"]])
    ours = cv.attribute(lite0.module, x, "gradient_x_input", target=[281, 967], fast=False)
    ref = CAPTUM["gradient_x_input"](lite0.module, x.clone(), [281, 967]).detach()
    scale = float(ref.abs().max())
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5 * scale)
    # The default fast path (batch norm folded): against the float64 truth.
    fast = cv.attribute(lite0.module, x, "gradient_x_input", target=[281, 967])
    truth = CAPTUM["gradient_x_input"](copy.deepcopy(lite0.module).double(), x.double(), [281, 967])
    assert float((fast - truth.detach().float()).abs().mean()) <= 2e-5 * scale
    # Lite0's activations are ReLU6 modules, which Captum's rules skip (its guided backprop
    # is the plain gradient there); ours applies the rule to them.
    guided = cv.attribute(lite0.module, x, "guided_backprop", target=[281, 967])
    assert not torch.allclose(guided, cv.attribute(lite0.module, x, "saliency", target=[281, 967]))


def test_guided_rule_on_relu6_closed_form() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, padding=1).double()
    head = nn.Linear(4, 3).double()
    model = nn.Sequential(conv, nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    x = 12 * torch.randn(1, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        pre = conv(x)
    assert (pre > 6).any() and (pre < 0).any(), "the test needs both cut-offs active"
    g_out = (head.weight[1] / 36).view(1, 4, 1, 1).expand_as(pre).detach()
    mask = ((pre > 0) & (pre < 6)).double()
    expected = torch.nn.grad.conv2d_input(
        x.shape, conv.weight.detach(), g_out.clamp(min=0) * mask, padding=1
    )
    ours = cv.attribute(model, x, "guided_backprop", target=1)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-13)
    deconv = torch.nn.grad.conv2d_input(
        x.shape, conv.weight.detach(), g_out.clamp(min=0), padding=1
    )
    assert torch.allclose(
        cv.attribute(model, x, "deconvnet", target=1), deconv, rtol=1e-10, atol=1e-13
    )


def test_no_relu_modules_warns() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    with pytest.warns(UserWarning, match="plain gradient"):
        cv.attribute(model, torch.randn(1, 3, 2, 2), "guided_backprop", target=0)


def test_guided_backprop_differs_from_the_gradient_and_is_inplace_safe(
    tiny, tiny_inplace, tiny_input
) -> None:
    plain = cv.attribute(tiny, tiny_input, "guided_backprop", target=2)
    inplace = cv.attribute(tiny_inplace, tiny_input, "guided_backprop", target=2)
    assert torch.allclose(plain, inplace, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(plain, cv.attribute(tiny, tiny_input, "saliency", target=2))


def test_guided_backprop_equals_the_gradient_with_non_negative_weights(tiny, tiny_input) -> None:
    # With no negative weights every backward signal is >= 0, so the guided rule changes nothing.
    for parameter in tiny.parameters():
        parameter.data.abs_()
    guided = cv.attribute(tiny, tiny_input, "guided_backprop", target=1)
    assert torch.allclose(guided, cv.attribute(tiny, tiny_input, "saliency", target=1), rtol=1e-12)


def test_deconvnet_without_max_pool_ignores_the_input() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).double().eval()  # fmt: skip
    a, b = torch.randn(2, 1, 3, 12, 12, dtype=torch.float64)
    first = cv.attribute(model, a, "deconvnet", target=4)
    assert torch.allclose(first, cv.attribute(model, b, "deconvnet", target=4), atol=1e-12)
    assert first.abs().max() > 0


class Linear(nn.Module):
    """T0: f(x) = W flatten(x) + b."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture
def linear() -> nn.Module:
    return seeded(Linear())


def test_closed_forms_on_a_linear_model(linear) -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    targets = torch.tensor([1, 4])
    w = linear.fc.weight[targets].view(2, 3, 4, 4).detach()
    close = {"rtol": 1e-12, "atol": 1e-14}
    assert torch.allclose(
        cv.attribute(linear, x, "gradient_x_input", target=targets), x * w, **close
    )
    for steps in [1, 7, 50]:
        ig = cv.attribute(linear, x, "integrated_gradients", target=targets, steps=steps)
        assert torch.allclose(ig, x * w, **close)
    baseline = torch.full_like(x, 0.3)
    ig = cv.attribute(linear, x, "integrated_gradients", target=targets, baseline=baseline)
    assert torch.allclose(ig, (x - 0.3) * w, **close)
    for noise in [0.0, 0.2]:
        smooth = cv.attribute(
            linear, x, "smoothgrad", target=targets, n_samples=5, noise_level=noise
        )
        assert torch.allclose(smooth, w, **close)


def test_integrated_gradients_completeness(tiny, tiny_input) -> None:
    targets = torch.tensor([0, 3, 8])
    # ReLU kinks slow the quadrature down on this float64 T1 (2.6% gap at 50 steps for one
    # sample); 300 points bring every sample under 1%.
    ig = cv.attribute(tiny, tiny_input, "integrated_gradients", target=targets, steps=300)
    with torch.no_grad():
        logits = tiny(tiny_input).gather(1, targets.view(-1, 1))[:, 0]
        base = tiny(torch.zeros_like(tiny_input)).gather(1, targets.view(-1, 1))[:, 0]
    gap = (ig.sum((1, 2, 3)) - (logits - base)).abs() / (logits - base).abs()
    assert torch.all(gap < 0.01), gap


def test_smoothgrad_is_seeded_and_averages_noisy_gradients(tiny, tiny_input) -> None:
    kwargs = {"target": 1, "n_samples": 6, "noise_level": 0.2, "batch_size": 4}
    first = cv.attribute(tiny, tiny_input, "smoothgrad", seed=5, **kwargs)
    assert torch.equal(first, cv.attribute(tiny, tiny_input, "smoothgrad", seed=5, **kwargs))
    assert not torch.allclose(first, cv.attribute(tiny, tiny_input, "smoothgrad", seed=6, **kwargs))
    # Same noise, drawn by hand: n_samples draws of shape like x from a seeded generator.
    generator = torch.Generator().manual_seed(5)
    span = (tiny_input.flatten(1).amax(1) - tiny_input.flatten(1).amin(1)).view(-1, 1, 1, 1)
    noise = torch.cat(
        [torch.randn((count, *tiny_input.shape), generator=generator, dtype=torch.float64)
         for count in (4, 2)]
    )  # fmt: skip
    expected = torch.zeros_like(tiny_input)
    for sample in noise:
        noisy = (tiny_input + 0.2 * span * sample).requires_grad_(True)
        (grad,) = torch.autograd.grad(tiny(noisy)[:, 1].sum(), noisy)
        expected += grad / 6
    assert torch.allclose(first, expected, rtol=1e-10, atol=1e-13)


class SquareSum(nn.Module):
    """Logit 0 = sum of the pixels in rows 2..4, columns 3..6 of every channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = x[:, :, 2:5, 3:7].sum((1, 2, 3))
        return torch.stack([inside, -inside], dim=1)


def test_occlusion_closed_form() -> None:
    x = torch.rand(1, 3, 8, 9, dtype=torch.float64)
    occluded = cv.attribute(SquareSum(), x, "occlusion", target=0, window=1, stride=1)
    expected = torch.zeros_like(x[:, :1])
    expected[:, :, 2:5, 3:7] = x[:, :, 2:5, 3:7].sum(1, keepdim=True)
    assert torch.allclose(occluded, expected.expand_as(x), rtol=1e-12)


def test_occlusion_window_larger_than_input(tiny, tiny_input) -> None:
    with pytest.raises(ValueError, match="smaller window"):
        cv.attribute(tiny, tiny_input, "occlusion", window=40)


@pytest.mark.parametrize(
    "method",
    [
        "guided_backprop",
        "deconvnet",
        "gradient_x_input",
        "smoothgrad",
        "integrated_gradients",
        "occlusion",
    ],
)
def test_model_left_as_found(residual, tiny_input, method: str) -> None:
    residual.train()
    residual.conv1.weight.requires_grad_(False)
    before = copy.deepcopy(residual.state_dict())
    params = {"n_samples": 3} if method == "smoothgrad" else {}
    params = {"steps": 4} if method == "integrated_gradients" else params
    params = {"window": 8, "stride": 8} if method == "occlusion" else params
    first = cv.attribute(residual, tiny_input, method, target=[1, 2, 3], **params)
    again = cv.attribute(residual, tiny_input, method, target=[1, 2, 3], **params)
    assert torch.equal(first, again)  # eval mode: no dropout, no batch statistics
    assert all(m.training for m in residual.modules())
    assert not residual.conv1.weight.requires_grad and residual.conv2.weight.requires_grad
    assert all(p.grad is None for p in residual.parameters())
    for key, value in residual.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert hook_count(residual) == 0


def test_batch_equals_single_samples(tiny, tiny_input) -> None:
    targets = [2, 5, 9]
    for method in ["guided_backprop", "integrated_gradients", "occlusion"]:
        params = {"window": 4, "stride": 4} if method == "occlusion" else {}
        batch = cv.attribute(tiny, tiny_input, method, target=targets, **params)
        for i, t in enumerate(targets):
            single = cv.attribute(tiny, tiny_input[i : i + 1], method, target=t, **params)
            assert torch.allclose(batch[i : i + 1], single, rtol=1e-10, atol=1e-13), method


def test_tiny_cnn_import_is_used() -> None:
    assert TinyCNN().fc.out_features == 10


def strided_model() -> nn.Module:
    """conv 3x3 stride 2 (all-ones kernel) -> ReLU -> GAP -> linear: a constant backward
    signal through the strided conv shows its window-overlap pattern."""
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    head = nn.Linear(1, 2)
    nn.init.ones_(head.weight)
    return (
        nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).double().eval()
    )


def high_frequency_share(image: torch.Tensor) -> float:
    spectrum = torch.fft.fft2(image - image.mean()).abs() ** 2
    h, w = image.shape
    fy = torch.fft.fftfreq(h).abs().view(-1, 1)
    fx = torch.fft.fftfreq(w).abs().view(1, -1)
    high = (fy >= 0.25) | (fx >= 0.25)
    return float(spectrum[high].sum() / spectrum.sum().clamp_min(1e-30))


def grid_line_share(image: torch.Tensor) -> float:
    """Share of the (mean-removed) power spectrum on the rows and columns of frequency 1/4,
    1/2 and 3/4 cycles per pixel: where the periodic print of stride-2 and stride-4 windows
    lies."""
    spectrum = torch.fft.fft2(image.double() - image.double().mean()).abs() ** 2
    height, width = spectrum.shape
    lines = torch.zeros_like(spectrum, dtype=torch.bool)
    for k in (1, 2, 3):
        lines[k * height // 4] = True
        lines[:, k * width // 4] = True
    return float(spectrum[lines].sum() / spectrum.sum().clamp_min(1e-30))


@pytest.mark.parametrize("fix", ["nearest", "coverage"])
def test_deconvnet_stride_correction_removes_the_grid(fix: str) -> None:
    model = strided_model()
    x = torch.ones(1, 1, 32, 32, dtype=torch.float64)
    raw = cv.attribute(model, x, "deconvnet", target=0)[0, 0, 2:-2, 2:-2]
    fixed = cv.attribute(model, x, "deconvnet", target=0, stride_correction=True, stride_fix=fix)
    fixed = fixed[0, 0, 2:-2, 2:-2]
    assert high_frequency_share(raw) > 0.10  # the periodic 2-px pattern
    assert float(fixed.std() / fixed.mean()) < 1e-6  # uniform in the interior
    assert hook_count(model) == 0


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "groups"),
    [(3, 2, 1, 1), (7, 2, 3, 1), (3, 2, 0, 4), (5, 3, 2, 2)],
)
def test_nearest_stride_fix_is_the_stride_one_backward_of_the_resized_signal(
    kernel: int, stride: int, padding: int, groups: int
) -> None:
    """The authors' fix, computed independently: the signal at the strided conv's output,
    resized by nearest neighbour ("nearest-exact", pixel centres) to the stride-1 output size
    and divided by the stride's area, is the gradient sent into the same conv at stride 1."""
    from cnnvis_widget.methods.stride_fix import stride_correction

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, kernel, stride=stride, padding=padding, groups=groups).double()
    x = torch.randn(2, 4, 23, 21, dtype=torch.float64, requires_grad=True)
    with stride_correction(conv, "nearest") as fixed_layers:
        out = conv(x)
    assert fixed_layers == 1 and hook_count(conv) == 0
    signal = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, x, signal)

    flat = nn.Conv2d(4, 8, kernel, stride=1, padding=padding, groups=groups).double()
    flat.load_state_dict(conv.state_dict())
    leaf = x.detach().requires_grad_(True)
    out_1 = flat(leaf)
    resized = F.interpolate(signal, size=out_1.shape[-2:], mode="nearest-exact") / stride**2
    (expected,) = torch.autograd.grad(out_1, leaf, resized)
    assert torch.allclose(got, expected, atol=1e-12)
    plain = torch.autograd.grad(conv(x), x, signal)[0]
    assert not torch.allclose(plain, expected, atol=1e-3)  # the fix changes something


def test_nearest_stride_fix_removes_resnets_conv_grid() -> None:
    """ResNet-18 with its max-pool taken out (the switches of a max-pool on a flat input are
    a grid of their own, which neither fix touches): the strided convs' grid goes."""
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None).eval()
    model.maxpool = nn.Identity()
    x = torch.ones(1, 3, 128, 128)
    raw = cv.attribute(model, x, "deconvnet", target=7).abs().sum(1)[0, 8:-8, 8:-8]
    fixed = cv.attribute(model, x, "deconvnet", target=7, stride_correction=True)
    fixed = fixed.abs().sum(1)[0, 8:-8, 8:-8]
    assert grid_line_share(raw) > 0.3
    assert grid_line_share(fixed) < grid_line_share(raw) / 20


def test_coverage_stride_fix_on_resnet_lowers_high_frequencies() -> None:
    # A flat input, so what remains in the map comes from the network, not the image.
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None).eval()  # stride-2 convs with 3x3 / 7x7 kernels
    x = torch.ones(1, 3, 128, 128)
    raw = cv.attribute(model, x, "deconvnet", target=7).abs().sum(1)[0, 8:-8, 8:-8]
    fixed = cv.attribute(
        model, x, "deconvnet", target=7, stride_correction=True, stride_fix="coverage"
    )
    fixed = fixed.abs().sum(1)[0, 8:-8, 8:-8]
    assert high_frequency_share(fixed) < high_frequency_share(raw)


@pytest.mark.parametrize(("kernel", "size"), [(5, 16), (3, 15), (5, 17)])
def test_stride_correction_counts_tensorflow_same_padding(kernel: int, size: int) -> None:
    """EfficientNet's Conv2dStaticSamePadding pads inside its forward (an nn.ZeroPad2d child,
    one more row and column at the bottom/right): the coverage is counted on the padded
    input, so a flat map comes back flat up to the borders, also the bottom/right ones (they
    were divided as uncovered and stood out)."""
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    torch.manual_seed(0)
    conv = Conv2dStaticSamePadding(1, 2, kernel, stride=2, image_size=size, bias=False)
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        head.weight.fill_(1.0)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).double()
    x = torch.ones(1, 1, size, size, dtype=torch.float64)
    fixed = cv.attribute(
        model.eval(), x, "deconvnet", target=0, stride_correction=True, stride_fix="coverage"
    )[0, 0]
    assert float(fixed.std() / fixed.mean()) < 1e-6, fixed


@pytest.mark.parametrize(("kernel", "size"), [(5, 16), (3, 15), (5, 17)])
def test_nearest_stride_fix_runs_on_the_padded_input(kernel: int, size: int) -> None:
    """The same "same" convolution written as an explicit nn.ZeroPad2d before a plain conv:
    the hook sees the padded input there, and the fix must give the same map as on
    Conv2dStaticSamePadding, which pads inside its forward."""
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    torch.manual_seed(0)
    same = Conv2dStaticSamePadding(3, 4, kernel, stride=2, image_size=size).double()
    assert isinstance(same.static_padding, nn.ZeroPad2d) and any(same.static_padding.padding)
    explicit = nn.Conv2d(3, 4, kernel, stride=2).double()
    explicit.load_state_dict(same.state_dict())
    head = nn.Linear(4, 2).double()
    with torch.no_grad():
        head.weight.abs_()  # a positive signal passes DeconvNet's relu(g)

    def net(conv: nn.Module) -> nn.Module:
        return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()

    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    padded = nn.Sequential(copy.deepcopy(same.static_padding), explicit)
    maps = [
        cv.attribute(net(conv), x, "deconvnet", target=0, stride_correction=True)
        for conv in (same, padded)
    ]
    assert torch.allclose(maps[0], maps[1], atol=1e-12)
    plain = cv.attribute(net(same), x, "deconvnet", target=0)
    assert not torch.allclose(plain, maps[0], atol=1e-6)
