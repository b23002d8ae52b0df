"""Models a student brings (issue 13): a 1-channel LeNet on 28 x 28 greyscale, float16 and
bfloat16 models, and vision transformers (token layers).

Every synthesis kind, the Explorer (image, predictions, Grad-CAM, filter grid, synthesis
panel) and ``cv.attribute`` must work on them, with images of the model's channel count and
input size, and CAM methods / the filter grid must never draw something that is not a map
over the image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms as T
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from support import TinyCNN
from torch import nn
from torchvision.models import VisionTransformer

import cnnvis_widget as cv
from cnnvis_widget.encode import decode_payload, ndarray_payload
from cnnvis_widget.layers import default_cam_layer, layers
from cnnvis_widget.models import FunctionPreprocess
from cnnvis_widget.synthesis.kinds import KINDS, SynthesisTarget, result_payload, run_synthesis
from cnnvis_widget.widgets import Explorer

IMAGE_KINDS = [name for name, kind in KINDS.items() if kind.output == "images"]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


class LeNet(nn.Module):
    """LeNet-5 for 28 x 28 greyscale digits: conv5(1->6, pad 2) - ReLU - pool2 - conv5(6->16)
    - ReLU - pool2 - flatten (16 x 5 x 5) - linear 120 - ReLU - linear 10. It runs on
    (N, 1, 28, 28) only (the flatten feeds a fixed-size linear layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(x.flatten(1))))


def lenet() -> LeNet:
    torch.manual_seed(0)
    return LeNet().eval()


def mnist_function() -> T.Compose:
    """The usual MNIST preprocessing as a function (torchvision transforms)."""
    return T.Compose(
        [
            T.Grayscale(),
            T.Resize(28),
            T.CenterCrop(28),
            T.ToTensor(),
            T.Normalize(MNIST_MEAN, MNIST_STD),
        ]
    )


PREPROCESSINGS = {
    "Preprocess": lambda: cv.Preprocess(
        input_size=(28, 28), mean=MNIST_MEAN, std=MNIST_STD, resize=28
    ),
    "function": mnist_function,
    "none": lambda: None,
}


# --- 1. one channel, a fixed input size, any preprocessing ---------------------------------


def test_preprocess_with_one_channel_gives_greyscale_model_input() -> None:
    pre = cv.Preprocess(input_size=(28, 28), mean=MNIST_MEAN, std=MNIST_STD, resize=28)
    image = cv.sample_image("astronaut")  # RGB
    x, seen = pre.prepare(image)
    assert pre.channels == 1 and x.shape == (1, 1, 28, 28) and seen.mode == "L"
    grey = torch.from_numpy(np.asarray(seen, dtype=np.float32) / 255)
    assert torch.allclose(x[0, 0], (grey - MNIST_MEAN[0]) / MNIST_STD[0], atol=1e-6)
    assert torch.allclose(pre.denormalize(x)[0, 0], grey, atol=1e-6)
    with pytest.raises(ValueError, match="mean has 1 values but std has 3"):
        cv.Preprocess(mean=(0.5,))


def test_a_preprocessing_function_is_calibrated_from_uniform_images() -> None:
    pre = FunctionPreprocess(mnist_function())
    x = pre(cv.sample_image("camera"))
    assert x.shape == (1, 1, 28, 28) and pre.input_size == (28, 28) and pre.channels == 1
    # ToTensor + Normalize is affine per channel: the mean / std come back (float32 steps).
    assert pre.affine
    assert pre.mean[0] == pytest.approx(MNIST_MEAN[0], abs=1e-5)
    assert pre.std[0] == pytest.approx(MNIST_STD[0], abs=1e-5)
    reference = cv.Preprocess(input_size=(28, 28), mean=MNIST_MEAN, std=MNIST_STD, resize=28)
    assert torch.allclose(pre.denormalize(x), reference.denormalize(x), atol=1e-5)

    def not_affine(image: object) -> torch.Tensor:
        x = T.ToTensor()(T.Resize((8, 8))(image))
        return (x - x.mean()) / (x.std() + 1e-6)  # per-image standardization

    with pytest.warns(UserWarning, match="not a per-channel affine map"):
        other = FunctionPreprocess(not_affine)
        assert other(cv.sample_image("cat")).shape == (1, 3, 8, 8)
    assert not other.affine and other.mean == (0.0,) * 3 and other.std == (1.0,) * 3


