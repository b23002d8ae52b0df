"""PeakHistogram: exact counts against numpy for any range, identical for any sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnvis_widget.unit_stats import PeakHistogram, UnitStats
from cnnvis_widget.unit_stats.histogram import BINS, HALF


def brute_force(values: np.ndarray, unit: int, exponent: int) -> np.ndarray:
    width = 2.0**exponent
    edges = (np.arange(BINS + 1) - HALF) * width
    return np.histogram(values[:, unit], bins=edges)[0]


@pytest.mark.parametrize("scale", [1e-9, 0.37, 1.0, 250.0, 3e7])
def test_counts_equal_numpy_on_the_final_bins(scale):
    generator = torch.Generator().manual_seed(0)
    # units of very different ranges, signs and a dead one
    values = torch.randn(500, 4, generator=generator, dtype=torch.float64) * scale
    values[:, 1] = values[:, 1].abs() * 40
    values[:, 2] = 0.0
    values[:, 3] = -values[:, 3].abs()
    histogram = PeakHistogram(4)
    for chunk in values.split(37):  # ranges grow batch by batch: bins coarsen on the way
        histogram.update(chunk)
    for unit in range(4):
        exponent = int(histogram.exponent[unit])
        peak = float(values[:, unit].abs().max())
        if peak > 0:  # the smallest width that holds every value
            assert peak < HALF * 2.0**exponent
            assert peak >= HALF * 2.0 ** (exponent - 1)
        expected = brute_force(values.numpy(), unit, exponent)
        assert histogram.counts[unit].tolist() == expected.tolist()
        edges, counts = histogram.bins(unit)
        assert int(counts.sum()) == 500 and counts[0] > 0 and counts[-1] > 0
        assert float(edges[0]) <= float(values[:, unit].min()) < float(edges[1])


def test_any_sharding_and_order_gives_the_same_state():
    generator = torch.Generator().manual_seed(1)
    values = torch.rand(300, 3, generator=generator) * torch.tensor([1.0, 100.0, 0.01])
    whole = PeakHistogram(3)
    whole.update(values)
    parts = []
    order = torch.randperm(300, generator=generator)
    for chunk in values[order].split(70):
        part = PeakHistogram(3)
        part.update(chunk)
        parts.append(part)
    merged = parts[-1]
    for part in reversed(parts[:-1]):
        merged = merged.merge(part)
    assert torch.equal(merged.counts, whole.counts)
    assert torch.equal(merged.exponent, whole.exponent)


def test_unit_stats_keeps_the_histogram_of_spatial_maxima_and_round_trips():
    acts = torch.randn(40, 5, 3, 3, generator=torch.Generator().manual_seed(2))
    stats = UnitStats(5, k=3)
    stats.update(acts[:25], torch.arange(25))
    stats.update(acts[25:], torch.arange(25, 40))
    maxima = acts.amax(dim=(2, 3)).double().numpy()
    for unit in range(5):
        exponent = int(stats.histogram.exponent[unit])
        assert stats.histogram.counts[unit].tolist() == brute_force(maxima, unit, exponent).tolist()
    again = UnitStats.from_state_dict(stats.state_dict())
    assert torch.equal(again.histogram.counts, stats.histogram.counts)
