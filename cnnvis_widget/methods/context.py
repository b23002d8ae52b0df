"""What every attribution method receives, and the helpers they share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..model_view import user_hooks
from ..models import logits_of
from .fast_model import fast_model
from .frozen_inference import frozen_inference

StepCallback = Callable[[torch.Tensor, float], "bool | None"]


def check_targets_in_range(targets: torch.Tensor, classes: int) -> None:
    """Raise ``ValueError`` when a class index (targets: (N,) long) is not below ``classes``."""
    if targets.numel() and int(targets.max()) >= classes:
        raise ValueError(
            f"target {int(targets.max())} is out of range: the model has {classes} classes. "
            f"Pick a class index from 0 to {classes - 1} (bundle.labels names them)."
        )


class Cancelled(RuntimeError):
    """A long method was stopped by its ``on_step`` callback."""


@dataclass
class AttributionRequest:
    """A validated call: ``module`` is the eval-mode view of the user's model that the method
    runs on (:func:`~cnnvis_widget.model_view.eval_view`; hooks may be added to it), ``origin``
    the user's model itself (only read: it keys the caches of faster stand-ins), ``x`` the
    model input ``(N, C, H, W)`` on the model's device, ``targets`` the class index per sample
    (``None`` = the predicted class), ``layer`` the dotted name of the layer for layer
    methods."""

    module: nn.Module
    x: torch.Tensor
    targets: torch.Tensor | None
    layer: str | None
    on_step: StepCallback | None = None
    fast: bool = False
    origin: nn.Module | None = None

    @functools.cached_property
    def _fast_origin(self) -> nn.Module | None:
        """The user's model when the fast stand-in may replace it: ``fast`` was asked and the
        model has no hooks or parametrizations of its own (the stand-in is rebuilt from the
        modules' ``forward`` alone, so it could not honour them)."""
        if not self.fast or self.origin is None or user_hooks(self.origin):
            return None
        return self.origin

    @property
    def network(self) -> nn.Module:
        """The module for whole-network passes (input -> logits): with ``fast`` the cached
        stand-in of :mod:`.fast_model` (same function, less work), else ``module`` itself.
        Anything that needs the model's own layers (hooks by name) uses ``module``."""
        origin = self._fast_origin
        return self.module if origin is None else fast_model(origin, self.x[:1])

    @property
    def inference_network(self) -> Callable[[torch.Tensor], object]:
        """For many no-grad passes (input -> the model's output): with ``fast`` the stand-in's
        :class:`~.frozen_inference.FrozenInference` (a frozen graph where measured faster),
        else ``module`` itself."""
        origin = self._fast_origin
        return self.module if origin is None else frozen_inference(fast_model(origin, self.x[:1]))

    def report(self, partial: Callable[[], torch.Tensor], done: float) -> None:
        """Hand a partial map (computed only if someone listens) and the fraction of the work
        done to ``on_step``; a callback that returns ``False`` stops the method with
        :class:`Cancelled`."""
        if self.on_step is not None and self.on_step(partial(), done) is False:
            raise Cancelled(f"stopped by on_step at {100 * done:.0f}%")

    def sub(self, x: torch.Tensor, targets: torch.Tensor) -> AttributionRequest:
        """The same model on another batch (e.g. noisy or path copies), without streaming."""
        return AttributionRequest(self.module, x, targets, None, fast=self.fast, origin=self.origin)

    def scores(self, output: object) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum over the batch of each sample's target logit, targets used) from the model
        output. Summing is exact for per-sample gradients: samples do not interact in eval mode."""
        per_sample, targets = self.scores_per_sample(output)
        return per_sample.sum(), targets

    def scores_per_sample(
        self, output: object, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(target logit of each sample (N,), targets used); ``targets`` overrides the
        request's (e.g. repeated for a batch of perturbed copies)."""
        logits = logits_of(output)
        if logits.ndim != 2:
            raise ValueError(
                f"the model output has shape {tuple(logits.shape)}; attribution needs logits "
                "(N, classes)."
            )
        if targets is None:
            targets = self.targets if self.targets is not None else logits.argmax(dim=1)
        check_targets_in_range(targets, logits.shape[1])
        return logits.gather(1, targets.view(-1, 1).to(logits.device)).squeeze(1), targets