@pytest.mark.parametrize("kind", list(PREPROCESSINGS))
def test_explorer_opens_a_one_channel_lenet(kind: str) -> None:
    model = lenet()
    widget = Explorer(model, cv.sample_image("camera"), preprocess=PREPROCESSINGS[kind]())
    session = widget.session
    assert widget.message is None
    assert session.input.shape == (1, 1, 28, 28)
    assert session.bundle.input_size == (28, 28) and session.bundle.channels == 1
    if kind != "none":  # without one the model gets [0, 1] pixels (mean 0, std 1)
        assert session.bundle.preprocess.mean[0] == pytest.approx(MNIST_MEAN[0], abs=1e-5)
    # The image is shown as the model sees it, greyscale: three equal channels.
    shown = decode_payload(widget.image)
    assert shown.shape == (28, 28, 3)
    assert (shown[..., 0] == shown[..., 1]).all() and (shown[..., 0] == shown[..., 2]).all()
    assert len(widget.predictions) == 5
    assert widget.overlay_layer == "pool2" or widget.selected_layer == "pool2"
    assert widget.overlay_map is not None and decode_payload(widget.overlay_map).shape == (5, 5)
    widget.selected_layer = "conv1"
    assert widget.grid is not None and decode_payload(widget.grid).shape == (6, 28, 28)


def test_explorer_refuses_a_preprocessing_with_the_wrong_channel_count() -> None:
    with pytest.raises(ValueError, match=r"gives 3 channel\(s\) but the model's first conv"):
        Explorer(lenet(), cv.sample_image("camera"), preprocess=cv.Preprocess((28, 28)))


def test_input_spec_is_found_by_trying_the_model() -> None:
    spec = cv.models.input_spec(lenet())
    assert (spec.channels, spec.size, spec.fixed) == (1, (28, 28), True)
    flexible = cv.models.input_spec(TinyCNN().eval())
    assert (flexible.channels, flexible.size, flexible.fixed) == (3, (224, 224), False)


def check_images(images: torch.Tensor, count: int, channels: int, size: tuple[int, int]) -> None:
    assert images.shape == (count, channels, *size), images.shape
    assert bool(torch.isfinite(images).all())
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def lenet_bundle(kind: str) -> cv.ModelBundle:
    model = lenet()
    return Explorer(
        model, cv.sample_image("camera"), preprocess=PREPROCESSINGS[kind]()
    ).session.bundle


@pytest.mark.parametrize("kind", ["Preprocess", "function"])
def test_every_synthesis_function_on_a_one_channel_lenet(kind: str) -> None:
    bundle = lenet_bundle(kind)
    x = bundle.preprocess(cv.sample_image("camera"))
    size = (28, 28)
    check_images(cv.visualize_feature(bundle, "conv2", [0, 1], steps=3).images, 2, 1, size)
    erhan = cv.visualize_feature(bundle, "conv2", 1, method="erhan", restarts=2, steps=3)
    check_images(erhan.images, 2, 1, size)
    for method in ("generation", "simonyan", "yosinski", "lucid"):
        check_images(cv.visualize_class(bundle, 3, method=method, steps=3).images, 1, 1, size)
    check_images(cv.invert(bundle, x, "conv2", steps=(3, 1)).images, 1, 1, size)
    check_images(cv.caricature(bundle, x, "conv2", steps=3).images, 1, 1, size)
    # 4 octaves of 28 px go down to 10 px, too small for two 5x5 convs and two pools by
    # themselves: the model sees every octave at its one input size.
    check_images(cv.deep_dream(bundle, x, "conv2", octaves=4, steps=2).images, 1, 1, size)
    check_images(cv.fooling_image(bundle, 3, steps=3).images, 1, 1, size)
    for attack in ("fgsm", "pgd"):
        check_images(cv.adversarial(bundle, x, method=attack, steps=2).images, 1, 1, size)
    check_images(cv.style_transfer(bundle, x, x.flip(-1), steps=3).images, 1, 1, size)
    # A bare module: channels and size come from the model itself.
    check_images(cv.visualize_class(bundle.module, 3, steps=2).images, 1, 1, size)
    # An explicit other size is resized to the model's inside the pass.
    check_images(cv.visualize_feature(bundle, "conv2", 0, size=40, steps=2).images, 1, 1, (40, 40))


def test_deep_dream_skips_octaves_too_small_for_a_flexible_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 5), nn.ReLU(), nn.Conv2d(4, 4, 5), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, 3),
    ).eval()  # fmt: skip
    pre = cv.Preprocess(input_size=(16, 16), mean=(0.5,), std=(0.5,), resize=16)
    bundle = cv.ModelBundle(model, pre, ["a", "b", "c"])
    x = pre(cv.sample_image("camera"))
    result = cv.deep_dream(bundle, x, "2", octaves=4, steps=2)  # 16 / 1.4^3 = 6 px: too small
    check_images(result.images, 1, 1, (16, 16))
    assert all(min(size) >= 9 for size in result.info["octaves"])
    assert result.info["octaves"][-1] == (16, 16)


