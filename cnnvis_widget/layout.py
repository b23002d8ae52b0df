"""Choices between equivalent ways of running a pass, made by measurement.

Channels-last is oneDNN's (CPU) and cuDNN's (tensor cores) faster layout for dense
convolutions: ResNet-style passes run up to 1.5x faster in it. EfficientNet's depthwise
convolutions run up to 2x slower in it, and at batch 1 the conversion can cost more than it
saves. So the layout is not assumed: the first pass of a kind (per key) runs in both layouts,
each once to warm up and once timed, and the faster one is used from then on. The same
measurement (:func:`fastest`) can pick between any equivalent candidates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping

import torch

_CHOICES: dict[Hashable, Hashable] = {}
KEPT_CHOICES = 1024
"""Measured choices kept (oldest dropped first): keys name models by ``id``, so a notebook
that keeps making new models would otherwise grow this without bound."""
LAYOUTS = (torch.channels_last, torch.contiguous_format)


def fastest(
    key: Hashable, candidates: Mapping[Hashable, Callable[[], object]], device: torch.device
) -> Hashable:
    """The name of the fastest of ``candidates`` (name -> a call doing one pass), measured the
    first time ``key`` is asked and remembered for the process's lifetime: each candidate runs
    once to warm up, then once timed (:func:`best_times`). ``device``: where the passes run."""
    chosen = _CHOICES.get(key)
    if chosen is not None:
        return chosen
    for run in candidates.values():
        run()  # warm-up: first-use costs such as allocations are not timed
    timings = best_times(candidates, device)
    chosen = min(timings, key=lambda name: timings[name])
    _CHOICES[key] = chosen
    while len(_CHOICES) > KEPT_CHOICES:
        _CHOICES.pop(next(iter(_CHOICES)))
    return chosen


def best_times(
    candidates: Mapping[Hashable, Callable[[], object]], device: torch.device, rounds: int = 1
) -> dict[Hashable, float]:
    """Seconds per candidate, best of ``rounds`` rounds that run every candidate in turn
    (interleaved, so a drift of the machine's speed hits all alike); CUDA is synchronized
    before each clock read."""
    timings = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings[name] = min(timings[name], time.perf_counter() - start)
    return timings


def faster_layout(
    key: Hashable, x: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor]
) -> torch.memory_format:
    """The faster layout for passes like ``run(x)`` (4-D ``x``; ``run`` returns a tensor whose
    sum is backpropagated to ``x`` when grad mode is on, as the real passes do). Measured once
    per ``key`` and grad mode; a key should name the model, the batch size, the channels, the
    device, the dtype and the autocast state, whatever else varies."""
    backward = torch.is_grad_enabled()

    def pass_in(layout: torch.memory_format) -> Callable[[], None]:
        def one_pass() -> None:
            probe = x.detach().contiguous(memory_format=layout).requires_grad_(backward)
            output = run(probe)
            if backward:
                torch.autograd.grad(output.float().sum(), probe, allow_unused=True)

        return one_pass

    chosen = fastest(
        ("layout", key, backward), {layout: pass_in(layout) for layout in LAYOUTS}, x.device
    )
    assert isinstance(chosen, torch.memory_format)
    return chosen
