"""Layer discovery and activations: right shapes, right values, model left untouched."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from support import hook_count

import cnnvis_widget as cv
from cnnvis_widget.layers import default_cam_layer

ARCHS = [
    "resnet18",
    "vgg11",
    "alexnet",
    "mobilenet_v2",
    "efficientnet_b0",
    "densenet121",
    "googlenet",
]


@pytest.mark.parametrize("arch", ARCHS)
def test_layers_of_torchvision_models(arch: str) -> None:
    torch.manual_seed(0)
    model = tvm.get_model(arch, weights=None).eval()
    x = torch.randn(1, 3, 64, 64) if arch != "alexnet" else torch.randn(1, 3, 96, 96)
    infos = cv.layers(model, x)
    names = [name for name, _ in model.named_modules() if name]
    assert [info.name for info in infos] == names
    assert hook_count(model) == 0
    spatial = [info for info in infos if info.spatial]
    assert spatial, arch
    last = default_cam_layer(infos)
    shape = dict((info.name, info.output_shape) for info in infos)[last]
    got = cv.activations(model, x, [last])[last]
    assert tuple(got.shape) == shape and len(shape) == 4


def test_layers_of_lite0(lite0) -> None:
    x = lite0.preprocess(cv.sample_image("cat"))
    infos = {info.name: info for info in cv.layers(lite0.module, x)}
    assert infos["_conv_stem"].output_shape == (1, 32, 112, 112)
    assert infos["_fc"].output_shape == (1, 1000)
    assert infos["_swish"].calls == 2  # reused: stem and head activation
    assert default_cam_layer(list(infos.values())) == "_swish"
    assert infos["_swish"].output_shape == (1, 1280, 7, 7)


def test_activations_match_a_manual_forward(tiny, tiny_input) -> None:
    acts = cv.activations(tiny, tiny_input, ["conv1", "pool", "fc"])
    with torch.no_grad():
        conv1 = tiny.conv1(tiny_input)
        pool = tiny.pool(torch.relu(conv1))
        logits = tiny(tiny_input)
    assert torch.equal(acts["conv1"], conv1)
    assert torch.equal(acts["pool"], pool)
    assert torch.equal(acts["fc"], logits)


def test_inplace_relu_does_not_alter_recorded_output(tiny_inplace, tiny_input) -> None:
    conv1 = cv.activations(tiny_inplace, tiny_input, "conv1")["conv1"]
    assert (conv1 < 0).any(), "the in-place ReLU after conv1 overwrote the recorded output"
    with torch.no_grad():
        assert torch.equal(conv1, tiny_inplace.conv1(tiny_input))


def test_reused_module_calls_are_addressable(residual, tiny_input) -> None:
    infos = {info.name: info for info in cv.layers(residual, tiny_input)}
    assert infos["relu"].calls == 3
    first = cv.activations(residual, tiny_input, "relu@0")["relu@0"]
    last = cv.activations(residual, tiny_input, ["relu"])["relu"]
    with torch.no_grad():
        expected_first = torch.relu(residual.bn1(residual.conv1(tiny_input)))
    assert torch.allclose(first, expected_first)
    assert last.shape[1] == 16  # the third call, after conv2


def test_unknown_layer_lists_valid_names(tiny, tiny_input) -> None:
    with pytest.raises(ValueError, match="conv1") as error:
        cv.activations(tiny, tiny_input, "conv_1")
    assert "Valid layer names" in str(error.value) and "fc" in str(error.value)
    assert hook_count(tiny) == 0


def test_wrong_input_shape_says_expected(tiny) -> None:
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        cv.layers(tiny, torch.randn(3, 16, 16, dtype=torch.float64))
