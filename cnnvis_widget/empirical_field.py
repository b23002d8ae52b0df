"""Empirical receptive fields (Zhou, Khosla, Lapedriza, Oliva, Torralba, "Object Detectors Emerge
in Deep Scene CNNs", ICLR 2015, arXiv 1412.6856, section 3.2): where in the input a unit
actually looks, measured by occlusion, as opposed to the theoretical field
(:mod:`cnnvis_widget.receptive_field`) that bounds what it *can* see.

For each of the unit's top images, a small patch of random noise is slid over the image in a
dense grid (11 x 11 px, stride 3 in the paper); each occluded copy goes through the network
and the discrepancy ``D = |a - a_occ|`` of the unit's activation at its peak map position (its
argmax on the original image) is recorded. Each image's discrepancies become a map in input
pixels, the maps are re-centred on the unit's peak and averaged: the empirical field. Its
size is read by a threshold (:func:`field_extent`). docs/empirical_receptive_field.md says
what was checked against the paper and gives the numbers measured on EfficientNet-Lite0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label
from torch import nn
from tqdm.auto import tqdm

from .atlas.result import UnitAtlas
from .capture import capture, resolve_layer
from .checks import check_flag, check_int, check_module, check_number
from .dataset_pass import model_and_preprocess, split_item
from .model_io import to_model_input
from .model_view import engine_call, eval_view
from .models import AnyPreprocess, ModelBundle
from .receptive_field import ReceptiveField, receptive_field

PATCH = 11
"""Side of the noise occluder, input pixels (the paper's 11 x 11, on 227 px AlexNet inputs)."""
STRIDE = 3
"""Input pixels between neighbouring occluder positions (the paper's dense grid, stride 3)."""
FRACTION = 0.5
"""Default threshold of :func:`field_extent`, a fraction of the averaged map's maximum (our
choice: the paper does not state how it read the sizes of its table)."""
DIM = 0.2
"""Brightness kept outside the field in :func:`field_segments` (the authors' segmentation
code, cnnvisualizer/generate_unitsegments.m, keeps 0.2)."""
CROP_TOLERANCE = 1e-4
"""Relative agreement (to the unit's largest |activation| on the image) that the unit's value
on a crop around its theoretical field must reach for the crop to stand in for the image."""

StopCheck = Callable[[int, int], bool]
"""``should_stop(positions_done, positions_total) -> bool``, asked after every batch."""


@dataclass(frozen=True)
class EmpiricalField:
    """The empirical receptive field of channel ``unit`` of ``layer``, from ``n`` images.

    Coordinates are input pixels. ``mean_map`` is the average of the images' discrepancy maps
    re-centred on the unit's peak: shape ``(2H - 1, 2W - 1)``, the peak's centre at
    :attr:`centre` ``= (H - 1, W - 1)``; NaN where no image reaches (the mean at each pixel is
    over the images that cover it). ``size`` / ``region`` / ``box`` are read from it by
    :func:`field_extent` with ``fraction``; :meth:`extent` reads them at another fraction.
    """

    layer: str
    unit: int
    patch: int
    stride: int
    seed: int
    fraction: float
    mean_map: np.ndarray
    """(2H - 1, 2W - 1) float32: the averaged re-centred discrepancy map."""
    maps: np.ndarray
    """(n, H, W) float32: each image's discrepancy map (at each pixel the mean D of the
    occluders that cover it; NaN where none does: the last rows / columns when the grid does
    not reach the border)."""
    discrepancies: np.ndarray
    """(n, gy, gx) float64: D of the occluder whose top-left corner is at
    (i * stride, j * stride), per image."""
    peaks: np.ndarray
    """(n, 2) int: the unit's argmax (y, x) in the layer's map, per image."""
    centres: np.ndarray
    """(n, 2) int: the input pixel (y, x) the map is re-centred on: the centre of the peak's
    theoretical field (``first + size // 2`` per axis, unclipped)."""
    values: np.ndarray
    """(n,) float32: the unit's activation at its peak, on the image without an occluder."""
    pixels: np.ndarray
    """(n, H, W, C) uint8: the images as the model sees them (for :func:`field_segments`)."""
    indices: list[int] | None
    """The images' dataset indices (from an atlas), else None."""
    theoretical: ReceptiveField
    size: tuple[int, int]
    """(height, width) of the empirical field: the bounding box of :attr:`region`."""
    region: np.ndarray
    """(2H - 1, 2W - 1) bool: the connected part of ``mean_map >= fraction * max`` that holds
    the map's maximum."""
    box: tuple[int, int, int, int]
    """(top, left, bottom, right) of :attr:`region`, relative to the peak's centre (bottom /
    right exclusive); (0, 0, 0, 0) when the map is zero everywhere."""
    positions: int
    """Occluder positions per image: ``(floor((H - patch) / stride) + 1) * (same for W)``."""
    copies: int
    """Occluded copies that went through the network (all images; positions whose occluder
    misses the theoretical field are not run when ``restrict``, their D is 0)."""
    cropped: list[bool] = field(default_factory=list)
    """Per image: whether the copies ran on a crop around the theoretical field."""
    complete: bool = True
    """False when ``should_stop`` ended the run: the field holds the images finished so far."""

    @property
    def centre(self) -> tuple[int, int]:
        """Where the peak's centre lies in :attr:`mean_map`."""
        return (self.mean_map.shape[0] - 1) // 2, (self.mean_map.shape[1] - 1) // 2

    @property
    def theoretical_size(self) -> tuple[int, int]:
        """(height, width) of the theoretical field, before clipping to the image."""
        return int(self.theoretical.size[0]), int(self.theoretical.size[1])

    @property
    def images(self) -> int:
        return int(self.maps.shape[0])

    def extent(
        self, fraction: float
    ) -> tuple[tuple[int, int], np.ndarray, tuple[int, int, int, int]]:
        """(size, region, box) of the field read at another ``fraction`` (see
        :func:`field_extent`)."""
        return field_extent(self.mean_map, fraction)


def field_extent(
    mean_map: np.ndarray, fraction: float = FRACTION
) -> tuple[tuple[int, int], np.ndarray, tuple[int, int, int, int]]:
    """How the empirical field's size is read: the pixels where ``mean_map >= fraction *
    max(mean_map)`` (NaN ignored), of them the 8-connected part that holds the maximum, and
    that part's bounding box. Returns ((height, width), region (bool, like ``mean_map``),
    box (top, left, bottom, right) relative to the map's centre). A map whose maximum is not
    positive (the unit never changed) has size (0, 0)."""
    check_number("fraction", fraction, low=0, high=1, low_open=True, high_open=True)
    values = np.nan_to_num(np.asarray(mean_map, dtype=np.float64), nan=-np.inf)
    empty = np.zeros(values.shape, dtype=bool)
    if values.size == 0 or not np.isfinite(values).any() or values.max() <= 0:
        return (0, 0), empty, (0, 0, 0, 0)
    peak = np.unravel_index(int(np.argmax(values)), values.shape)
    labels = label(values >= fraction * values.max(), connectivity=2)
    region = labels == labels[peak]
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    cy, cx = (values.shape[0] - 1) // 2, (values.shape[1] - 1) // 2
    box = (int(rows[0]) - cy, int(cols[0]) - cx, int(rows[-1]) + 1 - cy, int(cols[-1]) + 1 - cx)
    return (box[2] - box[0], box[3] - box[1]), region, box


def occluder_grid(size: int, patch: int, stride: int) -> np.ndarray:
    """First pixels of the occluders along one axis: 0, stride, ... up to ``size - patch``
    (``floor((size - patch) / stride) + 1`` positions; occluders never cross the border)."""
    return np.arange(0, size - patch + 1, stride)


def occluder_noise(
    generator: torch.Generator, positions: int, channels: int, patch: int
) -> torch.Tensor:
    """One image's noise patches, uniform in [0, 1) raw pixel units: ``torch.rand((positions,
    channels, patch, patch), generator=generator)``, drawn for every position (run or not),
    image after image from one generator seeded with ``seed``."""
    return torch.rand((positions, channels, patch, patch), generator=generator)


@engine_call
def empirical_receptive_field(
    model: ModelBundle | nn.Module,
    layer: str,
    unit: int,
    images: Any = None,
    *,
    atlas: UnitAtlas | None = None,
    data: Any = None,
    patch: int = PATCH,
    stride: int = STRIDE,
    k: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    fraction: float = FRACTION,
    restrict: bool = True,
    progress: bool = True,
    should_stop: StopCheck | None = None,
    preprocess: AnyPreprocess | None = None,
) -> EmpiricalField:
    """The empirical receptive field of channel ``unit`` of ``layer`` (Zhou et al. 2015, sec.
    3.2), over ``images`` or, with ``atlas`` and ``data`` (the data set the atlas was computed
    on), over the unit's top-``k`` images of the atlas (default: all it kept).

    ``images``: a model input tensor (N, C, H, W) (already normalized), or a sequence of images
    (PIL, arrays, paths) that ``preprocess`` (default: the bundle's) turns into model inputs.
    For each image, the unit's peak is its argmax over the layer's map on the image. An
    occluder of ``patch`` x ``patch`` pixels of uniform noise, drawn in raw [0, 1] pixel space
    and normalized with the preprocess (:func:`occluder_noise`, seeded by ``seed``), is put at
    every position of a grid with ``stride`` (:func:`occluder_grid`); D is ``|a - a_occ|`` of
    the unit at its peak. Pixel maps, re-centring, averaging and the size: see
    :class:`EmpiricalField` and :func:`field_extent` (``fraction``).

    Occluded copies go through the network in batches of ``batch_size`` on an eval view of the
    model (never changed), on its device, without autograd, the forward stopped after the
    layer. With ``restrict`` (default) only the occluders that overlap the peak's theoretical
    field run, on a crop of the image around that field (aligned to the layer's grid); the
    others have D = 0, which is exact where the theoretical field is. The crop is used only if
    the unit's value on it equals the value on the whole image (to ``CROP_TOLERANCE``);
    otherwise (a squeeze-excitation gate, a size-dependent padding, a field found by the
    gradient fallback) every occluder runs on the whole image, as ``restrict=False`` does.

    ``should_stop(done, total)`` (occluder positions, all images) is asked after every batch;
    a stop returns the field of the images finished so far with ``complete=False``.
    """
    if (images is None) == (atlas is None):
        raise ValueError(
            "pass either images (a model input tensor or a list of images) or atlas= with "
            "data= (the data set the atlas was computed on) to use the unit's top images."
        )
    module, prepare = model_and_preprocess(model, preprocess)
    check_module(module)
    resolve_layer(module, layer)
    check_int("unit", unit, low=0)
    check_int("patch", patch, low=1)
    check_int("stride", stride, low=1)
    check_int("batch_size", batch_size, low=1)
    check_int("seed", seed)
    check_number("fraction", fraction, low=0, high=1, low_open=True, high_open=True)
    for name, flag in (("restrict", restrict), ("progress", progress)):
        check_flag(name, flag)
    x, pixels, indices = _inputs(module, prepare, layer, unit, images, atlas, data, k)
    height, width = int(x.shape[2]), int(x.shape[3])
    if 2 * patch > min(height, width):
        # An occluder over half the image leaves too few positions to tell where the unit
        # looks: the averaged map is a blur of the occluder itself, wider than the image.
        raise ValueError(
            f"patch={patch} is more than half the {height} x {width} input; pass a patch of at "
            f"most {min(height, width) // 2} px (the paper: 11 px on 227 px images)."
        )
    view = eval_view(module)
    with torch.no_grad(), capture(view, [layer]) as recorded:
        view(to_model_input(x, view))
    output = recorded.tensor(layer)
    calls = recorded.calls(layer)
    if output.ndim != 4:
        raise ValueError(
            f"layer {layer!r} outputs shape {tuple(output.shape)}, not a map (N, C, h, w); an "
            "empirical receptive field needs a convolutional layer."
        )
    if unit >= output.shape[1]:
        raise ValueError(f"{layer} has units 0..{output.shape[1] - 1}; got unit={unit}.")
    unit_maps = output[:, unit].detach().double().cpu()  # (N, h, w)
    theory = receptive_field(module, layer, x[:1])
    tops, lefts = occluder_grid(height, patch, stride), occluder_grid(width, patch, stride)
    positions = len(tops) * len(lefts)
    generator = torch.Generator().manual_seed(seed)
    jump = (int(theory.jump[0]), int(theory.jump[1]))
    run = _Run(view, layer, unit, calls, patch, stride, batch_size, prepare, tops, lefts, jump)
    total = positions * x.shape[0]
    bar = tqdm(total=total, unit="pos", disable=not progress, desc=f"{layer}:{unit}")
    done, copies, complete = 0, 0, True
    grids, peaks, centres, values, cropped = [], [], [], [], []
    try:
        for i in range(x.shape[0]):
            noise = occluder_noise(generator, positions, x.shape[1], patch)
            flat = int(torch.argmax(unit_maps[i]))
            peak = divmod(flat, unit_maps.shape[2])
            window = _window(theory, peak, patch, restrict, (height, width))
            grid, ran, used_crop, stopped = run.image(
                x[i : i + 1], unit_maps[i], peak, window, noise, (done, total), bar, should_stop
            )
            done += positions
            copies += ran
            if stopped:
                complete = False
                break
            grids.append(grid)
            peaks.append(peak)
            centres.append(_centre(theory, peak))
            values.append(float(unit_maps[i][peak]))
            cropped.append(used_crop)
    finally:
        bar.close()
    n = len(grids)
    discrepancies = (
        torch.stack(grids) if grids else torch.zeros(0, len(tops), len(lefts), dtype=torch.float64)
    )
    maps = _pixel_maps(discrepancies, patch, stride, (height, width))
    mean_map = _recentred_mean(maps, centres, (height, width))
    size, region, box = field_extent(mean_map, fraction)
    return EmpiricalField(
        layer=layer, unit=unit, patch=patch, stride=stride, seed=seed, fraction=fraction,
        mean_map=mean_map, maps=maps.numpy(), discrepancies=discrepancies.numpy(),
        peaks=np.array(peaks, dtype=np.int64).reshape(n, 2),
        centres=np.array(centres, dtype=np.int64).reshape(n, 2),
        values=np.array(values, dtype=np.float32), pixels=pixels[:n],
        indices=None if indices is None else indices[:n], theoretical=theory, size=size,
        region=region, box=box, positions=positions, copies=copies, cropped=cropped,
        complete=complete,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class _Window:
    """Rows [top, bottom) and columns [left, right) of the input the copies run on, and the
    theoretical field (clipped) whose overlapping occluders run; ``field`` None: all."""

    top: int
    left: int
    bottom: int
    right: int
    field: tuple[int, int, int, int] | None


def _window(
    theory: ReceptiveField,
    peak: tuple[int, int],
    patch: int,
    restrict: bool,
    size: tuple[int, int],
) -> _Window:
    """The crop around the peak's theoretical field, widened by ``patch - 1`` (so every
    occluder that overlaps the field lies inside) and started on a multiple of the layer's
    jump (so the crop's map positions are the image's, shifted by whole positions)."""
    height, width = size
    whole = _Window(0, 0, height, width, None)
    if not restrict or theory.method != "geometry":
        return whole
    top, left, bottom, right = theory.box(peak[0], peak[1], clip=True)
    jump_y, jump_x = int(theory.jump[0]), int(theory.jump[1])
    crop_top = max(top - patch + 1, 0) // jump_y * jump_y
    crop_left = max(left - patch + 1, 0) // jump_x * jump_x
    crop_bottom, crop_right = min(bottom + patch - 1, height), min(right + patch - 1, width)
    return _Window(crop_top, crop_left, crop_bottom, crop_right, (top, left, bottom, right))


def _centre(theory: ReceptiveField, peak: tuple[int, int]) -> tuple[int, int]:
    """The input pixel at the centre of the peak's theoretical field (unclipped;
    ``first + size // 2`` per axis)."""
    top, left, bottom, right = theory.box(peak[0], peak[1], clip=False)
    return top + (bottom - top) // 2, left + (right - left) // 2


@dataclass
class _Run:
    """What every image's occluded copies share."""

    view: nn.Module
    layer: str
    unit: int
    calls: int
    patch: int
    stride: int
    batch_size: int
    prepare: AnyPreprocess
    tops: np.ndarray
    lefts: np.ndarray
    jump: tuple[int, int]
    """The layer's jump (y, x): crops start on a multiple of it."""

    def values(self, x: torch.Tensor, peak: tuple[int, int]) -> torch.Tensor:
        """The unit's value at ``peak`` for each input of ``x`` (B, C, h, w), float64 CPU."""
        with (
            torch.no_grad(),
            capture(
                self.view, [self.layer], calls={self.layer: self.calls}, stop_early=True
            ) as recorded,
        ):
            self.view(to_model_input(x, self.view))
        output = recorded.tensor(self.layer)
        recorded.taps.clear()  # break the capture's reference cycle (see dataset_pass)
        return output[:, self.unit, peak[0], peak[1]].double().cpu()

    def image(
        self,
        x: torch.Tensor,
        unit_map: torch.Tensor,
        peak: tuple[int, int],
        window: _Window,
        noise: torch.Tensor,
        progress: tuple[int, int],
        bar: Any,
        should_stop: StopCheck | None,
    ) -> tuple[torch.Tensor, int, bool, bool]:
        """(D per occluder position (gy, gx), copies run, whether on a crop, stopped)."""
        reference = float(unit_map[peak])
        origin, part, local = (0, 0), x, peak
        chosen = np.ones((len(self.tops), len(self.lefts)), dtype=bool)
        if window.field is not None:
            origin, part, local = self._crop(x, unit_map, peak, window)
            if origin is not None:
                top, left, bottom, right = window.field
                rows = (self.tops < bottom) & (self.tops + self.patch > top)
                cols = (self.lefts < right) & (self.lefts + self.patch > left)
                chosen = rows[:, None] & cols[None, :]
            else:
                origin, part, local = (0, 0), x, peak
        used_crop = part is not x
        grid = torch.zeros(len(self.tops), len(self.lefts), dtype=torch.float64)
        which = np.argwhere(chosen)
        done, total = progress
        skipped = int(chosen.size - len(which))
        bar.update(skipped)
        done += skipped
        normalized = self.prepare.normalize(noise.to(x.dtype))
        for start in range(0, len(which), self.batch_size):
            batch = which[start : start + self.batch_size]
            copies = _occluded(
                part, normalized[batch[:, 0] * len(self.lefts) + batch[:, 1]],
                self.tops[batch[:, 0]] - origin[0], self.lefts[batch[:, 1]] - origin[1],
            )  # fmt: skip
            grid[batch[:, 0], batch[:, 1]] = (self.values(copies, local) - reference).abs()
            bar.update(len(batch))
            done += len(batch)
            if should_stop is not None and should_stop(done, total):
                return grid, start + len(batch), used_crop, True
        if should_stop is not None and not len(which) and should_stop(done, total):
            return grid, 0, used_crop, True
        return grid, len(which), used_crop, False

    def _crop(
        self, x: torch.Tensor, unit_map: torch.Tensor, peak: tuple[int, int], window: _Window
    ) -> tuple[Any, torch.Tensor, tuple[int, int]]:
        """(origin, crop, peak in the crop's map), or (None, x, peak) when the unit's value on
        the crop differs from its value on the image."""
        if (window.top, window.left, window.bottom, window.right) == (
            0, 0, int(x.shape[2]), int(x.shape[3])
        ):  # fmt: skip
            return None, x, peak  # the field covers the image: nothing to crop
        jump_y, jump_x = self.jump
        part = x[:, :, window.top : window.bottom, window.left : window.right]
        local = (peak[0] - window.top // jump_y, peak[1] - window.left // jump_x)
        try:
            value = float(self.values(part, local)[0])
        except (IndexError, RuntimeError):  # the crop's map is too small for the position
            return None, x, peak
        scale = float(unit_map.abs().max())
        if abs(value - float(unit_map[peak])) > CROP_TOLERANCE * max(scale, 1e-12):
            return None, x, peak
        return (window.top, window.left), part, local


def _occluded(
    x: torch.Tensor, patches: torch.Tensor, tops: np.ndarray, lefts: np.ndarray
) -> torch.Tensor:
    """Copies of ``x`` (1, C, H, W), copy b with ``patches[b]`` (C, p, p) pasted with its
    top-left corner at (tops[b], lefts[b])."""
    count, _, side, _ = patches.shape
    copies = x.expand(count, *x.shape[1:]).clone()
    offsets = torch.arange(side)
    rows = torch.as_tensor(tops, dtype=torch.long)[:, None] + offsets  # (B, p)
    cols = torch.as_tensor(lefts, dtype=torch.long)[:, None] + offsets
    batch = torch.arange(count)[:, None, None]
    channels_last = copies.permute(0, 2, 3, 1)  # a view: writes land in ``copies``
    channels_last[batch, rows[:, :, None], cols[:, None, :]] = patches.permute(0, 2, 3, 1).to(
        copies.dtype
    )
    return copies


def _pixel_maps(
    discrepancies: torch.Tensor, patch: int, stride: int, size: tuple[int, int]
) -> torch.Tensor:
    """(n, gy, gx) occluder discrepancies -> (n, H, W) pixel maps: at each pixel the mean D of
    the occluders covering it, NaN where none does."""
    height, width = size
    if discrepancies.shape[0] == 0:
        return torch.zeros(0, height, width)
    ones = torch.ones(1, 1, patch, patch, dtype=torch.float64)
    sums = F.conv_transpose2d(discrepancies[:, None].double(), ones, stride=stride)[:, 0]
    counts = F.conv_transpose2d(
        torch.ones_like(discrepancies[:1, None]).double(), ones, stride=stride
    )[:, 0]
    maps = torch.full((discrepancies.shape[0], height, width), float("nan"), dtype=torch.float64)
    h, w = sums.shape[-2:]
    covered = counts[0] > 0
    maps[:, :h, :w] = torch.where(covered, sums / counts.clamp(min=1), float("nan"))
    return maps.float()


def _recentred_mean(
    maps: torch.Tensor, centres: Sequence[tuple[int, int]], size: tuple[int, int]
) -> np.ndarray:
    """The NaN-mean of the maps each shifted so its centre lands on (H - 1, W - 1) of a
    (2H - 1, 2W - 1) canvas."""
    height, width = size
    canvas = torch.full((len(centres), 2 * height - 1, 2 * width - 1), float("nan"))
    for i, (cy, cx) in enumerate(centres):
        top, left = height - 1 - cy, width - 1 - cx
        # A centre outside the image (a field reaching past the border) leaves part off canvas.
        src_top, src_left = max(0, -top), max(0, -left)
        src_bottom = min(height, canvas.shape[1] - top)
        src_right = min(width, canvas.shape[2] - left)
        if src_bottom > src_top and src_right > src_left:
            canvas[i, top + src_top : top + src_bottom, left + src_left : left + src_right] = maps[
                i, src_top:src_bottom, src_left:src_right
            ]
    if not len(centres):
        return canvas.new_full((2 * height - 1, 2 * width - 1), float("nan")).numpy()
    return torch.nanmean(canvas, dim=0).numpy()


# ----------------------------------------------------------------------------- inputs


def _inputs(
    module: nn.Module,
    prepare: AnyPreprocess,
    layer: str,
    unit: int,
    images: Any,
    atlas: UnitAtlas | None,
    data: Any,
    k: int | None,
) -> tuple[torch.Tensor, np.ndarray, list[int] | None]:
    """(model inputs (N, C, H, W) on CPU, the images as seen (N, H, W, C) uint8, dataset
    indices or None)."""
    if k is not None:
        check_int("k", k, low=1)
    indices: list[int] | None = None
    if atlas is not None:
        if data is None:
            raise ValueError("atlas= needs data=: the data set the atlas was computed on.")
        atlas.check_source(module, data, prepare)
        examples = atlas.top(layer, unit)[:k]
        if not examples:
            raise ValueError(f"the atlas holds no examples for unit {unit} of {layer}.")
        indices = [example.index for example in examples]
        images = [split_item(data[index])[0] for index in indices]
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"images as a tensor must be a float model input (N, C, H, W); got shape "
                f"{tuple(images.shape)}, {images.dtype}."
            )
        x = images.detach().cpu()
        if k is not None:
            x = x[:k]
    else:
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence) or not images:
            raise ValueError(
                "images must be a model input tensor (N, C, H, W) or a non-empty list of images."
            )
        x = torch.cat([prepare(image).float() for image in list(images)[:k]])
    if not torch.isfinite(x).all():
        raise ValueError("images hold NaN or infinite values; pass finite model inputs.")
    seen = prepare.denormalize(x).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x, seen.permute(0, 2, 3, 1).numpy(), indices


# ----------------------------------------------------------------------------- display


@dataclass(frozen=True)
class FieldSegments:
    """The unit's images masked by its empirical field placed at each image's peak (what the
    unit card draws): ``masks`` (n, H, W) bool, ``images`` (n, H, W, C) uint8 (the image
    inside the field, dimmed to ``dim`` outside)."""

    masks: np.ndarray
    images: np.ndarray


def field_segments(
    field: EmpiricalField, fraction: float | None = None, dim: float = DIM
) -> FieldSegments:
    """Each of the field's images with the empirical field's region (read at ``fraction``,
    default the field's) centred on that image's peak: inside it the image as the model sees
    it, outside it ``dim`` times as bright (Zhou et al.'s segmentations of the top images)."""
    check_number("dim", dim, low=0, high=1)
    region = field.region if fraction is None else field.extent(fraction)[1]
    n, height, width = field.maps.shape
    padded = np.pad(region, ((height, height), (width, width)))
    masks = np.zeros((n, height, width), dtype=bool)
    for i, (cy, cx) in enumerate(field.centres):
        top = height + (height - 1) - int(cy)
        left = width + (width - 1) - int(cx)
        if 0 <= top <= padded.shape[0] - height and 0 <= left <= padded.shape[1] - width:
            masks[i] = padded[top : top + height, left : left + width]
    weight = np.where(masks, 1.0, dim)[..., None]
    images = np.round(field.pixels.astype(np.float64) * weight).astype(np.uint8)
    return FieldSegments(masks, images)


# ----------------------------------------------------------------------------- per layer


@dataclass(frozen=True)
class FieldRow:
    """One unit's sizes: theoretical and empirical (height, width), input pixels."""

    layer: str
    unit: int
    theoretical: tuple[int, int]
    empirical: tuple[int, int]
    images: int

    @property
    def theoretical_side(self) -> float:
        """The side of the square of the theoretical field's area, sqrt(h * w)."""
        return math.sqrt(self.theoretical[0] * self.theoretical[1])

    @property
    def empirical_side(self) -> float:
        """The side of the square of the empirical box's area, sqrt(h * w)."""
        return math.sqrt(self.empirical[0] * self.empirical[1])


@dataclass
class FieldTable:
    """Theoretical against empirical field sizes of sampled units, layer by layer (from
    :func:`empirical_fields`); ``fields`` keeps each unit's :class:`EmpiricalField`."""

    rows: list[FieldRow]
    fields: list[EmpiricalField]
    layers: list[str]
    patch: int
    stride: int
    fraction: float
    complete: bool = True

    def summary(self) -> list[dict[str, Any]]:
        """Per layer: ``units``, ``theoretical`` (mean side, px), ``empirical`` and
        ``empirical_std`` (mean and std of the units' sides), ``ratio`` (empirical /
        theoretical mean side). Sides are sqrt(height * width)."""
        out = []
        for layer in self.layers:
            rows = [row for row in self.rows if row.layer == layer]
            if not rows:
                continue
            theory = np.array([row.theoretical_side for row in rows])
            sides = np.array([row.empirical_side for row in rows])
            out.append({
                "layer": layer, "units": len(rows), "theoretical": float(theory.mean()),
                "empirical": float(sides.mean()), "empirical_std": float(sides.std()),
                "ratio": float(sides.mean() / theory.mean()) if theory.mean() else float("nan"),
            })  # fmt: skip
        return out

    def to_markdown(self, units: bool = True) -> str:
        """The summary per layer as a Markdown table, then (``units``) one row per unit."""
        lines = [
            f"Occluder {self.patch} x {self.patch} px, stride {self.stride}; empirical size: "
            f"bounding box of the region above {self.fraction:g} x the averaged map's maximum; "
            "side = sqrt(height x width).",
            "",
            "| layer | units | theoretical side (px) | empirical side (px), mean ± std | "
            "empirical / theoretical |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in self.summary():
            lines.append(
                f"| `{row['layer']}` | {row['units']} | {row['theoretical']:.0f} | "
                f"{row['empirical']:.1f} ± {row['empirical_std']:.1f} | {row['ratio']:.2f} |"
            )
        if units:
            lines += [
                "",
                "| layer | unit | images | theoretical (h x w) | empirical (h x w) |",
                "|---|---:|---:|---:|---:|",
            ]
            for unit in self.rows:
                lines.append(
                    f"| `{unit.layer}` | {unit.unit} | {unit.images} | "
                    f"{unit.theoretical[0]} x {unit.theoretical[1]} | "
                    f"{unit.empirical[0]} x {unit.empirical[1]} |"
                )
        return "\n".join(lines) + "\n"

    def plot(self, ax: Any = None) -> Any:
        """Theoretical and empirical side per layer (matplotlib; the empirical as mean ± std
        of the units, each unit a dot). Returns the figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        summary = self.summary()
        where = {row["layer"]: i for i, row in enumerate(summary)}
        ax.plot(range(len(summary)), [r["theoretical"] for r in summary], "s-", label="theoretical")
        ax.errorbar(
            range(len(summary)), [r["empirical"] for r in summary],
            yerr=[r["empirical_std"] for r in summary], fmt="o-", capsize=3, label="empirical",
        )  # fmt: skip
        ax.scatter(
            [where[row.layer] for row in self.rows], [row.empirical_side for row in self.rows],
            s=8, color="grey", zorder=3,
        )  # fmt: skip
        ax.set_xticks(range(len(summary)), [r["layer"] for r in summary], rotation=30)
        ax.set_yscale("log")  # deep theoretical fields are tens of times the empirical ones
        ax.set_ylabel("field side (input px, log)")
        ax.legend()
        ax.figure.tight_layout()
        return ax.figure


def empirical_fields(
    model: ModelBundle | nn.Module,
    atlas: UnitAtlas,
    data: Any,
    layers: str | Sequence[str],
    units: Sequence[int] | None = None,
    *,
    sample: int = 4,
    k: int | None = None,
    patch: int = PATCH,
    stride: int = STRIDE,
    batch_size: int = 128,
    seed: int = 0,
    fraction: float = FRACTION,
    restrict: bool = True,
    progress: bool = True,
    should_stop: StopCheck | None = None,
    preprocess: AnyPreprocess | None = None,
) -> FieldTable:
    """The empirical field of several units of each of ``layers`` over their top-``k`` atlas
    images (:func:`empirical_receptive_field`), as a :class:`FieldTable` (theoretical against
    empirical size per unit, a summary per layer, a plot). ``units``: the same units in every
    layer; default ``sample`` units per layer drawn (with ``seed``) among those whose best
    atlas example is positive (a unit that never fires has no field to measure). A stop
    (``should_stop``) returns the units finished so far with ``complete=False``."""
    names = [layers] if isinstance(layers, str) else list(layers)
    check_int("sample", sample, low=1)
    rows: list[FieldRow] = []
    fields: list[EmpiricalField] = []
    for layer in names:
        chosen = list(units) if units is not None else _sample_units(atlas, layer, sample, seed)
        for unit in chosen:
            result = empirical_receptive_field(
                model, layer, unit, atlas=atlas, data=data, patch=patch, stride=stride, k=k,
                batch_size=batch_size, seed=seed, fraction=fraction, restrict=restrict,
                progress=progress, should_stop=should_stop, preprocess=preprocess,
            )  # fmt: skip
            if not result.complete:
                return FieldTable(rows, fields, names, patch, stride, fraction, complete=False)
            fields.append(result)
            rows.append(FieldRow(layer, unit, result.theoretical_size, result.size, result.images))
    return FieldTable(rows, fields, names, patch, stride, fraction)


def _sample_units(atlas: UnitAtlas, layer: str, sample: int, seed: int) -> list[int]:
    """``sample`` units of ``layer`` (sorted), drawn with ``seed`` among those whose best
    example in the atlas is positive."""
    units = atlas.stats[layer].units if layer in atlas.stats else 0
    if not units:
        raise ValueError(f"the atlas has no layer {layer!r}; it has {atlas.layers}.")
    alive = [u for u in range(units) if (top := atlas.top(layer, u)) and top[0].value > 0]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(alive), size=min(sample, len(alive)), replace=False)
    return sorted(alive[int(i)] for i in picked)
