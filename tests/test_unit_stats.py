"""cnnvis_widget.unit_stats: each statistic against a brute-force computation that stores every
activation; shard and order invariance; the quantile's stated rank error; state round trips;
fixed memory."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch

from cnnvis_widget.unit_stats import (
    UnitStats,
    UpperQuantile,
    position_levels,
    state_nbytes,
)
from cnnvis_widget.unit_stats.quantile import LEVELS

Q = 0.005


def make_data(images: int, units: int, size: tuple[int, ...], kind: str, seed: int) -> torch.Tensor:
    """(images, units, *size) float32 activations of one kind."""
    g = torch.Generator().manual_seed(seed)
    shape = (images, units, *size)
    if kind == "normal":
        return torch.randn(shape, generator=g)
    if kind == "cauchy":  # heavy-tailed
        u = torch.rand(shape, generator=g, dtype=torch.float64)
        return torch.tan(math.pi * (u - 0.5)).float()
    if kind == "relu":  # mostly exact zeros (the upper 0.5% above zero)
        return torch.relu(torch.randn(shape, generator=g) - 2.0)
    if kind == "sparse":  # more than 99.5% zeros: the quantile is 0 itself
        return torch.relu(torch.randn(shape, generator=g) - 3.0)
    if kind == "ties":  # few distinct values: ties inside maps and between images
        return torch.randint(0, 4, shape, generator=g).float()
    raise ValueError(kind)


def batches(data: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor, sizes: list[int]):
    start = 0
    for size in sizes:
        yield (
            data[start : start + size],
            indices[start : start + size],
            labels[start : start + size],
        )
        start += size
    assert start == len(data)


def split(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    cuts = sorted(rng.choice(np.arange(1, total), size=parts - 1, replace=False).tolist())
    edges = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(edges)]


# --- brute force: keeps every activation


def brute_topk(data: torch.Tensor, indices: torch.Tensor, k: int):
    """Per unit, sorted (max desc, index asc)[:k]: values, indices, ys, xs (numpy)."""
    n, c = data.shape[:2]
    flat = data.reshape(n, c, -1).double().numpy()
    width = data.shape[3] if data.ndim == 4 else 1
    peak = flat.max(axis=2)  # (n, c)
    first = (flat == peak[..., None]).argmax(axis=2)  # first maximum, row-major
    idx = indices.numpy()
    out = []
    for unit in range(c):
        order = np.lexsort((idx, -peak[:, unit]))[:k]
        out.append(
            (peak[order, unit], idx[order], first[order, unit] // width, first[order, unit] % width)
        )
    return [np.stack(part) for part in zip(*out, strict=True)]


def relative_rank_error(values: np.ndarray, threshold: float, q: float = Q) -> float:
    """How far the threshold's upper rank is from q * n, relative to q * n, with the +-1 of
    the stated guarantee: 0 when #{a > t} <= q n + 1 and #{a >= t} >= q n - 1."""
    n = values.size
    above = int((values > threshold).sum())
    at_least = int((values >= threshold).sum())
    target = q * n
    return max(0.0, above - 1 - target, target - 1 - at_least) / target


def brute_level(levels: np.ndarray, rank_cap: int, q: float = Q) -> int:
    """The rate level the stated rule picks from all positions' hash levels."""
    counts = np.bincount(levels.ravel(), minlength=LEVELS)
    capacity = rank_cap * (math.ceil(math.log2(1 / q)) + 3)
    for j in range(LEVELS + 1):
        size = int(counts[j:].sum())
        bounded = int(np.minimum(counts[j:], rank_cap).sum())
        if q * (size - 1) + 2 <= rank_cap and bounded <= capacity:
            return j
    raise AssertionError("unreachable")


def all_levels(indices: torch.Tensor, height: int, width: int) -> np.ndarray:
    return position_levels(indices, height, width).numpy().astype(np.int64)  # (n, hw)


# --- top-k


@pytest.mark.parametrize("size", [(5, 7), ()])
def test_topk_equals_brute_force_with_planted_ties(size):
    data = make_data(300, 6, size, "ties", seed=1)
    data[17, 2] = 9.0  # a whole map of equal maxima: argmax (0, 0)
    data[40, 3].view(-1)[5:] = 11.0  # ties inside a map: first in row-major order
    rng = np.random.default_rng(0)
    indices = torch.from_numpy(rng.permutation(10_000)[:300])
    labels = torch.zeros(300, dtype=torch.int64)
    stats = UnitStats(6, k=12)
    for acts, idx, lab in batches(data, indices, labels, split(300, 7, rng)):
        stats.update(acts, idx, lab)
    values, index, ys, xs = brute_topk(data, indices, 12)
    assert np.array_equal(stats.topk.values.numpy(), values)
    assert np.array_equal(stats.topk.indices.numpy(), index)
    assert np.array_equal(stats.topk.ys.numpy(), ys)
    assert np.array_equal(stats.topk.xs.numpy(), xs)
    best = stats.topk.examples(3)[0]
    assert best[1:] == (int(index[3, 0]), int(ys[3, 0]), int(xs[3, 0]))


