"""What synthesis methods return and what they stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..images import image_sheet


@dataclass
class SynthesisFrame:
    """One step of a running optimization, handed to ``on_step``.

    ``images`` (K, 3, H, W) in [0, 1] are a copy of the current images, made when first read
    (read them inside ``on_step``: the optimization moves on after it returns); ``values``
    (K,) the traced quantity after this step (``trace_name`` says which); ``step`` counts steps
    done out of ``total``."""

    step: int
    total: int
    render: Callable[[], torch.Tensor] = field(repr=False)
    values: torch.Tensor
    trace_name: str
    first: int = 0
    """Index of ``images[0]`` in the result (a whole layer runs in several batches)."""
    _images: torch.Tensor | None = field(default=None, repr=False)

    @property
    def images(self) -> torch.Tensor:
        # Copied only when someone looks: a listener that skips most frames (the widget
        # shows at most 20 per second) costs no copy on those steps.
        if self._images is None:
            self._images = self.render().detach().clone()
        return self._images

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


OnStep = Callable[[SynthesisFrame], "bool | None"]
"""``on_step(frame)``; returning ``False`` stops the optimization after this step: the method
then returns what it has, with ``stopped=True``."""


@dataclass
class SynthesisResult:
    """``images`` (K, 3, H, W) in [0, 1], on the model's device; ``trace`` (steps, K) the
    traced quantity per step (``trace_name``: the objective for feature visualization, the
    relative feature error for pre-images, p(target) for fooling images, the loss for style
    transfer); ``stopped`` when ``on_step`` stopped it early; ``info`` per-method extras.
    Pass a result as ``resume=`` to the method that made it to continue where it stopped."""

    images: torch.Tensor
    trace: torch.Tensor
    trace_name: str
    stopped: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    resume_state: Any = field(default=None, repr=False)

    @property
    def steps(self) -> int:
        return int(self.trace.shape[0])

    def to_pil(self, columns: int = 8, padding: int = 2) -> Image.Image:
        """The images side by side (``columns`` per row) as one PIL image, for a notebook."""
        return image_sheet(self.images, columns, padding)


def run_steps(
    total: int,
    step: Callable[[int], torch.Tensor],
    current_images: Callable[[], torch.Tensor],
    on_step: OnStep | None,
    trace_name: str,
    start: int = 0,
    stop_when: Callable[[torch.Tensor], bool] | None = None,
    first: int = 0,
) -> tuple[list[torch.Tensor], bool]:
    """Run ``step(i)`` for i in ``start..total-1``; each returns the traced values (K,).

    Streams a :class:`SynthesisFrame` after every step when ``on_step`` is given (the images
    come from ``current_images()``, copied), and ends early when ``on_step`` returns ``False``
    (then ``stopped`` is ``True``) or ``stop_when(values)`` holds. Returns (trace rows,
    stopped)."""
    trace: list[torch.Tensor] = []
    for index in range(start, total):
        values = step(index).detach()
        trace.append(values)
        if on_step is not None:
            frame = SynthesisFrame(
                index + 1,
                total,
                current_images,
                values.clone(),
                trace_name,
                first,
            )
            if on_step(frame) is False:
                return trace, index + 1 < total
        if stop_when is not None and stop_when(values):
            break
    return trace, False


def stack_trace(rows: list[torch.Tensor], count: int, device: torch.device) -> torch.Tensor:
    """Trace rows -> (steps, K) float32 tensor (empty (0, K) when no step ran)."""
    if not rows:
        return torch.zeros(0, count, device=device)
    return torch.stack([row.float() for row in rows])


def offset_frames(
    on_step: OnStep | None, steps_before: int, total: int, first: int = 0
) -> OnStep | None:
    """``on_step`` for one part of a longer run (an octave, a stage, a batch of a layer):
    frames report their step counted from the run's start out of ``total``, and ``first``,
    the index of their first image in the whole result."""
    if on_step is None:
        return None

    def report(frame: SynthesisFrame) -> bool | None:
        frame.step, frame.total, frame.first = steps_before + frame.step, total, first
        return on_step(frame)

    return report
