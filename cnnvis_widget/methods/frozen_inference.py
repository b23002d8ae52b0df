"""Forward-only passes through a frozen TorchScript graph, where that is measured faster.

Score-CAM, occlusion and the deletion/insertion scores run hundreds to thousands of no-grad
forward passes of the whole network. On a CPU, TorchScript's freezing + inference optimization
(`torch.jit.optimize_for_inference`) turns the stand-in of :mod:`.fast_model` into a graph of
oneDNN convolutions with prepacked weights and fused activations: on this project's 2-core
machine ResNet-50 at batch 8 runs 1.2-1.4x faster and VGG-16 1.3x, while EfficientNet's
depthwise convolutions run 2x slower. So it is not assumed: for every input shape the frozen
graph is first checked to compute the same logits as the eager stand-in, then both are timed
(:func:`~cnnvis_widget.layout.fastest`, best of 3 interleaved rounds) and the faster is used.

Costs: building the frozen graph takes 1.5 s (ResNet-50) to 5 s (VGG-16) once per model and
input size, and it holds its own prepacked copy of the weights. Only CPU passes in no-grad mode
use it (gradients need the eager graph; on CUDA, cuDNN already runs the eager convolutions).
Where tracing fails (data-dependent control flow, a future torch without TorchScript) the eager
stand-in is used, silently: the results are the same either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable

import torch
from torch import nn

from ..layout import fastest
from .fast_model import MeasuredLayout, same_function


class FrozenInference:
    """Callable like the stand-in ``eager`` (input (N, C, H, W) -> the model's output); in
    no-grad mode on the CPU, runs the frozen graph for the shapes where it is checked and
    measured faster."""

    def __init__(self, eager: MeasuredLayout) -> None:
        self.eager = eager
        self._graphs: dict[Hashable, torch.jit.ScriptModule | None] = {}  # per C, H, W, dtype
        self._use_graph: dict[Hashable, bool] = {}  # per full shape and dtype

    def __call__(self, x: torch.Tensor) -> object:
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.ndim != 4:
            return self.eager(x)
        if torch.is_autocast_enabled("cpu"):
            return self.eager(x)
        key = (tuple(x.shape), x.dtype)
        use_graph = self._use_graph.get(key)
        if use_graph is None:
            use_graph = self._choose(key, x)
        graph = self._graphs.get((tuple(x.shape[1:]), x.dtype))
        return graph(x) if use_graph and graph is not None else self.eager(x)

    def _choose(self, key: Hashable, x: torch.Tensor) -> bool:
        graph = self._graph_for(x)
        if graph is None or not same_function(self.eager, graph, x):
            self._use_graph[key] = False
            return False
        choice = fastest(
            ("frozen", id(self), key),
            {False: lambda: self.eager(x), True: lambda: graph(x)},
            x.device,
            rounds=3,  # eager passes vary by up to 1.5x here: one sample misleads
        )
        self._use_graph[key] = bool(choice)
        return bool(choice)

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