def test_topk_before_k_images_leaves_empty_slots():
    stats = UnitStats(2, k=5)
    stats.update(torch.ones(3, 2, 2, 2), torch.tensor([4, 2, 9]))
    assert stats.topk.filled() == 3
    assert stats.topk.indices[0].tolist() == [2, 4, 9, -1, -1]
    assert [e[1] for e in stats.topk.examples(1)] == [2, 4, 9]


# --- moments and class means


def test_moments_and_class_means_equal_brute_force():
    data = make_data(257, 5, (6, 6), "relu", seed=2) + make_data(257, 5, (6, 6), "normal", 3)
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(-1, 7, (257,), generator=g)
    indices = torch.arange(257)
    stats = UnitStats(5)
    for acts, idx, lab in batches(data, indices, labels, [50, 1, 100, 106]):
        stats.update(acts, idx, lab)
    flat = data.double().reshape(257, 5, -1)
    pooled, peak = flat.mean(dim=2), flat.amax(dim=2)
    for moments, ref in ((stats.pooled, pooled), (stats.peak, peak)):
        assert moments.count == 257
        torch.testing.assert_close(moments.sum, ref.sum(0), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(moments.sumsq, (ref**2).sum(0), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(moments.mean(), ref.mean(0), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(moments.std(), ref.std(0, correction=0), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(moments.std(1), ref.std(0), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(moments.max(), ref.amax(0), rtol=1e-6, atol=0)
        torch.testing.assert_close(moments.min(), ref.amin(0), rtol=1e-6, atol=0)
    means = stats.classes.means()
    assert stats.classes.num_classes == int(labels.max()) + 1
    for cls in range(stats.classes.num_classes):
        chosen = labels == cls
        assert int(stats.classes.counts[cls]) == int(chosen.sum())
        if chosen.any():
            torch.testing.assert_close(means[cls], pooled[chosen].mean(0), rtol=1e-6, atol=1e-9)
        else:
            assert torch.isnan(means[cls]).all()


def test_class_table_fixed_size_refuses_larger_labels():
    stats = UnitStats(2, num_classes=3)
    stats.update(torch.rand(2, 2, 3, 3), torch.tensor([0, 1]), torch.tensor([2, -1]))
    assert stats.classes.counts.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="num_classes=3"):
        stats.update(torch.rand(1, 2, 3, 3), torch.tensor([2]), torch.tensor([3]))


# --- the upper quantile


@pytest.mark.parametrize("kind", ["normal", "cauchy", "relu", "sparse", "ties"])
def test_quantile_is_exact_while_it_fits(kind):
    data = make_data(160, 4, (16, 16), kind, seed=5)  # 40,960 positions per unit
    quantile = UpperQuantile(4, Q, rank_cap=256)  # exact up to 50,801 positions
    for start in range(0, 160, 32):
        quantile.update(data[start : start + 32], torch.arange(start, start + 32))
    assert quantile.exact and quantile.rank_error_bound() == 0.0
    values = data.transpose(0, 1).reshape(4, -1).double().numpy()
    expected = np.quantile(values, 1 - Q, axis=1)
    got = quantile.thresholds().numpy()
    np.testing.assert_array_equal(got, expected)  # numpy's interpolation, bit for bit
    for unit in range(4):
        assert relative_rank_error(values[unit], got[unit]) == 0.0


@pytest.mark.parametrize("order", ["shuffled", "largest first", "smallest first"])
def test_quantile_beyond_the_cap_is_the_exact_quantile_of_the_hashed_sample(order):
    """In any order (also the adversarial one, largest values first), the state answers
    numpy.quantile of the positions whose hash level is >= the rule's level."""
    data = make_data(600, 3, (8, 8), "normal", seed=6)
    indices = torch.arange(600)
    if order != "shuffled":
        rank = data.amax(dim=(1, 2, 3)).argsort(descending=order == "largest first")
        data, indices = data[rank], indices[rank]
    else:
        perm = torch.randperm(600, generator=torch.Generator().manual_seed(0))
        data, indices = data[perm], indices[perm]
    rank_cap = 32
    quantile = UpperQuantile(3, Q, rank_cap=rank_cap)
    for start in range(0, 600, 25):
        quantile.update(data[start : start + 25], indices[start : start + 25])
    levels = all_levels(indices, 8, 8)
    level = brute_level(levels, rank_cap)
    assert quantile.level == level > 0
    sample = levels.ravel() >= level
    values = data.transpose(0, 1).reshape(3, -1).double().numpy()[:, sample]
    np.testing.assert_array_equal(quantile.thresholds().numpy(), np.quantile(values, 1 - Q, 1))
    assert quantile.sample_size == int(sample.sum())


@pytest.mark.parametrize("kind", ["normal", "cauchy", "relu", "sparse"])
def test_quantile_rank_error_within_the_stated_bound(kind):
    """Default rank_cap, 655,360 positions per unit (the sampled regime, rate 1/4): every
    unit's rank error is within rank_error_bound(1e-6), and the mean one within 3 / sqrt(mu)
    (the typical error is about 1 / sqrt(mu))."""
    units, images, size = 6, 640, (32, 32)
    data = make_data(images, units, size, kind, seed=7)
    quantile = UpperQuantile(units, Q)
    for start in range(0, images, 64):
        quantile.update(data[start : start + 64], torch.arange(start, start + 64))
    assert not quantile.exact
    bound = quantile.rank_error_bound(1e-6)
    assert 0 < bound < 0.3
    values = data.transpose(0, 1).reshape(units, -1).double().numpy()
    got = quantile.thresholds().numpy()
    errors = [relative_rank_error(values[u], got[u]) for u in range(units)]
    assert max(errors) <= bound, (errors, bound)
    mu = Q * values.shape[1] * quantile.rate
    assert float(np.mean(errors)) <= 3 / math.sqrt(mu)
    if kind == "sparse":  # the quantile is an exact zero: no error at all
        assert np.array_equal(got, np.zeros(units)) and max(errors) == 0


def test_hash_levels_depend_only_on_the_position():
    indices = torch.tensor([5, 0, 2**40 + 3, 77])
    together = position_levels(indices, 3, 5, seed=1)
    for row, index in enumerate(indices):
        assert torch.equal(position_levels(index[None], 3, 5, seed=1)[0], together[row])
    # the same (y, x) on a wider map keeps its level
    wide = position_levels(indices, 3, 9, seed=1).view(4, 3, 9)[:, :, :5]
    assert torch.equal(wide.reshape(4, 15), together)
    many = position_levels(torch.arange(20_000), 4, 4).flatten()
    share = torch.bincount(many.long(), minlength=LEVELS).double() / many.numel()
    torch.testing.assert_close(
        share[:4], torch.tensor([0.5, 0.25, 0.125, 0.0625]).double(), atol=4e-3, rtol=0
    )


# --- shards and orders


def run_shards(data, indices, labels, parts: int, seed: int, **kwargs) -> UnitStats:
    """Split the data set into ``parts`` shards, each fed in its own shuffled order and batch
    sizes, then merge the shards in a shuffled order."""
    rng = np.random.default_rng(seed)
    perm = torch.from_numpy(rng.permutation(len(data)))
    data, indices, labels = data[perm], indices[perm], labels[perm]
    shards = []
    start = 0
    for size in split(len(data), parts, rng) if parts > 1 else [len(data)]:
        stats = UnitStats(data.shape[1], **kwargs)
        piece = slice(start, start + size)
        sizes = split(size, min(size, int(rng.integers(1, 9))), rng) if size > 1 else [size]
        for acts, idx, lab in batches(data[piece], indices[piece], labels[piece], sizes):
            stats.update(acts, idx, lab)
        shards.append(stats)
        start += size
    order = rng.permutation(parts)
    merged = shards[order[0]]
    for i in order[1:]:
        merged.merge(shards[i])
    return merged


def test_one_two_three_shards_in_any_order_agree():
    n, units = 700, 5
    data = make_data(n, units, (6, 6), "ties", seed=8)  # planted ties everywhere
    data[::7] += make_data(100, units, (6, 6), "normal", seed=9)
    indices = torch.from_numpy(np.random.default_rng(1).permutation(5_000)[:n])
    labels = torch.randint(-1, 9, (n,), generator=torch.Generator().manual_seed(2))
    kwargs = {"k": 20, "rank_cap": 24}  # small cap: the sketch goes through several rates
    reference = run_shards(data, indices, labels, 1, seed=0, **kwargs)
    assert reference.quantile.level >= 3
    values = data.transpose(0, 1).reshape(units, -1).double().numpy()
    levels = all_levels(indices, 6, 6).ravel()
    sample = levels >= brute_level(levels, 24)
    np.testing.assert_array_equal(
        reference.thresholds().numpy(), np.quantile(values[:, sample], 1 - Q, axis=1)
    )
    for parts, seed in ((1, 3), (2, 4), (2, 5), (3, 6), (3, 7)):
        other = run_shards(data, indices, labels, parts, seed=seed, **kwargs)
        for name in ("values", "indices", "ys", "xs"):
            assert torch.equal(getattr(other.topk, name), getattr(reference.topk, name)), name
        for part in ("pooled", "peak"):
            mine, theirs = getattr(other, part), getattr(reference, part)
            assert mine.count == theirs.count == n
            torch.testing.assert_close(mine.sum, theirs.sum, rtol=1e-9, atol=0)
            torch.testing.assert_close(mine.sumsq, theirs.sumsq, rtol=1e-9, atol=0)
            assert torch.equal(mine.high, theirs.high) and torch.equal(mine.low, theirs.low)
        assert torch.equal(other.classes.counts, reference.classes.counts)
        torch.testing.assert_close(
            other.classes.sums, reference.classes.sums, rtol=1e-9, atol=1e-12
        )
        assert other.quantile.level == reference.quantile.level
        assert torch.equal(other.quantile.counts, reference.quantile.counts)
        assert torch.equal(other.thresholds(), reference.thresholds())
        assert other.images == n


# --- state


def test_state_dict_round_trip_through_torch_save_and_safetensors():
    data = make_data(90, 4, (5, 5), "relu", seed=10)
    labels = torch.arange(90) % 5 - 1
    stats = UnitStats(4, k=6, rank_cap=16)
    for start in range(0, 60, 20):
        stats.update(
            data[start : start + 20], torch.arange(start, start + 20), labels[start : start + 20]
        )
    state = stats.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    again = UnitStats.from_state_dict(loaded)
    for key, value in again.state_dict().items():
        assert torch.equal(value, state[key]), key
    # both continue identically
    for target in (stats, again):
        target.update(data[60:], torch.arange(60, 90), labels[60:])
    for key, value in again.state_dict().items():
        assert torch.equal(value, stats.state_dict()[key]), key
    safetensors = pytest.importorskip("safetensors.torch")
    restored = UnitStats.from_state_dict(safetensors.load(safetensors.save(stats.state_dict())))
    assert torch.equal(restored.thresholds(), stats.thresholds())
    assert torch.equal(restored.topk.indices, stats.topk.indices)


def test_memory_does_not_grow():
    stats = UnitStats(4, k=8, rank_cap=16, num_classes=10)
    g = torch.Generator().manual_seed(11)
    sizes = {}
    for step in range(1000):
        acts = torch.randn(4, 4, 4, 4, generator=g)
        stats.update(
            acts, torch.arange(4 * step, 4 * step + 4), torch.randint(-1, 10, (4,), generator=g)
        )
        if step + 1 in (10, 1000):
            sizes[step + 1] = state_nbytes(stats.state_dict())
    assert stats.quantile.level >= 4  # the sketch halved its rate several times meanwhile
    assert sizes[10] == sizes[1000]


# --- bad input


def test_bad_input_is_refused_with_the_fix():
    stats = UnitStats(3)
    acts = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="3 units"):
        stats.update(torch.rand(2, 4, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        stats.update(
            acts.clone().index_fill_(0, torch.tensor([1]), float("nan")), torch.tensor([0, 1])
        )
    with pytest.raises(ValueError, match=">= 0"):
        stats.update(acts, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        stats.update(acts, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="-1 for unlabelled"):
        stats.update(acts, torch.tensor([0, 1]), torch.tensor([0, -2]))
    with pytest.raises(TypeError, match="integers"):
        stats.update(acts, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="rank_cap"):
        stats.merge(UnitStats(3, rank_cap=512))
    with pytest.raises(ValueError, match="seed"):
        stats.quantile.merge(UpperQuantile(3, seed=1))
    assert stats.images == 0  # nothing was counted
    stats.update(acts.half(), torch.tensor([0, 1]))  # half precision is read as float32
    assert stats.images == 2


def test_empty_states_merge_and_round_trip():
    empty = UnitStats(3, rank_cap=16)
    assert torch.isnan(empty.thresholds()).all()
    again = UnitStats.from_state_dict(empty.state_dict())
    assert torch.isnan(again.thresholds()).all() and again.topk.filled() == 0
    empty.update(torch.rand(0, 3, 2, 2), torch.zeros(0, dtype=torch.int64))  # nothing
    data = make_data(40, 3, (3, 3), "normal", seed=12)
    full = UnitStats(3, rank_cap=16)
    full.update(data, torch.arange(40))
    before = full.state_dict()
    full.merge(UnitStats(3, rank_cap=16))
    for key, value in full.state_dict().items():
        assert torch.equal(value, before[key]), key
    fresh = UnitStats(3, rank_cap=16).merge(full)
    assert torch.equal(fresh.thresholds(), full.thresholds())
    assert torch.equal(fresh.topk.indices, full.topk.indices)
