"""Theoretical receptive fields (:mod:`cnnvis_widget.receptive_field`).

The reference is brute force: with all weights positive and every op linear (max pools made
average pools, activations removed, batch norm the identity), nothing cancels, so the input
pixels a map position sees are exactly those where the input gradient of that position's
output (summed over channels) is nonzero. Its bounding box must equal :meth:`box`.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
import torchvision
from support import TinyCNN, seeded
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.capture import capture
from cnnvis_widget.fx_trace import ThreadSafeTracer
from cnnvis_widget.model_view import hook_dicts_of
from cnnvis_widget.receptive_field import ReceptiveField, receptive_field

Box = tuple[int, int, int, int]


# --------------------------------------------------------------------------- brute force


def positive_linear_copy(model: nn.Module) -> nn.Module:
    """A float32 copy of ``model`` whose convolutions / linears have positive weights (about
    1 / fan-in, so values stay near 1) and no bias, batch norms are the identity, max pools
    are average pools with the same window and activations are removed: a positive linear
    map, in which no gradient cancels. The original is not touched."""
    twin = copy.deepcopy(model).float().eval()
    for parent in list(twin.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                assert child.dilation in (1, (1, 1))
                pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
                setattr(parent, name, pool)
            elif isinstance(child, nn.ReLU | nn.ReLU6 | nn.SiLU | nn.Hardswish | nn.GELU):
                setattr(parent, name, nn.Identity())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                weight = module.weight
                fan_in = weight[0].numel()
                weight.copy_((torch.rand(weight.shape, generator=generator) + 0.5) / fan_in)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
    return twin


def support_boxes(
    net: nn.Module, layer: str, shape: Sequence[int], positions: Sequence[tuple[int, int]]
) -> list[Box | None]:
    """Per map position (y, x) of ``layer``: the bounding box (top, left, bottom, right) of
    the input pixels where d(output[:, :, y, x].sum()) / d(input) is nonzero; ``None`` when
    there are none. One batch: sample ``p`` backpropagates from position ``p``."""
    x = torch.rand(len(positions), *shape[1:]) + 0.5
    x.requires_grad_(True)
    with capture(net, [layer]) as recorded:
        net(x)
    output = recorded.tensor(layer)
    score = sum(output[p, :, y, x_].sum() for p, (y, x_) in enumerate(positions))
    assert isinstance(score, torch.Tensor)
    (grad,) = torch.autograd.grad(score, x)
    boxes: list[Box | None] = []
    for p in range(len(positions)):
        support = grad[p].abs().sum(0) != 0
        if not support.any():
            boxes.append(None)
            continue
        rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
        boxes.append((int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
    return boxes


def probe_positions(
    map_size: tuple[int, int], extra: int = 3, seed: int = 0
) -> list[tuple[int, int]]:
    """Corners, centre and ``extra`` random positions of an h x w map."""
    h, w = map_size
    rng = random.Random(seed)
    chosen = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)]
    chosen += [(rng.randrange(h), rng.randrange(w)) for _ in range(extra)]
    return list(dict.fromkeys(chosen))


def assert_matches_brute_force(
    model: nn.Module, layer: str, shape: Sequence[int], field: ReceptiveField, extra: int = 3
) -> None:
    """``field.box`` equals the gradient support's bounding box at the corners, the centre
    and ``extra`` random map positions."""
    positions = probe_positions(field.map_size, extra)
    expected = support_boxes(positive_linear_copy(model), layer, shape, positions)
    for (y, x), want in zip(positions, expected, strict=True):
        got = field.box(y, x)
        if want is None:  # the position sees only padding
            assert got[0] == got[2] or got[1] == got[3], ((y, x), got)
        else:
            assert got == want, ((y, x), got, want)


# --------------------------------------------------------------------------- random nets


class Residual(nn.Module):
    """Two 3 x 3 convs (the first stride 2) plus a 1 x 1 stride-2 shortcut, added."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.b = nn.Conv2d(channels, channels, 3, padding=1)
        self.shortcut = nn.Conv2d(channels, channels, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class Concat(nn.Module):
    """A 3 x 3 and a 5 x 5 branch (same map size), concatenated along the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.small = nn.Conv2d(channels, channels, 3, padding=1)
        self.large = nn.Conv2d(channels, channels // 2, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.small(x), self.large(x)], 1)


class Functional(nn.Module):
    """F.pad (asymmetric), F.conv2d (stride (1, 2), 3 x 5 kernel) and F.avg_pool2d."""

    def __init__(self, channels: int, pad: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.pad = pad
        self.weight = nn.Parameter(torch.randn(channels, channels, 3, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.pad(x, self.pad), self.weight, stride=(1, 2), padding=(1, 0))
        return F.avg_pool2d(x, 2, stride=1)


def random_net(seed: int) -> tuple[nn.Sequential, tuple[int, int, int, int]]:
    """A random stack of linear ops and the input shape it takes, with a final map of at
    least 3 x 3. Every window is at least as large as its stride and dilated convs follow a
    3 x 3 conv, so no field has holes (there the bounding box is exactly what a unit sees)."""
    rng = random.Random(seed)
    while True:
        shape = (1, 3, rng.randint(28, 56), rng.randint(28, 56))
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *_random_layers(rng), nn.Conv2d(4, 4, 3))
        try:
            out = net(torch.zeros(shape))
        except RuntimeError:  # a map shrank below a kernel
            continue
        if min(out.shape[-2:]) >= 3:
            return net, shape


def _random_layers(rng: random.Random) -> list[nn.Module]:
    c = 4
    layers: list[nn.Module] = []
    for _ in range(rng.randint(4, 7)):
        kind = rng.choice(["conv", "dilated", "pool", "pad", "residual", "concat", "functional"])
        if kind == "conv":
            k = rng.choice([1, 2, 3, 5])
            stride = rng.randint(1, min(k, 2))
            layers.append(nn.Conv2d(c, c, k, stride=stride, padding=rng.randint(0, k // 2 + 1)))
        elif kind == "dilated":
            d = rng.choice([2, 3])
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=d, dilation=d)]
        elif kind == "pool":
            k = rng.choice([2, 3])
            stride = rng.randint(1, k)
            ceil = rng.random() < 0.5
            layers.append(nn.AvgPool2d(k, stride, padding=rng.randint(0, k // 2), ceil_mode=ceil))
        elif kind == "pad":
            left, right, top, bottom = (rng.randint(0, 3) for _ in range(4))
            layers.append(nn.ZeroPad2d((left, right, top, bottom)))
        elif kind == "residual":
            layers.append(Residual(c))
        elif kind == "concat":
            layers += [Concat(c), nn.Conv2d(c + c // 2, c, 1)]
        else:
            layers.append(Functional(c, (rng.randint(0, 2), rng.randint(0, 2), 0, 1)))
    return layers


@pytest.mark.parametrize("seed", range(8))
def test_geometry_equals_the_gradient_support_on_random_linear_nets(seed: int) -> None:
    net, shape = random_net(seed)
    x = torch.randn(shape)
    for layer in (str(len(net) - 1), str(len(net) // 2)):
        field = receptive_field(net, layer, x)
        assert field.method == "geometry", field.reason
        assert_matches_brute_force(net, layer, shape, field)


def test_border_pixels_no_window_reads_are_outside_the_box() -> None:
    """A stride-2 window drops the last column of an odd-width input; a later right padding
    must not bring it into the box of the last position."""
    net = nn.Sequential(
        nn.Conv2d(1, 1, 2, stride=2), nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(1, 1, 2)
    )
    x = torch.randn(1, 1, 7, 7)
    field = receptive_field(net, "2", x)
    assert field.box(2, 2) == (4, 4, 6, 6)
    assert field.box(2, 2, clip=False) == (4, 4, 8, 8)
    assert_matches_brute_force(net, "2", x.shape, field)


def test_box_api() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    field = receptive_field(net, "1", torch.randn(1, 3, 9, 11))
    assert field.map_size == (5, 6) and field.input_size == (9, 11)
    assert (field.jump, field.size, field.start) == ((2, 2), (7, 7), (-3.0, -3.0))
    assert field.box(0, 0, clip=False) == (-3, -3, 4, 4)
    assert field.box(0, 0) == (0, 0, 4, 4)
    assert field.box(4, 5) == (5, 7, 9, 11)
    with pytest.raises(ValueError, match="outside the 5 x 6 map"):
        field.box(5, 0)


class Pools(nn.Module):
    """3 x 3 conv, F.max_pool2d(3, 1, 1, dilation 2) with positional arguments, F.avg_pool2d(2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)
        self.out = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.avg_pool2d(F.max_pool2d(self.conv(x), 3, 1, 1, 2), 2))


