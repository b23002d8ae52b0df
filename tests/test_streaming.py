"""Long methods stream partial maps through on_step and stop when it returns False."""

from __future__ import annotations

import pytest
import torch
from support import hook_count

import cnnvis_widget as cv
from cnnvis_widget.methods import Cancelled

LONG = {
    "smoothgrad": {"n_samples": 7, "batch_size": 3},
    "integrated_gradients": {"steps": 10, "batch_size": 4},
    "occlusion": {"window": 4, "stride": 4, "batch_size": 6},
    "scorecam": {"batch_size": 5},
}


@pytest.mark.parametrize("method", list(LONG))
def test_partial_maps_converge_to_the_result(tiny, tiny_input, method: str) -> None:
    steps: list[tuple[torch.Tensor, float]] = []
    result = cv.attribute(
        tiny, tiny_input, method, target=[1, 2, 3],
        on_step=lambda partial, done: steps.append((partial.clone(), done)), **LONG[method],
    )  # fmt: skip
    fractions = [done for _, done in steps]
    assert len(steps) >= 2 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(partial.shape == result.shape for partial, _ in steps)
    assert torch.allclose(steps[-1][0], result, rtol=1e-10, atol=1e-14)
    assert not torch.allclose(steps[0][0], result)  # the first one really is partial
    # Streaming does not change the answer (a listener only changes the batch grouping).
    quiet = cv.attribute(tiny, tiny_input, method, target=[1, 2, 3], **LONG[method])
    assert torch.allclose(result, quiet, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("method", list(LONG))
def test_on_step_returning_false_stops_the_method(residual, tiny_input, method: str) -> None:
    residual.train()
    calls: list[float] = []

    def stop(_partial: torch.Tensor, done: float) -> bool:
        calls.append(done)
        return False

    with pytest.raises(Cancelled):
        cv.attribute(residual, tiny_input, method, target=1, on_step=stop, **LONG[method])
    assert len(calls) == 1 and calls[0] < 1.0
    assert hook_count(residual) == 0 and all(m.training for m in residual.modules())
    assert torch.is_grad_enabled()


def test_smoothgrad_noise_does_not_depend_on_batching(tiny, tiny_input) -> None:
    # One noise draw per copy: batch sizes and a listener change the grouping, not the map.
    reference = cv.attribute(tiny, tiny_input, "smoothgrad", target=1, n_samples=9, batch_size=9)
    for batch_size in (1, 4):
        other = cv.attribute(
            tiny, tiny_input, "smoothgrad", target=1, n_samples=9, batch_size=batch_size
        )
        assert torch.allclose(other, reference, rtol=1e-10, atol=1e-13)
    streamed = cv.attribute(
        tiny, tiny_input, "smoothgrad", target=1, n_samples=9, on_step=lambda m, f: None
    )
    assert torch.allclose(streamed, reference, rtol=1e-10, atol=1e-13)


def test_first_partial_map_comes_after_one_sample(tiny, tiny_input) -> None:
    fractions: list[float] = []
    cv.attribute(
        tiny, tiny_input, "smoothgrad", target=1, n_samples=50,
        on_step=lambda m, f: fractions.append(f),
    )  # fmt: skip
    assert fractions[0] == 1 / 50 and fractions[1] == 9 / 50 and fractions[-1] == 1.0
