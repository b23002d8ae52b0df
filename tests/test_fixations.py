"""CNN Fixations: the unravelling rules of Mopuri et al., checked against closed forms
(FC sets, max-pool switches, brute-force conv windows), the blob and residual tests, zero
backward passes, and runs on torchvision models with the model left as found."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.fx
import torch.nn.functional as F
import torchvision.models as tvm
from support import TinyCNN, TinyResidual, hook_count, seeded
from torch import nn

import cnnvis_widget as cv
import cnnvis_widget.methods.fixations as fx  # registers "cnn_fixations"


def as_set(points: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in points.tolist()}


# ----------------------------------------------------------------------------- FC step


class FCNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 12)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


def test_fc_step_on_known_weights() -> None:
    a = torch.tensor([[1.0, -2.0, 3.0, 0.0, 0.5]])
    weight = torch.tensor([[1.0, -1.0, -1.0, 5.0, 2.0], [-1.0, -1.0, -1.0, 1.0, -1.0]])
    points = torch.tensor([[0, 0]])
    # r = [1, 2, -3, 0, 1]: the negative activation times a negative weight counts.
    assert as_set(fx._linear_step(a, weight, points, positive=True)) == {(0, 0), (0, 1), (0, 4)}
    assert as_set(fx._linear_step(a, weight, points, positive=False)) == {(0, 1)}
    # Unit 1: r = [-1, 2, -3, 0, -0.5]; both units: the union.
    both = fx._linear_step(a, weight, torch.tensor([[0, 0], [0, 1]]), positive=True)
    assert as_set(both) == {(0, 0), (0, 1), (0, 4)}


def test_fc_net_sets_equal_positive_contributions() -> None:
    model = seeded(FCNet(), seed=3)
    torch.manual_seed(4)
    x = torch.randn(3, 8, dtype=torch.float64)
    targets = [0, 2, 4]
    points = fx.trace_fixations(model, x, targets)
    hidden = torch.relu(model.fc1(x)).detach()
    expected = {
        (b, i)
        for b, t in enumerate(targets)
        for i in range(12)
        if hidden[b, i] * model.fc2.weight[t, i] > 0
    }
    assert expected and as_set(points["relu"]) == expected
    assert as_set(points["fc1"]) == expected  # ReLU passes points through
    units = {(b, j) for b, j in expected}
    expected_input = {
        (b, i) for b, j in units for i in range(8) if x[b, i] * model.fc1.weight[j, i] > 0
    }
    # Every unit has at least one positive contribution, so the set is exact (no fallback).
    assert all(any(x[b, i] * model.fc1.weight[j, i] > 0 for i in range(8)) for b, j in units)
    assert as_set(points["x"]) == expected_input


# ----------------------------------------------------------------------------- pooling


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "dilation", "ceil_mode"),
    [
        (12, 2, 2, 0, 1, False),
        (13, 3, 2, 1, 1, False),
        (13, 3, 2, 0, 1, True),
        (11, 3, 1, 1, 2, False),
        (10, 3, 3, 1, 1, True),
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_step_matches_max_pool2d_indices(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool, ties: bool
) -> None:
    torch.manual_seed(0)
    shape = (2, 3, size, size + 1)
    x = torch.randint(0, 3, shape).double() if ties else torch.randn(shape, dtype=torch.float64)
    pooled, indices = F.max_pool2d(
        x, kernel, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True
    )
    n, c, h, w = pooled.shape
    grid = torch.tensor(list(itertools.product(range(n), range(c), range(h), range(w))))
    moved = fx._pool_step(x, grid, kernel, stride, padding, dilation)
    flat = indices[tuple(grid.T)]
    assert torch.equal(moved[:, :2], grid[:, :2])
    assert torch.equal(moved[:, 2], flat // x.shape[3])
    assert torch.equal(moved[:, 3], flat % x.shape[3])


class PoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.fc = nn.Linear(6 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_max_pool_in_a_model_follows_the_switches() -> None:
    model = seeded(PoolNet())
    torch.manual_seed(2)
    x = torch.randn(2, 3, 15, 15, dtype=torch.float64)
    points = fx.trace_fixations(model, x, [1, 7])
    conv = model.conv(x).detach()
    _, indices = F.max_pool2d(conv, 3, 2, 1, ceil_mode=True, return_indices=True)
    at_pool = points["pool"]
    flat = indices[tuple(at_pool.T)]
    expected = torch.stack([at_pool[:, 0], at_pool[:, 1], flat // 13, flat % 13], 1)
    assert as_set(points["conv"]) == as_set(expected)
    # FC <- flattened 7x7 map: one point (the argmax) per target.
    assert at_pool.shape[0] == 2


def test_adaptive_pool_region_argmax() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 7, 5, dtype=torch.float64)
    out = F.adaptive_avg_pool2d(x, (3, 2))
    grid = torch.tensor(list(itertools.product([0], range(2), range(3), range(2))))
    moved = fx._adaptive_pool_step(x, out, grid)
    for (b, c, y, xx), (_, _, ny, nx) in zip(grid.tolist(), moved.tolist(), strict=True):
        top, bottom = (y * 7) // 3, math.ceil((y + 1) * 7 / 3)
        left, right = (xx * 5) // 2, math.ceil((xx + 1) * 5 / 2)
        region = x[b, c, top:bottom, left:right]
        dy, dx = divmod(int(region.argmax()), region.shape[1])
        assert (ny, nx) == (top + dy, left + dx)


# ----------------------------------------------------------------------------- conv step


def brute_force_conv(x, weight, point, stride, padding, dilation, groups):
    """Reference for one point: explicit zero padding and window slicing."""
    b, c, y, xx = point
    kh, kw = weight.shape[2:]
    padded = F.pad(x, (padding, padding, padding, padding))
    cg = weight.shape[1]
    group = c // (weight.shape[0] // groups)
    span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    block = padded[
        b,
        group * cg : (group + 1) * cg,
        y * stride : y * stride + span_h : dilation,
        xx * stride : xx * stride + span_w : dilation,
    ]
    contribution = block * weight[c]
    channel = int(contribution.sum((1, 2)).argmax())
    inside = torch.zeros_like(contribution[channel], dtype=torch.bool)
    for dy, dx in itertools.product(range(kh), range(kw)):
        row, col = y * stride + dy * dilation - padding, xx * stride + dx * dilation - padding
        inside[dy, dx] = 0 <= row < x.shape[2] and 0 <= col < x.shape[3]
    best = int(contribution[channel].masked_fill(~inside, -math.inf).argmax())
    dy, dx = divmod(best, kw)
    return (
        b,
        group * cg + channel,
        y * stride + dy * dilation - padding,
        xx * stride + dx * dilation - padding,
    )


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "groups"),
    [(3, 1, 1, 1, 1), (7, 2, 3, 1, 1), (3, 2, 0, 1, 2), (3, 1, 1, 1, 4), (3, 1, 2, 2, 1)],
)
def test_conv_step_matches_brute_force(kernel, stride, padding, dilation, groups) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 11, 12, dtype=torch.float64)
    conv = nn.Conv2d(4, 8, kernel, stride, padding, dilation, groups).double()
    out = conv(x).detach()
    grid = torch.tensor(
        list(itertools.product(range(2), range(8), range(out.shape[2]), range(out.shape[3])))
    )
    moved = fx._conv_step(
        x,
        conv.weight.detach(),
        grid,
        (stride, stride),
        (padding, padding),
        (dilation, dilation),
        groups,
        "argmax",
    )
    expected = [
        brute_force_conv(x, conv.weight.detach(), p, stride, padding, dilation, groups)
        for p in grid.tolist()
    ]
    assert [tuple(row) for row in moved.tolist()] == expected
    assert (moved[:, 2] >= 0).all() and (moved[:, 2] < 11).all()
    assert (moved[:, 3] >= 0).all() and (moved[:, 3] < 12).all()


def test_conv_anchor_keeps_the_window_centre() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    weight = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    grid = torch.tensor(list(itertools.product([0], range(6), range(9), range(9))))
    moved = fx._conv_step(x, weight, grid, (1, 1), (1, 1), (1, 1), 1, "anchor")
    assert torch.equal(moved[:, 2:], grid[:, 2:])
    strided = torch.tensor(list(itertools.product([0], range(6), range(5), range(5))))
    moved = fx._conv_step(x, weight, strided, (2, 2), (1, 1), (1, 1), 1, "anchor")
    assert torch.equal(moved[:, 2:], 2 * strided[:, 2:])


# ----------------------------------------------------------------------------- graph rules


class TwoBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 1)
        self.mix = nn.Conv2d(5, 4, 1)
        self.fc = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.mix(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(y.mean((2, 3)))


def test_cat_routes_points_by_channel_offset() -> None:
    model = seeded(TwoBranch())
    torch.manual_seed(1)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    points = fx.trace_fixations(model, x, [0, 5])
    at_cat = points["cat"]
    first = at_cat[at_cat[:, 1] < 2]
    second = at_cat[at_cat[:, 1] >= 2] - torch.tensor([0, 2, 0, 0])
    assert at_cat.shape[0] > 0
    assert as_set(points.get("a", at_cat[:0])) == as_set(first)
    assert as_set(points.get("b", at_cat[:0])) == as_set(second)


def test_residual_follows_the_skip_when_the_branch_is_zeroed() -> None:
    model = seeded(TinyResidual())
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    points = fx.trace_fixations(model, x, [3, 8])
    block = model.block_conv
    # Without zeroing: a point goes to the branch whose value there is larger.
    with torch.no_grad():
        skip = model.relu(model.bn1(model.conv1(x)))
        branch = block(skip)
    at_add = points["add"]
    into_branch = {p for p in as_set(at_add) if branch[p] > skip[p]}
    assert as_set(points.get("block_conv", at_add[:0])) == into_branch
    with torch.no_grad():
        block.weight.zero_()
        block.bias.zero_()
    points = fx.trace_fixations(model, x, [3, 8])
    assert "block_conv" not in points  # nothing enters the zeroed branch
    assert as_set(points["relu"]) == as_set(points["add"])  # the skip carries every point
    assert points["add"].shape[0] > 0
    # Ties (skip = branch = 0 everywhere) also go to the skip, the shallower operand.
    with torch.no_grad():
        model.bn1.bias.fill_(-1e3)
        assert float(model.relu(model.bn1(model.conv1(x))).abs().max()) == 0.0
    points = fx.trace_fixations(model, x, [3, 8])
    assert "block_conv" not in points and points["add"].shape[0] > 0


def test_blob_fixations_lie_on_the_blob() -> None:
    model = seeded(TinyCNN(), seed=5)
    with torch.no_grad():
        for conv in (model.conv1, model.conv2):
            conv.weight.abs_()
        model.fc.weight.abs_()
    x = torch.zeros(2, 3, 40, 40, dtype=torch.float64)
    blobs = [(10, 16, 22, 28), (27, 33, 5, 11)]  # 6x6: rows [top, bottom), columns [left, right)
    for sample, (top, bottom, left, right) in enumerate(blobs):
        x[sample, :, top:bottom, left:right] = 1.0
    points = fx.fixation_points(model, x, target=[2, 6])
    for found, (top, bottom, left, right) in zip(points, blobs, strict=True):
        kept = fx.remove_outliers(found, 40, 40).double()
        assert kept.shape[0] > 0
        # Euclidean distance to the blob: inside its 3-px dilation means <= 3.
        dy = (top - kept[:, 0]).clamp(min=0) + (kept[:, 0] - (bottom - 1)).clamp(min=0)
        dx = (left - kept[:, 1]).clamp(min=0) + (kept[:, 1] - (right - 1)).clamp(min=0)
        assert float((dy**2 + dx**2).sqrt().max()) <= 3.0
    heat = cv.attribute(model, x, "cnn_fixations", sigma=2.0)
    for sample, (top, bottom, left, right) in enumerate(blobs):
        peak = divmod(int(heat[sample, 0].argmax()), 40)
        assert top <= peak[0] < bottom and left <= peak[1] < right


# ----------------------------------------------------------------------------- no gradients


class CountingIdentity(torch.autograd.Function):
    forward_calls = 0
    backward_calls = 0

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        CountingIdentity.forward_calls += 1
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        CountingIdentity.backward_calls += 1
        return grad


def counted(x: torch.Tensor) -> torch.Tensor:
    return CountingIdentity.apply(x)


torch.fx.wrap("counted")  # a graph node of its own, so the traced forward really calls it


class CountedCNN(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(counted(self.conv1(x))))
        x = counted(self.relu2(self.conv2(x)))
        return self.fc(self.gap(x).flatten(1))


def test_zero_backward_passes_and_points_in_bounds(monkeypatch, tiny_input) -> None:
    model = seeded(CountedCNN())
    # The counter works: a real backward through the model increments it.
    model(tiny_input.clone().requires_grad_(True)).sum().backward()
    assert CountingIdentity.backward_calls == 2
    model.zero_grad(set_to_none=True)
    CountingIdentity.forward_calls = CountingIdentity.backward_calls = 0

    monkeypatch.setattr(fx, "PASSTHROUGH_FUNCTIONS", {counted})

    def forbidden(*args, **kwargs):
        raise AssertionError("CNN Fixations must not run a backward pass")

    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.Tensor, "backward", forbidden)

    x = tiny_input.clone().requires_grad_(True)
    heat = cv.attribute(model, x, "cnn_fixations", target=[1, 4, 9])
    assert CountingIdentity.forward_calls == 2  # exactly one forward pass
    assert CountingIdentity.backward_calls == 0
    assert not heat.requires_grad and heat.grad_fn is None
    assert all(p.grad is None for p in model.parameters())

    with torch.no_grad():
        again = cv.attribute(model, x, "cnn_fixations", target=[1, 4, 9])
    with torch.autograd.set_grad_enabled(False):
        points = fx.fixation_points(model, x, target=[1, 4, 9])
    assert torch.equal(heat, again)
    for p in points:
        assert p.shape[1] == 2 and p.shape[0] > 0
        assert (p >= 0).all() and (p[:, 0] < 16).all() and (p[:, 1] < 16).all()
    assert CountingIdentity.backward_calls == 0


# ----------------------------------------------------------------------------- heatmap


def test_heatmap_outliers_and_scaling() -> None:
    cluster = torch.tensor([[20 + i % 5, 30 + i // 5] for i in range(25)])
    far = torch.tensor([[90, 2]])
    points = torch.cat([cluster, far])
    kept = fx.remove_outliers(points, 100, 100)
    assert as_set(kept) == as_set(cluster)  # 1 neighbour (itself) is not > 5% of 26
    heat = fx.fixation_map(points, 100, 100, sigma=5.0)
    assert heat.shape == (100, 100) and float(heat.max()) == pytest.approx(1.0)
    assert float(heat.min()) >= 0 and float(heat[90, 2]) < 1e-3
    y, x = divmod(int(heat.argmax()), 100)
    assert 20 <= y < 25 and 30 <= x < 35
    impulses = fx.fixation_map(cluster, 100, 100, sigma=0.0)
    assert int((impulses > 0).sum()) == 25 and float(impulses.max()) == 1.0
    assert float(fx.fixation_map(cluster[:0], 100, 100).abs().sum()) == 0.0


# ----------------------------------------------------------------------------- errors


class UpsampleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.up = nn.Upsample(scale_factor=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.up(self.conv(x)).mean((2, 3)))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return self.fc(x.mean((2, 3)))


def test_unsupported_layers_raise_clearly(tiny_input) -> None:
    model = UpsampleNet().double()
    with pytest.raises(NotImplementedError, match=r"Upsample module 'up'.*UpsampleNet.*supported"):
        cv.attribute(model, tiny_input, "cnn_fixations")
    assert hook_count(model) == 0
    with pytest.raises(NotImplementedError, match="could not trace"):
        cv.attribute(DataDependent().double(), tiny_input, "cnn_fixations")
    with pytest.raises(ValueError, match="conv_position"):
        cv.attribute(seeded(TinyCNN()), tiny_input, "cnn_fixations", conv_position="centre")


# ----------------------------------------------------------------------------- real models


@pytest.mark.parametrize(
    ("arch", "size"),
    [
        ("resnet18", 96),
        ("resnet50", 64),
        ("vgg11", 64),
        ("alexnet", 64),
        ("googlenet", 96),
    ],
)
def test_torchvision_models(arch: str, size: int) -> None:
    torch.manual_seed(0)
    kwargs = {"init_weights": False, "transform_input": True} if arch == "googlenet" else {}
    model = tvm.get_model(arch, weights=None, **kwargs)
    model.train()
    model.get_submodule(next(n for n, _ in model.named_children())).eval()  # mixed flags
    flags = {name: m.training for name, m in model.named_modules()}
    state = copy.deepcopy(model.state_dict())
    structure = {name: (set(vars(m)), list(m.children())) for name, m in model.named_modules()}
    x = torch.randn(2, 3, size, size)
    heat = cv.attribute(model, x, "cnn_fixations", target=[3, 500])
    assert heat.shape == x.shape and heat.dtype == x.dtype
    assert float(heat.min()) >= 0
    assert torch.allclose(heat.flatten(1).amax(1), torch.ones(2))
    assert torch.equal(heat[:, 0], heat[:, 2])  # same value in every channel
    points = fx.fixation_points(model, x, target=[3, 500], conv_position="anchor")
    for p in points:
        assert p.shape[0] > 0 and (p >= 0).all() and (p < size).all()
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert hook_count(model) == 0
    # Traced, not modified: no attribute added or removed, the same submodules.
    assert {name: (set(vars(m)), list(m.children())) for name, m in model.named_modules()} == (
        structure
    )
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_targets_change_the_fixations(residual, tiny_input) -> None:
    first = fx.fixation_points(residual, tiny_input[:1].expand(2, -1, -1, -1), target=[0, 0])
    assert as_set(first[0]) == as_set(first[1])  # samples are independent
    maps = cv.attribute(residual, tiny_input, "cnn_fixations", target=[0, 1, 2])
    predicted = cv.attribute(residual, tiny_input, "cnn_fixations")
    targets = residual(tiny_input).argmax(1).tolist()
    assert torch.equal(
        predicted, cv.attribute(residual, tiny_input, "cnn_fixations", target=targets)
    )
    assert maps.shape == tiny_input.shape


@pytest.mark.slow
def test_real_efficientnet_lite0(lite0) -> None:
    x = torch.cat([lite0.preprocess(cv.sample_image(n)) for n in ["cat", "coffee"]])
    heat = cv.attribute(lite0.module, x, "cnn_fixations", target=[281, 967])
    assert heat.shape == x.shape and float(heat.min()) >= 0
    assert torch.allclose(heat.flatten(1).amax(1), torch.ones(2, dtype=heat.dtype))
    for p in fx.fixation_points(lite0.module, x):
        assert p.shape[0] > 0 and (p >= 0).all() and (p < 224).all()
    assert hook_count(lite0.module) == 0


# ------------------------------------------------- TF-style "same" padding (EfficientNet-Lite)


class TFSameNet(nn.Module):
    """Four TF-"same" stride-2 stages as EfficientNet-Lite builds them: an asymmetric
    ``ZeroPad2d`` (one more row and column at the bottom / right) before an unpadded conv,
    then ReLU6; global average pool and a linear head. Positive averaging weights: the
    evidence for class 0 is wherever the input is bright."""

    def __init__(self) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        for channels_in in (1, 2, 2, 2):
            conv = nn.Conv2d(channels_in, 2, 3, stride=2, bias=False)
            nn.init.constant_(conv.weight, 1.0 / (9 * channels_in))
            stages += [nn.ZeroPad2d((0, 1, 0, 1)), conv, nn.ReLU6()]
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.mark.parametrize(
    ("top", "left", "size"), [(16, 16, 32), (24, 8, 32), (4, 30, 28), (34, 34, 30)]
)
def test_fixations_through_asymmetric_padding_stay_inside_a_flat_blob(
    top: int, left: int, size: int
) -> None:
    """A uniform square on black, also against the padded bottom-right border. Every window
    inside a flat blob ties; plain argmax took each window's top-left position and the
    fixation ended on the blob's top-left corner (16, 16 for the centred blob), the drift that
    put 15% of Lite0's fixations on the cat photo into its top 20 rows. The fixation must lie
    well inside the blob, at least a quarter of its size from every edge."""
    model = TFSameNet().eval()
    x = torch.zeros(1, 1, 64, 64)
    x[..., top : top + size, left : left + size] = 1.0
    points = fx.trace_fixations(model, x, [0])["x"]
    assert points.shape[0] > 0
    margin = size // 4 - 1
    for _, _, y, x_ in points.tolist():
        assert top + margin <= y <= top + size - 1 - margin, (y, x_)
        assert left + margin <= x_ <= left + size - 1 - margin, (y, x_)
    heat = cv.attribute(model, x, "cnn_fixations", target=0)[0, 0]
    assert heat[top : top + size, left : left + size].sum() > 0.5 * heat.sum()


def test_a_handful_of_spread_fixations_is_kept_rather_than_emptied() -> None:
    """The outlier rule drops fixations with too few neighbours; when that would drop all
    (``conv_position="anchor"`` on Lite0 gave about 50 spread points and an all-zero map on
    every photo), all are kept."""
    spread = torch.tensor([[0, 0, 5, 5], [0, 0, 200, 30], [0, 0, 100, 210], [0, 0, 30, 120]])
    assert torch.equal(fx.remove_outliers(spread, 224, 224), spread)
    clustered = torch.cat([spread[:1].repeat(40, 1), spread[1:2]])
    assert fx.remove_outliers(clustered, 224, 224).shape[0] == 40