@pytest.mark.parametrize(
    ("net", "layer", "size", "jump", "start"),
    [
        (Pools(), "out", 3 + 4 + 1, 2, -1),
        (nn.Sequential(nn.Conv2d(3, 3, 3, padding="same", dilation=2)), "0", 5, 1, -2),
        (nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.AdaptiveAvgPool2d(4)), "1", 3 + 3, 4, -1),
        (
            nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.AdaptiveMaxPool2d(1)),
            "1",
            3 + 15,
            16,
            -1,
        ),
    ],
)
def test_known_small_values(net: nn.Module, layer: str, size: int, jump: int, start: int) -> None:
    """16 x 16 inputs; sizes worked out by hand."""
    field = receptive_field(net, layer, torch.randn(1, 3, 16, 16))
    assert field.method == "geometry", field.reason
    assert (field.size, field.jump, field.start) == ((size,) * 2, (jump,) * 2, (start,) * 2)


def test_an_adaptive_pool_with_uneven_windows_falls_back() -> None:
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.AdaptiveAvgPool2d(3))
    field = receptive_field(net, "1", torch.randn(1, 3, 16, 16))
    assert field.method == "gradient" and "unknown way" in field.reason


def test_a_squeeze_excitation_gate_is_not_a_spatial_field() -> None:
    """The gate (global pool -> 1 x 1 convs -> sigmoid, broadcast onto the map) weighs
    channels: the field is that of the map it multiplies, not the whole image."""

    class SqueezeExcite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1 = nn.Conv2d(8, 2, 1)
            self.fc2 = nn.Conv2d(2, 8, 1)
            self.out = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
            mean = x.mean((2, 3), keepdim=True)
            return self.out(x * gate + mean)

    field = receptive_field(SqueezeExcite(), "out", torch.randn(1, 3, 32, 32))
    assert field.method == "geometry", field.reason
    assert field.size == (5, 5)
    assert field.box(16, 16) == (14, 14, 19, 19)


