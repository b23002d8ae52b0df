"""Forward-only passes through a frozen TorchScript graph, where that is measured faster.

Score-CAM, occlusion and the deletion/insertion scores run hundreds to thousands of no-grad
forward passes of the whole network. On a CPU, TorchScript's freezing + inference optimization
(`torch.jit.optimize_for_inference`) turns the stand-in of :mod:`.fast_model` into a graph of
oneDNN convolutions with prepacked weights and fused activations: on this project's 2-core
machine ResNet-50 at batch 8 runs 1.2-1.4x faster and VGG-16 1.3x, while EfficientNet's
depthwise convolutions run 2x slower. So it is not assumed: for every input shape the frozen
graph is first checked to compute the same logits as the eager stand-in, then both are timed
on the first real passes of that shape (alternating, best of 2 each) and the faster is used.

Costs: building the frozen graph takes 1.5 s (ResNet-50) to 5 s (VGG-16) once per model and
input size, and it holds its own prepacked copy of the weights. Only CPU passes in no-grad mode
use it (gradients need the eager graph; on CUDA, cuDNN already runs the eager convolutions).
Where tracing fails (data-dependent control flow, a future torch without TorchScript) the eager
stand-in is used, silently: the results are the same either way.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch
from torch import nn

from .fast_model import MeasuredLayout, same_outputs

TIMED_ROUNDS = 2
"""Timed passes per candidate before a shape's choice is made (eager passes here vary by up to
1.5x from one to the next, so one sample misleads)."""


@dataclass
class _Trial:
    """The timing of one input shape's first real passes: best seconds per candidate."""

    best: dict[bool, float] = field(default_factory=lambda: {False: math.inf, True: math.inf})
    passes: int = 0


class FrozenInference:
    """Callable like the stand-in ``eager`` (input (N, C, H, W) -> the model's output); in
    no-grad mode on the CPU, runs the frozen graph for the shapes where it is checked and
    measured faster.

    The measurement costs no extra passes: the first pass of a shape runs both (the check,
    which doubles as the warm-up), the next ``2 TIMED_ROUNDS`` alternate between them and are
    timed, and every one of them returns its real output."""

    def __init__(self, eager: MeasuredLayout) -> None:
        self.eager = eager
        self._graphs: dict[Hashable, torch.jit.ScriptModule | None] = {}  # per C, H, W, dtype
        self._use_graph: dict[Hashable, bool] = {}  # per full shape and dtype, once decided
        self._trials: dict[Hashable, _Trial] = {}

    def __call__(self, x: torch.Tensor) -> object:
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.ndim != 4:
            return self.eager(x)
        if torch.is_autocast_enabled("cpu"):
            return self.eager(x)
        key = (tuple(x.shape), x.dtype)
        use_graph = self._use_graph.get(key)
        if use_graph is not None:
            graph = self._graphs[(tuple(x.shape[1:]), x.dtype)]
            return graph(x) if use_graph and graph is not None else self.eager(x)
        trial = self._trials.get(key)
        if trial is None:
            return self._check(key, x)
        return self._timed(key, trial, x)

    def _check(self, key: Hashable, x: torch.Tensor) -> object:
        """First pass of a shape: both candidates run (warm-up) and must agree."""
        graph = self._graph_for(x)
        expected = self.eager(x)
        if graph is None or not same_outputs(expected, graph(x)):
            self._use_graph[key] = False
        else:
            self._trials[key] = _Trial()
        return expected

    def _timed(self, key: Hashable, trial: _Trial, x: torch.Tensor) -> object:
        candidate = trial.passes % 2 == 1  # eager, graph, eager, graph, ...
        graph = self._graphs[(tuple(x.shape[1:]), x.dtype)]
        assert graph is not None
        start = time.perf_counter()
        output = graph(x) if candidate else self.eager(x)
        trial.best[candidate] = min(trial.best[candidate], time.perf_counter() - start)
        trial.passes += 1
        if trial.passes == 2 * TIMED_ROUNDS:
            self._use_graph[key] = self._faster(trial.best)
            del self._trials[key]
        return output

    @staticmethod
    def _faster(best: dict[bool, float]) -> bool:
        """Whether the graph's best time beat eager's."""
        return best[True] < best[False]

    def _graph_for(self, x: torch.Tensor) -> torch.jit.ScriptModule | None:
        graph_key = (tuple(x.shape[1:]), x.dtype)
        if graph_key not in self._graphs:
            self._graphs[graph_key] = _frozen_graph(self.eager.inner, x)
        return self._graphs[graph_key]


def _frozen_graph(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule | None:
    """``module`` traced on ``example``, frozen and optimized for inference; None if any step
    fails or the tracer warns (a Python branch on a tensor's value: the trace would hold only
    the branch this example took, so one check could not catch it). TorchScript's deprecation
    warnings are not the user's concern here."""
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            traced = torch.jit.trace(module, example, check_trace=False, strict=False)
            if any(issubclass(w.category, torch.jit.TracerWarning) for w in caught):
                return None
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception:
        return None


def frozen_inference(stand_in: MeasuredLayout) -> FrozenInference:
    """The :class:`FrozenInference` of ``stand_in`` (a :func:`.fast_model.fast_model` result),
    created on first use and kept with it, so it is rebuilt whenever the stand-in is."""
    runner = stand_in.__dict__.get("_frozen_inference")
    if runner is None:
        runner = FrozenInference(stand_in)
        stand_in.__dict__["_frozen_inference"] = runner
    return runner
