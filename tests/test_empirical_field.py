"""Empirical receptive fields (Zhou et al. 2015, sec. 3.2): exact zeros outside the theoretical
field, a closed form on a single convolution computed independently here, the number of
occluded copies, a Gaussian unit whose field shrinks with sigma, the user's model untouched
during the call, stop, the segments and the per-layer table."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from support import hook_count
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.empirical_field import (
    EmpiricalField,
    empirical_fields,
    empirical_receptive_field,
    field_extent,
    field_segments,
)
from cnnvis_widget.models import Preprocess
from cnnvis_widget.receptive_field import receptive_field

matplotlib.use("Agg")

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)


def _pre(size: tuple[int, int], channels: int = 3) -> Preprocess:
    mean, std = (MEAN, STD) if channels == 3 else ((0.5,), (0.25,))
    return Preprocess(input_size=size, mean=mean, std=std, resize=min(size))


def _stack(seed: int = 0) -> nn.Module:
    """conv 3x3 -> ReLU -> max-pool 2 -> conv 3x3 -> ReLU -> conv 3x3: field 12 x 12, jump 2."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1),
    ).double().eval()  # fmt: skip


def _run(model: nn.Module, layer: str, unit: int, x: torch.Tensor, **kwargs) -> EmpiricalField:
    size = (int(x.shape[2]), int(x.shape[3]))
    settings = {"progress": False, "preprocess": _pre(size, int(x.shape[1])), **kwargs}
    return empirical_receptive_field(model, layer, unit, x, **settings)


def _noise(seed: int, images: int, positions: int, channels: int, patch: int) -> list:
    """The documented noise: one generator seeded with ``seed``, (positions, C, p, p) uniform
    [0, 1) per image in order."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.rand((positions, channels, patch, patch), generator=generator) for _ in range(images)
    ]


# ----------------------------------------------------------------------------- geometry


def test_occluders_outside_the_theoretical_field_change_nothing() -> None:
    model, patch, stride = _stack(), 5, 2
    x = torch.randn(3, 3, 36, 36, dtype=torch.float64)
    whole = _run(model, "5", 1, x, patch=patch, stride=stride, restrict=False)
    theory = receptive_field(model, "5", x[:1])
    assert theory.method == "geometry" and theory.size == (12, 12)
    tops = np.arange(0, 36 - patch + 1, stride)
    outside_seen = 0
    for grid, (py, px) in zip(whole.discrepancies, whole.peaks, strict=True):
        top, left, bottom, right = theory.box(int(py), int(px))
        rows = (tops < bottom) & (tops + patch > top)
        cols = (tops < right) & (tops + patch > left)
        outside = ~(rows[:, None] & cols[None, :])
        assert np.all(grid[outside] == 0.0)  # exactly: the unit never reads those pixels
        assert np.all(grid[~outside] >= 0) and grid[~outside].max() > 0
        outside_seen += int(outside.sum())
    assert outside_seen > 0
    # The empirical field lies inside the theoretical field dilated by the patch.
    cy = int(whole.centres[0][0])
    top, left, bottom, right = theory.box(
        int(whole.peaks[0][0]), int(whole.peaks[0][1]), clip=False
    )
    cx = int(whole.centres[0][1])
    low_y, low_x = top - cy - (patch - 1), left - cx - (patch - 1)
    high_y, high_x = bottom - cy + (patch - 1), right - cx + (patch - 1)
    support = np.argwhere(np.nan_to_num(whole.mean_map) > 0) - np.array(whole.centre)
    assert support[:, 0].min() >= low_y and support[:, 0].max() < high_y
    assert support[:, 1].min() >= low_x and support[:, 1].max() < high_x
    b_top, b_left, b_bottom, b_right = whole.box
    assert low_y <= b_top < b_bottom <= high_y and low_x <= b_left < b_right <= high_x
    # Restricted to the field (on crops): the same discrepancies, fewer copies.
    fast = _run(model, "5", 1, x, patch=patch, stride=stride)
    assert all(fast.cropped) and fast.copies < whole.copies
    np.testing.assert_allclose(fast.discrepancies, whole.discrepancies, rtol=1e-9, atol=1e-12)
    assert fast.size == whole.size


def test_a_crop_that_changes_the_unit_falls_back_to_the_whole_image() -> None:
    """A global gate (squeeze-excitation) makes every pixel matter although the theoretical
    field leaves it out: the crop's value differs, so every occluder runs on the image."""

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)
            self.out = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.out(y * torch.sigmoid(x.mean((2, 3), keepdim=True)[:, :2]))

    torch.manual_seed(0)
    model = Gated().double().eval()
    x = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    restricted = _run(model, "out", 0, x, patch=3, stride=3)
    whole = _run(model, "out", 0, x, patch=3, stride=3, restrict=False)
    assert not any(restricted.cropped) and restricted.copies == whole.copies
    np.testing.assert_array_equal(restricted.discrepancies, whole.discrepancies)
    assert (whole.discrepancies > 0).all()  # the gate sees every occluder