# --------------------------------------------------------------------------- known networks


@pytest.mark.parametrize(
    ("name", "layer", "size", "jump", "brute_force"),
    [
        ("vgg16", "features.28", 196, 16, False),  # conv5_3 (brute force: 40 s on 2 CPUs)
        pytest.param("vgg16", "features.30", 212, 32, True, marks=pytest.mark.slow),  # pool5
        ("alexnet", "features.10", 163, 16, True),  # conv5
        ("alexnet", "features.12", 195, 32, True),  # pool5
        ("resnet18", "layer4", 435, 32, True),
        ("resnet18", "layer2.1.relu@0", 83, 8, True),  # after layer2.1.conv1
    ],
)
def test_torchvision_networks(
    name: str, layer: str, size: int, jump: int, brute_force: bool
) -> None:
    """Sizes as published for VGG-16, AlexNet and ResNet-18, and equal to brute force."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    field = receptive_field(model, layer, x)
    assert field.method == "geometry", field.reason
    assert field.size == (size, size) and field.jump == (jump, jump)
    if brute_force:
        assert_matches_brute_force(model, layer, x.shape, field, extra=0)


def test_efficientnet_lite0_block() -> None:
    """Same-padding convs built from an asymmetric ZeroPad2d and F.conv2d."""
    model = cv.load_model("efficientnet_lite0", pretrained=False).module
    x = torch.randn(1, 3, 224, 224)
    field = receptive_field(model, "_blocks.5", x)
    assert field.method == "geometry", field.reason
    assert field.map_size == (14, 14) and field.jump == (16, 16)
    assert_matches_brute_force(model, "_blocks.5", x.shape, field, extra=0)


# --------------------------------------------------------------------------- the model


def _state(model: nn.Module) -> dict[str, object]:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "tensors": {k: (id(v), v.clone()) for k, v in model.state_dict(keep_vars=True).items()},
        "hooks": [hook_dicts_of(m) for m in model.modules()],
        "attributes": [sorted(vars(m)) for m in model.modules()],
    }


def _assert_same(before: dict[str, object], after: dict[str, object]) -> None:
    for key in ("training", "requires_grad", "hooks", "attributes"):
        assert after[key] == before[key], key
    for a, b in zip(after["grad"], before["grad"], strict=True):  # type: ignore[call-overload]
        assert (a is None and b is None) or torch.equal(a, b)
    tensors_after, tensors_before = after["tensors"], before["tensors"]
    assert isinstance(tensors_after, dict) and isinstance(tensors_before, dict)
    assert tensors_after.keys() == tensors_before.keys()
    for name, (ident, value) in tensors_before.items():
        assert tensors_after[name][0] == ident and torch.equal(tensors_after[name][1], value)


class Upsampling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.up = nn.Upsample(scale_factor=2)
        self.out = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.relu(self.down(x))))


class Branching(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 5, stride=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if x.sum() > 0:
            x = -x
        return self.conv2(x)


@pytest.mark.parametrize(
    ("model", "layer"),
    [(TinyCNN(), "conv2"), (Upsampling(), "out"), (Branching(), "conv2")],
)
def test_the_model_is_untouched(model: nn.Module, layer: str) -> None:
    """Train mode, a gradient and a hook of the user's stay as they are (geometry and the
    gradient fallback), checked after the call and from inside it: the user's hook runs in
    the call's forward passes."""
    seeded(model, dtype=torch.float32).train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    checked: list[int] = []
    before: dict[str, object] = {}

    def during(*_: object) -> None:
        _assert_same(before, _state(model))
        checked.append(1)

    model.register_forward_hook(during)
    before.update(_state(model))
    receptive_field(model, layer, torch.randn(1, 3, 16, 16))
    _assert_same(before, _state(model))
    assert checked, "the user's hook never ran: the check inside the call did not happen"