@pytest.mark.parametrize("kind", ["Preprocess", "function"])
def test_every_synthesis_kind_of_the_panel_on_a_one_channel_lenet(kind: str) -> None:
    widget = Explorer(lenet(), cv.sample_image("camera"), preprocess=PREPROCESSINGS[kind]())
    bundle = widget.session.bundle
    sizes = {p["name"]: p["default"] for row in widget.synth_kinds for p in row["params"]}
    assert sizes["size"] == 28  # the picker's default image size is the model's
    where = SynthesisTarget("conv2", 1, 3, widget.session.input)
    for name in IMAGE_KINDS:
        params = {"steps": 6 if name == "invert" else 2}
        result = run_synthesis(bundle, name, params, where)
        count = 4 if name == "erhan" else 1  # erhan: 4 restarts
        check_images(result.images, count, 1, (28, 28))
        shown = decode_payload(result_payload(name, name, result, bundle)["images"])
        assert shown.shape == (count, 28, 28, 3) and (shown[..., 0] == shown[..., 2]).all()
    # Through the widget itself (background job), a channel of the selected layer.
    widget.selected_layer = "conv2"
    widget.selected_channel = 2
    widget.synthesize("feature", steps=3)
    assert widget.wait(120) and widget.synth_job["state"] == "done", widget.synth_job
    assert decode_payload(widget.synthesis["images"]).shape == (1, 28, 28, 3)


# --- 2. float16 and bfloat16 models -------------------------------------------------------

HALF = [torch.float16, torch.bfloat16]


def tiny_in(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval().to(dtype)


def test_payloads_take_bfloat16_and_float16() -> None:
    values = torch.tensor([[0.5, -1.25], [3.0, 0.0]])
    for dtype in HALF:
        payload = ndarray_payload(values.to(dtype), "float32")
        assert np.array_equal(decode_payload(payload), values.numpy())


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_every_method_on_a_half_model_matches_float32(dtype: torch.dtype) -> None:
    model, reference = tiny_in(dtype), tiny_in(torch.float32)
    x = cv.Preprocess((32, 32), resize=32)(cv.sample_image("cat"))
    for name, method in cv.METHODS.items():
        params: dict[str, Any] = {"window": 8, "stride": 4} if name == "occlusion" else {}
        layer = "relu2" if method.uses_layer else None
        ours = cv.attribute(model, x, name, target=2, layer=layer, **params)
        truth = cv.attribute(reference, x, name, target=2, layer=layer, **params)
        assert ours.dtype == torch.float32 and ours.shape == truth.shape, name  # maps: float32
        assert bool(torch.isfinite(ours.float()).all()), name
        # Same map up to half rounding: correlation with the float32 model's map.
        a, b = ours.float().flatten(), truth.flatten()
        if float(b.std()) > 0:
            assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.9, name


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_explorer_and_synthesis_on_a_half_model(dtype: torch.dtype) -> None:
    widget = Explorer(
        tiny_in(dtype), cv.sample_image("cat"), preprocess=cv.Preprocess((32, 32), resize=32)
    )
    session = widget.session
    assert widget.message is None and session.input.dtype == dtype
    assert widget.overlay_map is not None and widget.overlay_map["dtype"] == "float32"
    assert np.isfinite(decode_payload(widget.overlay_map)).all()
    widget.selected_layer = "conv1"
    assert widget.grid is not None and decode_payload(widget.grid).shape == (8, 32, 32)
    for name in cv.METHODS:
        params = {"window": 8, "stride": 4} if name == "occlusion" else {}
        layer = "relu2" if cv.METHODS[name].uses_layer else None
        cell = session.comparison_cell(name, 2, layer, params)
        assert cell["map"]["dtype"] == "float32" and np.isfinite(decode_payload(cell["map"])).all()
    where = SynthesisTarget("conv2", 1, 3, session.input)
    for name in IMAGE_KINDS:
        result = run_synthesis(session.bundle, name, {"steps": 6 if name == "invert" else 2}, where)
        assert bool(torch.isfinite(result.images).all()), name
        assert result.images.shape[1] == 3, name
    style = cv.style_transfer(session.bundle, session.input, session.input.flip(-1), steps=3)
    assert bool(torch.isfinite(style.images).all()) and bool(torch.isfinite(style.trace).all())


# --- 3. vision transformers: token layers -------------------------------------------------


def small_vit(image_size: int = 64) -> VisionTransformer:
    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=image_size, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32,
        mlp_dim=64, num_classes=5,
    ).eval()  # fmt: skip
    nn.init.normal_(vit.heads.head.weight, std=0.5)  # torchvision starts the head at zero
    return vit