def test_closed_form_on_a_single_convolution() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 2, 5, padding=1).double().eval()
    x = torch.randn(2, 3, 20, 23, dtype=torch.float64)
    patch, stride, seed, unit = 4, 3, 7, 1
    model = nn.Sequential(conv)
    field = _run(model, "0", unit, x, patch=patch, stride=stride, seed=seed, restrict=False)
    gy, gx = (20 - patch) // stride + 1, (23 - patch) // stride + 1
    assert field.positions == gy * gx == 6 * 7
    assert field.copies == 2 * gy * gx
    assert field.discrepancies.shape == (2, gy, gx)
    weight = conv.weight.detach()[unit]  # (3, 5, 5)
    mean = torch.tensor(MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(3, 1, 1)
    noises = _noise(seed, 2, gy * gx, 3, patch)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        out = torch.nn.functional.conv2d(x[i : i + 1], conv.weight, conv.bias, padding=1)[0, unit]
        py, px = divmod(int(out.argmax()), out.shape[1])
        assert tuple(field.peaks[i]) == (py, px)
        for n in range(gy * gx):
            r, c = divmod(n, gx)
            delta = torch.zeros_like(padded[0])  # (x - noise) inside the occluder, 0 elsewhere
            occluder = (noises[i][n].double() - mean) / std
            top, left = r * stride + 1, c * stride + 1  # in the padded image
            delta[:, top : top + patch, left : left + patch] = (
                padded[i, :, top : top + patch, left : left + patch] - occluder
            )
            window = delta[:, py : py + 5, px : px + 5]  # what output (py, px) reads
            expected = abs(float((weight * window).sum()))
            assert field.discrepancies[i, r, c] == pytest.approx(expected, abs=1e-10)


def test_pixel_maps_average_the_covering_occluders() -> None:
    model, patch, stride = _stack(2), 5, 3
    x = torch.randn(1, 3, 18, 18, dtype=torch.float64)
    field = _run(model, "5", 0, x, patch=patch, stride=stride, restrict=False)
    grid = field.discrepancies[0]
    tops = np.arange(0, 18 - patch + 1, stride)  # 0, 3, ..., 12: row 17 is covered by none
    for y, x_ in [(0, 0), (4, 7), (8, 3), (15, 15)]:
        covering = [
            grid[r, c] for r, t in enumerate(tops) for c, left in enumerate(tops)
            if t <= y < t + patch and left <= x_ < left + patch
        ]  # fmt: skip
        assert field.maps[0, y, x_] == pytest.approx(np.mean(covering), rel=1e-6)
    assert np.isnan(field.maps[0, 17]).all() and np.isnan(field.maps[0, :, 17]).all()
    assert not np.isnan(field.maps[0, :17, :17]).any()


def test_gaussian_unit_field_shrinks_with_sigma() -> None:
    """A unit whose kernel is a Gaussian: the empirical field (half maximum) grows with sigma
    (sizes with seeds 0-3: sigma 1 -> 3-5 px, 3 -> 5-8 px, 6 -> 12-14 px)."""
    side, sizes = 21, []
    grid = torch.arange(side, dtype=torch.float64) - side // 2
    x = torch.rand(4, 1, 36, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigma in (1.0, 3.0, 6.0):
        conv = nn.Conv2d(1, 1, side, padding=side // 2, bias=False).double().eval()
        with torch.no_grad():
            conv.weight.copy_(torch.exp(-(grid[:, None] ** 2 + grid[None] ** 2) / (2 * sigma**2)))
        field = _run(nn.Sequential(conv), "0", 0, x, patch=3, stride=2)
        sizes.append(field.size)
    assert sizes[0][0] < sizes[1][0] < sizes[2][0]
    assert sizes[0][1] < sizes[1][1] < sizes[2][1]
    assert all(h <= side + 2 and w <= side + 2 for h, w in sizes)


def test_field_extent_rule() -> None:
    canvas = np.full((9, 9), np.nan)
    canvas[2:7, 2:7] = 0.1
    canvas[3:6, 4:6] = 1.0  # the peak region: 3 x 2, right of the centre
    canvas[0, 0] = 0.9  # above the threshold but not connected to the peak
    size, region, box = field_extent(canvas, 0.5)
    assert size == (3, 2) and box == (-1, 0, 2, 2) and region.sum() == 6
    assert field_extent(canvas, 0.05)[0] == (5, 5)
    assert field_extent(np.zeros((5, 5)), 0.5)[0] == (0, 0)


# ----------------------------------------------------------------------------- rules


def test_model_untouched_during_and_after_the_call() -> None:
    model = _stack(3).train()
    model[0].weight.requires_grad_(True)
    model[3].register_forward_hook(lambda *_: None)
    before = ([m.training for m in model.modules()], hook_count(model))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def during(done: int, total: int) -> bool:
        seen.append(([m.training for m in model.modules()], hook_count(model)))
        return False

    x = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    _run(model, "5", 0, x, patch=5, stride=4, batch_size=8, restrict=False, should_stop=during)
    assert len(seen) > 2 and all(state == before for state in seen)
    assert ([m.training for m in model.modules()], hook_count(model)) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_stop_returns_the_images_finished() -> None:
    model, calls = _stack(4), []
    x = torch.randn(3, 3, 24, 24, dtype=torch.float64)

    def stop_in_second_image(done: int, total: int) -> bool:
        calls.append((done, total))
        return done > total // 3

    field = _run(model, "5", 0, x, patch=5, stride=2, batch_size=16, restrict=False,
                 should_stop=stop_in_second_image)  # fmt: skip
    assert not field.complete and field.images == 1 and field.maps.shape[0] == 1
    assert calls[-1][1] == 3 * field.positions and calls[-1][0] < 2 * field.positions
    full = _run(model, "5", 0, x[:1], patch=5, stride=2, restrict=False)
    np.testing.assert_array_equal(field.discrepancies, full.discrepancies)


def test_bad_arguments_are_named() -> None:
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    for patch in (20, 9):
        with pytest.raises(ValueError, match=f"patch={patch} is more than half the 16 x 16"):
            _run(_stack(), "5", 0, x, patch=patch)
    with pytest.raises(ValueError, match=r"units 0\.\.2"):
        _run(_stack(), "5", 7, x, patch=5)
    with pytest.raises(ValueError, match="either images"):
        empirical_receptive_field(_stack(), "5", 0)


# ----------------------------------------------------------------------------- display, table


def test_segments_put_the_field_at_each_peak() -> None:
    x = torch.rand(2, 3, 28, 28, dtype=torch.float64)
    pre = _pre((28, 28))
    field = _run(_stack(5), "5", 2, pre.normalize(x), patch=3, stride=1)
    segments = field_segments(field)
    assert segments.masks.shape == (2, 28, 28) and segments.images.shape == (2, 28, 28, 3)
    for i, (cy, cx) in enumerate(field.centres):
        top, left, bottom, right = field.box
        expected = np.zeros((28, 28), dtype=bool)
        expected[max(cy + top, 0) : cy + bottom, max(cx + left, 0) : cx + right] = True
        assert not (segments.masks[i] & ~expected).any()  # inside the region's box at the peak
        assert segments.masks[i][min(cy, 27), min(cx, 27)] or not (0 <= cy < 28)
        outside = ~segments.masks[i]
        np.testing.assert_array_equal(
            segments.images[i][outside], np.round(field.pixels[i][outside] * 0.2).astype(np.uint8)
        )
        np.testing.assert_array_equal(segments.images[i][~outside], field.pixels[i][~outside])
    expected_pixels = np.round(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    assert np.abs(field.pixels.astype(int) - expected_pixels.astype(int)).max() <= 1


def test_table_per_layer_on_an_atlas() -> None:
    model = _stack(6).float()
    data = [torch.rand(3, 24, 24) for _ in range(6)]
    pre = _pre((24, 24))
    atlas = cv.unit_atlas(model, data, ["1", "5"], k=2, progress=False, preprocess=pre)
    table = empirical_fields(model, atlas, data, ["1", "5"], sample=2, patch=3, stride=2,
                             progress=False, preprocess=pre)  # fmt: skip
    assert table.complete and [r.layer for r in table.rows] == ["1", "1", "5", "5"]
    assert all(r.images == 2 and r.theoretical == (3, 3) for r in table.rows[:2])
    assert all(r.theoretical == (12, 12) for r in table.rows[2:])
    first = table.fields[0]
    assert first.indices == [e.index for e in atlas.top("1", table.rows[0].unit)]
    summary = table.summary()
    assert [s["layer"] for s in summary] == ["1", "5"]
    assert summary[1]["theoretical"] == pytest.approx(12.0)
    assert summary[1]["ratio"] == pytest.approx(summary[1]["empirical"] / 12.0)
    sides = [math.sqrt(h * w) for h, w in (r.empirical for r in table.rows[2:])]
    assert summary[1]["empirical"] == pytest.approx(np.mean(sides))
    text = table.to_markdown()
    assert "| `5` | 2 | 12 |" in text and "theoretical (h x w)" in text
    figure = table.plot()
    assert len(figure.axes[0].get_xticklabels()) == 2


def test_an_atlas_of_other_data_or_another_model_is_refused() -> None:
    model = _stack(6).float()
    data = [torch.rand(3, 24, 24) for _ in range(6)]
    pre = _pre((24, 24))
    atlas = cv.unit_atlas(model, data, ["1"], k=2, progress=False, preprocess=pre)
    other = [*data[:3], torch.rand(3, 24, 24), *data[4:]]  # one image in the middle changed
    unit = 0
    with pytest.raises(ValueError, match="not the data set this atlas was computed on"):
        empirical_receptive_field(model, "1", unit, atlas=atlas, data=other, preprocess=pre)
    with pytest.raises(ValueError, match="not the data set this atlas was computed on"):
        empirical_fields(model, atlas, data[:5], ["1"], sample=1, progress=False, preprocess=pre)
    changed = _stack(7).float()
    with pytest.raises(ValueError, match="another model"):
        empirical_receptive_field(changed, "1", unit, atlas=atlas, data=data, preprocess=pre)