def test_forward_passes_in_other_threads_do_not_notice() -> None:
    """Tracing patches nn.Module process-wide while it runs; the user's forward passes in
    another thread (here of the same model) must give their usual results meanwhile."""
    model = torchvision.models.resnet18(weights=None).eval()
    x, y = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 32, 32)
    fields: list[ReceptiveField] = []
    done = threading.Event()

    def background() -> None:
        try:
            for _ in range(4):
                fields.append(receptive_field(model, "layer3", x))
        finally:
            done.set()

    with torch.no_grad():
        expected = model(y)
    worker = threading.Thread(target=background)
    worker.start()
    calls, failures = 0, []
    with torch.no_grad():
        while not done.is_set():
            try:
                assert torch.equal(model(y), expected)
            except Exception as error:
                failures.append(repr(error))
            calls += 1
    worker.join()
    assert calls > 5 and failures == []
    assert [(f.method, f.size) for f in fields] == [("geometry", (211, 211))] * 4


def test_the_thread_check_is_what_protects_other_threads(monkeypatch) -> None:
    """Without the tracer's thread check the test above fails: it can catch the race."""
    monkeypatch.setattr(ThreadSafeTracer, "_other_thread", lambda self: False)
    with pytest.raises(AssertionError):
        test_forward_passes_in_other_threads_do_not_notice()


# --------------------------------------------------------------------------- fallback


@pytest.mark.parametrize(("model", "layer"), [(Upsampling(), "out"), (Branching(), "conv2")])
def test_the_gradient_fallback(model: nn.Module, layer: str) -> None:
    seeded(model, dtype=torch.float32)
    x = torch.randn(1, 3, 20, 24)
    field = receptive_field(model, layer, x)
    assert field.method == "gradient" and field.reason
    h, w = field.map_size
    top, left, bottom, right = field.box(h // 2, w // 2)
    scale_y, scale_x = 20 / h, 24 / w
    assert top <= (h // 2) * scale_y < bottom and left <= (w // 2) * scale_x < right
    assert (bottom - top, right - left) == field.size
    if isinstance(model, Upsampling):  # conv3 s2 -> nearest x2 -> conv3: 5 to 7 pixels
        assert 5 <= field.size[0] <= 7 and 5 <= field.size[1] <= 7
        assert "unknown" in field.reason
    else:
        assert field.size == (7, 7)  # conv 3 then conv 5 stride 2
        assert "could not trace" in field.reason


# --------------------------------------------------------------------------- bad input


def test_bad_layer_names() -> None:
    model = TinyCNN()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"unknown layer 'conv3'.*Did you mean.*conv2"):
        receptive_field(model, "conv3", x)
    with pytest.raises(ValueError, match=r"ran 1 time\(s\); call @1 does not exist"):
        receptive_field(model, "conv2@1", x)


def test_a_layer_without_a_map() -> None:
    with pytest.raises(ValueError, match=r"outputs shape \(1, 10\), not a map.*before the flatten"):
        receptive_field(TinyCNN(), "fc", torch.randn(1, 3, 16, 16))