def vit_reshape(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """pytorch-grad-cam's documented reshape_transform for ViT."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def test_token_layers_are_spatial_and_the_default_layer_reaches_the_logits() -> None:
    vit = small_vit()
    x = torch.rand(1, 3, 64, 64)
    infos = {info.name: info for info in layers(vit, x)}
    block = infos["encoder.layers.encoder_layer_1.ln_1"]
    assert block.output_shape == (1, 17, 32) and block.grid == (4, 4) and block.tokens
    assert infos["conv_proj"].grid == (4, 4) and not infos["conv_proj"].tokens
    assert not infos["encoder.layers.encoder_layer_1.self_attention"].spatial  # a tuple
    assert not infos["heads"].spatial  # (1, 5)
    # After the last attention only the class token is read: layers there give zero maps.
    assert default_cam_layer(list(infos.values()), vit, x) == (
        "encoder.layers.encoder_layer_1.ln_1"
    )


@pytest.mark.parametrize("shape", [(64, 64), (64, 96)])
def test_gradcam_on_a_vit_token_layer_equals_pytorch_grad_cam(shape: tuple[int, int]) -> None:
    vit = small_vit(shape[0])
    if shape[0] != shape[1]:  # a non-square ViT: positional embedding for a 4 x 6 grid
        vit = VisionTransformer(
            image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32,
            mlp_dim=64, num_classes=5,
        ).eval()  # fmt: skip
        nn.init.normal_(vit.heads.head.weight, std=0.5)
        vit.encoder.pos_embedding = nn.Parameter(torch.randn(1, 25, 32) * 0.02)
        vit.image_size = 64
        vit._process_input = _any_size(vit)
    torch.manual_seed(1)
    x = torch.rand(2, 3, *shape)
    grid = (shape[0] // 16, shape[1] // 16)
    layer = "encoder.layers.encoder_layer_1.ln_1"
    ours = cv.attribute(vit, x, "gradcam", target=[3, 1], layer=layer)
    assert ours.shape == (2, 1, *grid)
    targets = [ClassifierOutputTarget(3), ClassifierOutputTarget(1)]
    with GradCAM(
        vit, [vit.get_submodule(layer)], reshape_transform=lambda t: vit_reshape(t, *grid)
    ) as method:
        output = method(x, targets=targets)
        recorded = method.activations_and_grads
        activation, gradient = recorded.activations[0].numpy(), recorded.gradients[0].numpy()
        raw = method.get_cam_image(x, None, targets, activation, gradient, False)
    raw = torch.from_numpy(np.maximum(raw, 0))
    assert float(raw.amax()) > 0
    assert torch.allclose(ours[:, 0], raw, rtol=1e-4, atol=1e-6 * float(raw.abs().max()))
    upsampled = cv.upsample(ours, shape)[:, 0]
    low = upsampled.amin(dim=(1, 2), keepdim=True)
    high = upsampled.amax(dim=(1, 2), keepdim=True)
    scaled = (upsampled - low) / (high - low)
    assert torch.allclose(scaled, torch.from_numpy(output), atol=1e-4)


def _any_size(vit: VisionTransformer) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision's ``_process_input`` without its square-size assertion."""

    def process(x: torch.Tensor) -> torch.Tensor:
        x = vit.conv_proj(x)
        return x.reshape(x.shape[0], vit.hidden_dim, -1).permute(0, 2, 1)

    return process


def test_vit_b_16_default_layer_and_gradcam_equal_pytorch_grad_cam() -> None:
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()  # random weights, no download
    nn.init.normal_(vit.heads.head.weight, std=0.02)
    x = torch.rand(1, 3, 224, 224)
    layer = "encoder.layers.encoder_layer_11.ln_1"  # pytorch-grad-cam's recommended layer
    assert default_cam_layer(layers(vit, x), vit, x) == layer
    ours = cv.attribute(vit, x, "gradcam", target=7)  # default layer
    assert ours.shape == (1, 1, 14, 14)
    with GradCAM(
        vit, [vit.get_submodule(layer)], reshape_transform=lambda t: vit_reshape(t, 14, 14)
    ) as method:
        output = method(x, targets=[ClassifierOutputTarget(7)])
    upsampled = cv.upsample(ours, (224, 224))[:, 0]
    scaled = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
    assert torch.allclose(scaled, torch.from_numpy(output), atol=1e-4)


class HeadSplit(nn.Module):
    """(N, T, C) tokens -> (N, heads, T, C / heads), as attention splits them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], 2, -1).transpose(1, 2)


class Attention(nn.Module):
    """(N, heads, T, d) -> softmax(q k^T) (N, heads, T, T)."""

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return (q @ q.transpose(-1, -2)).softmax(dim=-1)


class ChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class TokenNet(nn.Module):
    """Patch embedding -> class token + 16 patch tokens; attention arrays of shapes
    (N, heads, T, d) and (N, heads, T, T), a channels-last (N, h, w, C) array; logits from
    the class token mixed with the patches by the attention."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 16, stride=16)
        self.channels_last = ChannelsLast()
        self.tokens = nn.Identity()
        self.split = HeadSplit()
        self.attention = Attention()
        self.mixed = nn.Identity()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch(x)  # (N, 8, 4, 4)
        patches = self.channels_last(patches).permute(0, 3, 1, 2)  # via (N, h, w, C)
        tokens = torch.cat(
            [patches.mean(dim=(2, 3))[:, None], patches.flatten(2).transpose(1, 2)], 1
        )
        tokens = self.tokens(tokens)  # (N, 17, 8)
        heads = self.split(tokens)  # (N, 2, 17, 4)
        weights = self.attention(heads)  # (N, 2, 17, 17)
        mixed = self.mixed((weights @ heads).transpose(1, 2).reshape_as(tokens))
        return self.head(mixed[:, 0])


def test_attention_arrays_are_never_drawn_as_maps() -> None:
    torch.manual_seed(0)
    model = TokenNet().eval()
    x = torch.rand(1, 3, 64, 64)
    infos = {info.name: info for info in layers(model, x)}
    assert infos["tokens"].grid == (4, 4) and infos["mixed"].grid == (4, 4)
    for name in ("split", "attention", "channels_last"):
        assert not infos[name].spatial, (name, infos[name].output_shape)
    # "mixed" finishes last, but the head reads only its class token: its patch maps would
    # be all zero. "tokens" feeds the attention, so its patches reach the logits.
    assert default_cam_layer(list(infos.values()), model, x) == "tokens"
    assert float(cv.attribute(model, x, "gradcam", layer="mixed").abs().max()) == 0
    for method in ("gradcam", "layercam", "scorecam", "gradcam_plus_plus"):
        for name in ("split", "channels_last"):
            with pytest.raises(ValueError, match="not a map over the 64x64 image"):
                cv.attribute(model, x, method, layer=name)
        assert cv.attribute(model, x, method, layer="tokens").shape == (1, 1, 4, 4)
    widget = Explorer(model, cv.sample_image("cat"), preprocess=cv.Preprocess((64, 64), resize=64))
    assert widget.message is None
    assert widget.overlay_map is not None and decode_payload(widget.overlay_map).shape == (4, 4)
    widget.selected_layer = "split"
    assert widget.grid is None  # no filter grid for a non-spatial layer
    widget.selected_layer = "tokens"
    assert widget.grid is not None and decode_payload(widget.grid).shape == (8, 4, 4)


def test_explorer_on_a_vit_shows_token_maps() -> None:
    vit = small_vit()
    widget = Explorer(vit, cv.sample_image("cat"), preprocess=cv.Preprocess((64, 64), resize=64))
    assert widget.message is None
    assert widget.overlay_map is not None and decode_payload(widget.overlay_map).shape == (4, 4)
    rows = {row["name"]: row for row in widget.layers}
    assert rows["encoder.layers.encoder_layer_0.mlp.0"]["spatial"]
    widget.selected_layer = "encoder.layers.encoder_layer_0.mlp.0"  # (1, 17, 64) tokens
    assert widget.grid is not None and decode_payload(widget.grid).shape == (64, 4, 4)
    # The grid is the token reshape: channel c at patch (i, j) is token 1 + 4 i + j.
    tokens = cv.activations(vit, widget.session.input, ["encoder.layers.encoder_layer_0.mlp.0"])
    out = tokens["encoder.layers.encoder_layer_0.mlp.0"][0]
    lo, hi = decode_payload(widget.grid_lo), decode_payload(widget.grid_hi)
    assert np.allclose(lo, out[1:].amin(dim=0).numpy(), atol=1e-6)
    assert np.allclose(hi, out[1:].amax(dim=0).numpy(), atol=1e-6)
