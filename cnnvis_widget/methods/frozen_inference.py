"""Forward-only passes through a frozen TorchScript graph, where that is measured faster.

Score-CAM, occlusion and the deletion/insertion scores run hundreds to thousands of no-grad
forward passes of the whole network. On a CPU, TorchScript's freezing + inference optimization
(`torch.jit.optimize_for_inference`) turns the stand-in of :mod:`.fast_model` into a graph of
oneDNN convolutions with prepacked weights and fused activations: on this project's 2-core
machine ResNet-50 at batch 8 runs 1.2-1.4x faster and VGG-16 1.3x, while EfficientNet's
depthwise convolutions run 2x slower at batch 8 (and about the same at batch 1). So it is not
assumed: for every input shape (batch size included) the first batch of that shape runs both,
they must give the same logits, then both are timed (2 interleaved rounds, best of each) and
the faster is used for that shape from then on. That first call costs 4 extra passes per
shape, once per model and process; a batch at least half as large as a decided one (the last
chunk of a method's batches) is padded to it instead.

Costs: building the frozen graph takes 1.5 s (ResNet-50) to 5 s (VGG-16) once per model and
input size, and it holds its own prepacked copy of the weights (dropped again when no shape
chose it). Only float32 CPU passes in no-grad mode without autocast use it (gradients need the
eager graph; oneDNN's inference path has no float64; on CUDA, cuDNN already runs the eager
convolutions). Where tracing fails or warns (data-dependent control flow), the graph raises
at run time (oneDNN refuses some pooling sizes), the model returns something other than a
tensor, or a future torch has no TorchScript, the eager stand-in is used: the results are the
same either way, and identical from call to call.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Hashable

import torch
from torch import nn

from ..layout import best_times
from .fast_model import MeasuredLayout, same_outputs

Shape = tuple[int, ...]

TIMED_ROUNDS = 2
"""Timed passes per candidate for a new shape (eager passes here vary by up to 1.5x from one
to the next, so one sample misleads)."""

_LOCK = threading.RLock()
"""First passes (graph building, checks, timing) run one at a time, across all models: the
tracer's warnings are caught process-wide, and a decision is published only when complete."""


class FrozenInference:
    """Callable like the stand-in ``eager`` (input (N, C, H, W) -> the model's output); in
    no-grad mode on the CPU with float32 inputs, runs the frozen graph for the shapes where it
    is checked and measured faster. Every call returns the chosen candidate's output, so
    repeated calls give identical results."""

    def __init__(self, eager: MeasuredLayout) -> None:
        self.eager = eager
        self._graphs: dict[Shape, torch.jit.ScriptModule | None] = {}  # per (C, H, W)
        self._use_graph: dict[Shape, bool] = {}  # per full shape, once decided

    def __call__(self, x: torch.Tensor) -> object:
        if (
            torch.is_grad_enabled()
            or x.device.type != "cpu"
            or x.ndim != 4
            or x.dtype != torch.float32
            or torch.is_autocast_enabled("cpu")
        ):
            return self.eager(x)
        use_graph = self._use_graph.get(tuple(x.shape))
        if use_graph is None:
            padded = self._padded_batch(x)
            if padded is not None:
                return padded
            with _LOCK:
                return self._first_pass(x)
        graph = self._graphs.get(tuple(x.shape[1:]))
        return graph(x) if use_graph and graph is not None else self.eager(x)

    def _padded_batch(self, x: torch.Tensor) -> object | None:
        """The output for a batch smaller than a decided one of the same image size (a last,
        partial chunk) but at least half of it: where that size chose the graph, run padded to
        it with copies of its last image (cheaper than the checks and timings of a new shape);
        where it chose eager, run eager. None otherwise."""
        n, size = x.shape[0], tuple(x.shape[1:])
        decided = [  # a copy: another thread may decide a shape meanwhile
            (s[0], use) for s, use in list(self._use_graph.items()) if s[1:] == size
        ]
        larger = sorted((b, use) for b, use in decided if n < b <= 2 * n)
        if not larger:
            return None
        full, use_graph = larger[0]
        if not use_graph:
            return self.eager(x)  # eager is as fast unpadded (and may not return a tensor)
        out = self(torch.cat([x, x[-1:].expand(full - n, *size)]))
        return out[:n] if isinstance(out, torch.Tensor) else None

    def _first_pass(self, x: torch.Tensor) -> object:
        """A new shape: check the graph against eager, time both, publish the choice; return
        the chosen candidate's output."""
        shape, size = tuple(x.shape), tuple(x.shape[1:])
        if shape in self._use_graph:  # decided by another thread while this one waited
            return self(x)
        expected = self.eager(x)
        graph = self._graph_for(x) if isinstance(expected, torch.Tensor) else None
        got = _run_or_none(graph, x)
        if got is None or not same_outputs(expected, got):
            self._decide(shape, size, False)
            return expected
        assert graph is not None
        candidates: dict[Hashable, Callable[[], object]] = {
            False: lambda: self.eager(x),
            True: lambda: graph(x),
        }
        timings = best_times(candidates, x.device, rounds=TIMED_ROUNDS)
        use_graph = self._faster(timings)
        self._decide(shape, size, use_graph)
        return got if use_graph else expected

    def _decide(self, shape: Shape, size: Shape, use_graph: bool) -> None:
        self._use_graph[shape] = use_graph
        if not use_graph and not any(s[1:] == size and use for s, use in self._use_graph.items()):
            self._graphs.pop(size, None)  # free the prepacked weights; rebuilt if a shape wants it

    @staticmethod
    def _faster(best: dict[Hashable, float]) -> bool:
        """Whether the graph's best time beat eager's."""
        return best[True] < best[False]

    def _graph_for(self, x: torch.Tensor) -> torch.jit.ScriptModule | None:
        size = tuple(x.shape[1:])
        if size not in self._graphs:
            self._graphs[size] = _frozen_graph(self.eager.inner, x)
        return self._graphs[size]


def _run_or_none(graph: torch.jit.ScriptModule | None, x: torch.Tensor) -> torch.Tensor | None:
    """The graph's tensor output on ``x``; None without a graph, on any error (e.g. an oneDNN
    op that refuses this shape) or for a non-tensor output."""
    if graph is None:
        return None
    try:
        got = graph(x)
    except Exception:
        return None
    return got if isinstance(got, torch.Tensor) else None


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


def frozen_inference(stand_in: MeasuredLayout) -> Callable[[torch.Tensor], object]:
    """The :class:`FrozenInference` of ``stand_in`` (a :func:`.fast_model.fast_model` result),
    created on first use and kept with it, so it is rebuilt whenever the stand-in is. The
    stand-in itself for a model whose weights change between calls (a frozen graph holds a
    copy of the weights, which would go stale; rebuilding it every call would cost more than
    it saves)."""
    if stand_in.values_changed:
        return stand_in
    with _LOCK:
        runner = stand_in.__dict__.get("_frozen_inference")
        if runner is None:
            runner = FrozenInference(stand_in)
            stand_in.__dict__["_frozen_inference"] = runner
        return runner
