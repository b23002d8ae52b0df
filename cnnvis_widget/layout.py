"""Activation memory layout chosen by measurement.

Channels-last is oneDNN's (CPU) and cuDNN's (tensor cores) faster layout for dense
convolutions: ResNet-style passes run up to 1.5x faster in it. EfficientNet's depthwise
convolutions run up to 2x slower in it, and at batch 1 the conversion can cost more than it
saves. So the layout is not assumed: the first pass of a kind (per key) runs in both layouts,
each once to warm up and once timed, and the faster one is used from then on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import torch

_CHOICES: dict[Hashable, torch.memory_format] = {}
LAYOUTS = (torch.channels_last, torch.contiguous_format)


def faster_layout(
    key: Hashable, x: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor]
) -> torch.memory_format:
    """The faster layout for passes like ``run(x)`` (4-D ``x``; ``run`` returns a tensor whose
    sum is backpropagated to ``x`` when grad mode is on, as the real passes do). Measured once
    per ``key`` and grad mode; a key should name the model, the batch size, the channels, the
    device, the dtype and the autocast state, whatever else varies."""
    backward = torch.is_grad_enabled()
    full_key = (key, backward)
    chosen = _CHOICES.get(full_key)
    if chosen is not None:
        return chosen
    timings: dict[torch.memory_format, float] = {}
    for layout in LAYOUTS:
        for _ in range(2):  # warm-up, then timed
            probe = x.detach().contiguous(memory_format=layout).requires_grad_(backward)
            start = time.perf_counter()
            output = run(probe)
            if backward:
                torch.autograd.grad(output.float().sum(), probe, allow_unused=True)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            timings[layout] = time.perf_counter() - start
    chosen = min(timings, key=lambda layout: timings[layout])
    _CHOICES[full_key] = chosen
    return chosen
