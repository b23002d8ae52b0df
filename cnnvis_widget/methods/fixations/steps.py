"""CNN Fixations' per-op step rules as pure tensor functions: how a set of evidence points on
a layer's output moves back one layer to its input (linear, 2-D conv, max / average /
adaptive pooling, constant padding), the window helpers they share (ties go toward the
window's centre where a layer has no switch), and the point-index helpers used by the other
modules (``pair``, ``dedupe``, ``ravel_index`` / ``unravel_index``).

A point set (``Points``) is a ``(P, 1 + D)`` long tensor: the sample index, then the index
inside that sample's activation (for a feature map ``(N, C, H, W)``: channel, y, x; for an
``(N, F)`` input: the feature). Nothing here reads the fx graph; :mod:`.rules` and
:mod:`.walker` pick the step and its arguments.
"""

from __future__ import annotations

import math
from typing import Any

import torch

Points = torch.Tensor  # (P, 1 + D) long: sample index, then the index inside that sample

CHUNK = 1 << 22  # elements per vectorized step (bounds memory on big layers)


# --------------------------------------------------------------------------- steps


def linear_step(inp: torch.Tensor, weight: torch.Tensor, points: Points, positive: bool) -> Points:
    """FC step. ``positive``: every input i with a_i W_ji > 0 (the argmax where none is
    positive, so no point is lost); otherwise the single argmax of a_i W_ji."""
    lead, unit = points[:, :-1], points[:, -1]
    features = inp.shape[-1]
    step = max(1, CHUNK // max(1, features))
    moved = []
    for start in range(0, points.shape[0], step):
        chunk_lead = lead[start : start + step]
        contribution = inp[tuple(chunk_lead.T)] * weight[unit[start : start + step]].to(inp.dtype)
        best = contribution.argmax(1)
        if positive:
            keep = contribution > 0
            (empty,) = (~keep.any(1)).nonzero(as_tuple=True)
            keep[empty, best[empty]] = True
            rows, columns = keep.nonzero(as_tuple=True)
            moved.append(torch.cat([chunk_lead[rows], columns.unsqueeze(1)], 1))
        else:
            moved.append(torch.cat([chunk_lead, best.unsqueeze(1)], 1))
    return torch.cat(moved) if moved else points.new_zeros((0, points.shape[1]))


def conv_step(
    inp: torch.Tensor,
    weight: torch.Tensor,
    points: Points,
    stride: tuple[int, int],
    before: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    position: str,
) -> Points:
    """Conv step: the input channel (of the output channel's group) with the largest summed
    contribution a * W over the zero-padded window, then the position of that channel's
    largest contribution inside the window (``argmax``) or the window centre (``anchor``)."""
    height, width = inp.shape[2:]
    out_channels, group_channels, kh, kw = weight.shape
    per_group = out_channels // groups
    step = max(1, CHUNK // (group_channels * kh * kw))
    moved = []
    for start in range(0, points.shape[0], step):
        b, c, y, x = points[start : start + step].T
        count = b.shape[0]
        rows, row_ok = _window(y, stride[0], before[0], kh, dilation[0], height)
        cols, col_ok = _window(x, stride[1], before[1], kw, dilation[1], width)
        valid = row_ok[:, :, None] & col_ok[:, None, :]
        first = (c // per_group) * group_channels
        chans = first[:, None] + torch.arange(group_channels, device=inp.device)
        block = inp[
            b[:, None, None, None],
            chans[:, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        contribution = block * weight[c].to(inp.dtype) * valid[:, None]
        channel = contribution.sum((2, 3)).argmax(1)
        pick = torch.arange(count, device=inp.device)
        if position == "argmax":
            chosen = _central_argmax(contribution[pick, channel].masked_fill(~valid, -math.inf))
            ny, nx = rows[pick, chosen // kw], cols[pick, chosen % kw]
        else:
            ny = (y * stride[0] - before[0] + (kh - 1) * dilation[0] // 2).clamp(0, height - 1)
            nx = (x * stride[1] - before[1] + (kw - 1) * dilation[1] // 2).clamp(0, width - 1)
        moved.append(torch.stack([b, first + channel, ny, nx], 1))
    return torch.cat(moved) if moved else points


def _central_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Flat index of the largest of each ``(P, kh, kw)`` window, ties going to the position
    nearest the window's centre (then the first in row-major order).

    Ties are common: after (Re)LU-6 activations many inputs are exactly zero, so a window in a
    dead region has only zero contributions. ``argmax`` alone would take the window's first
    (top-left) position every time, and over a dozen stride-2 layers the fixations drift to
    the image's top-left corner (seen on EfficientNet-Lite0, whose depthwise convs see one
    channel per window)."""
    kh, kw = scores.shape[1:]
    rows = torch.arange(kh, device=scores.device, dtype=torch.float64) - (kh - 1) / 2
    cols = torch.arange(kw, device=scores.device, dtype=torch.float64) - (kw - 1) / 2
    distance = (rows[:, None] ** 2 + cols[None, :] ** 2).flatten()
    flat = scores.flatten(1)
    best = flat == flat.max(1, keepdim=True).values
    preference = torch.where(best, -distance, -math.inf)
    return preference.argmax(1)


def pool_step(
    inp: torch.Tensor,
    points: Points,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    central: bool = False,
) -> Points:
    """Max-pool (the switch) and average pool (the largest contribution): the argmax of the
    channel inside the point's window; on ties the first in row-major order, like
    ``max_pool2d(return_indices=True)``, or with ``central`` (average pools, which have no
    switch) the one nearest the window's centre (see :func:`_central_argmax`)."""
    (kh, kw), (sh, sw) = pair(kernel), pair(stride if stride else kernel)
    (ph, pw), (dh, dw) = pair(padding), pair(dilation)
    b, c, y, x = points.T
    rows, row_ok = _window(y, sh, ph, kh, dh, inp.shape[2])
    cols, col_ok = _window(x, sw, pw, kw, dw, inp.shape[3])
    return _window_argmax(inp, b, c, rows, row_ok, cols, col_ok, central)


def adaptive_pool_step(
    inp: torch.Tensor, out: torch.Tensor, points: Points, central: bool = False
) -> Points:
    """Adaptive pooling: the argmax inside PyTorch's region [floor(i H / h), ceil((i+1) H / h));
    ties as in :func:`pool_step`."""
    b, c, y, x = points.T
    rows, row_ok = _adaptive_window(y, inp.shape[2], out.shape[2])
    cols, col_ok = _adaptive_window(x, inp.shape[3], out.shape[3])
    return _window_argmax(inp, b, c, rows, row_ok, cols, col_ok, central)


def pad_step(inp: torch.Tensor, points: Points, padding: Any) -> Points:
    """Constant padding (F.pad order: last dimension first); a point in the padding moves
    to the nearest input position."""
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    result = points.clone()
    for k in range(len(pads) // 2):
        dim = inp.ndim - 1 - k
        result[:, dim] = (points[:, dim] - pads[2 * k]).clamp(0, inp.shape[dim] - 1)
    return result


def _window(
    index: torch.Tensor, stride: int, before: int, kernel: int, dilation: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamped input indices ``(P, kernel)`` of each output index's window and their validity."""
    raw = index[:, None] * stride - before + torch.arange(kernel, device=index.device) * dilation
    return raw.clamp(0, size - 1), (raw >= 0) & (raw < size)


def _adaptive_window(index: torch.Tensor, size: int, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    starts = (index * size) // out
    ends = ((index + 1) * size + out - 1) // out
    longest = max(((i + 1) * size + out - 1) // out - (i * size) // out for i in range(out))
    raw = starts[:, None] + torch.arange(longest, device=index.device)
    return raw.clamp(0, size - 1), raw < ends[:, None]


def _window_argmax(
    inp: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    rows: torch.Tensor,
    row_ok: torch.Tensor,
    cols: torch.Tensor,
    col_ok: torch.Tensor,
    central: bool = False,
) -> Points:
    valid = row_ok[:, :, None] & col_ok[:, None, :]
    values = inp[b[:, None, None], c[:, None, None], rows[:, :, None], cols[:, None, :]]
    values = values.masked_fill(~valid, -math.inf)
    chosen = _central_argmax(values) if central else values.flatten(1).argmax(1)
    pick = torch.arange(b.shape[0], device=inp.device)
    width = cols.shape[1]
    return torch.stack([b, c, rows[pick, chosen // width], cols[pick, chosen % width]], 1)


# --------------------------------------------------------------------------- point indices


def pair(value: Any) -> tuple[int, int]:
    """A layer's int-or-sequence size argument (kernel, stride, padding, dilation) as ``(h, w)``."""
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def dedupe(points: Points, shape: tuple[int, ...]) -> Points:
    """Distinct rows of ``points`` (indices into ``shape``), sorted (unique of flat indices:
    much faster than ``unique(dim=0)``)."""
    return unravel_index(torch.unique(ravel_index(points, shape)), shape)


def ravel_index(index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Row-major flat index of each ``(P, len(shape))`` row (``numpy.ravel_multi_index``)."""
    flat = torch.zeros(index.shape[0], dtype=torch.long, device=index.device)
    for dim, size in enumerate(shape):
        flat = flat * size + index[:, dim]
    return flat


def unravel_index(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`ravel_index`: ``(P,)`` flat indices to ``(P, len(shape))`` rows."""
    coords = []
    for size in reversed(shape):
        coords.append(flat % size)
        flat = flat // size
    return torch.stack(coords[::-1], 1) if coords else flat.new_zeros((flat.shape[0], 0))
