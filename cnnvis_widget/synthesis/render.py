"""Lucid-style rendering: optimize a parameterized batch of images for an objective with Adam,
under random robustness transforms (Olah et al. 2017, Lucid's defaults)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from ..checks import check_callback, check_number
from ..model_view import engine_call
from .image_params import ImageParam, ParamKind, make_param, restore_param
from .network import ModelLike, SynthesisNet
from .objectives import Objective
from .regularizers import alpha_norm, gaussian_blur, total_variation
from .result import OnStep, SynthesisResult, run_steps, stack_trace
from .transforms import Robustness

STANDARD_TRANSFORM = Robustness()
Precision = Literal["float32", "bfloat16"]


def autocast(device: torch.device, precision: Precision) -> torch.autocast:
    """The network's arithmetic precision for the block: float32 as is, or bfloat16 autocast."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16'; got {precision!r}.")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


@dataclass(frozen=True)
class Penalties:
    """Weights of image priors subtracted from the objective, on [0, 1] images: ``l2`` the
    mean squared distance from grey, ``tv`` total variation (beta 2), ``blur`` the mean
    squared difference from a blurred copy (sigma 1 px)."""

    l2: float = 0.0
    tv: float = 0.0
    blur: float = 0.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        total = images.new_zeros(images.shape[0])
        if self.l2:
            total = total + self.l2 * alpha_norm(images - 0.5, alpha=2.0)
        if self.tv:
            total = total + self.tv * total_variation(images, beta=2.0)
        if self.blur:
            blurred = gaussian_blur(images, 1.0).detach()
            total = total + self.blur * (images - blurred).pow(2).mean(dim=(1, 2, 3))
        return total


NO_PENALTIES = Penalties()


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (stochastic methods take ``seed``)."""
    try:
        value = operator.index(seed)  # ints, numpy ints; not floats, strings or bools
    except TypeError:
        value = None
    if value is None or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {seed!r}.")
    return torch.Generator(device=device).manual_seed(value)


def image_size(
    net: SynthesisNet, size: int | tuple[int, int] | None, default: int
) -> tuple[int, int]:
    """(H, W) of the images a method synthesizes: ``size`` when given (a side or (H, W)),
    else the model's own input size when it takes only one (``net.input_size``: a LeNet's
    28 x 28, a ViT's 224 x 224), else ``default`` x ``default``."""
    if size is None:
        return net.input_size if net.input_size is not None else (default, default)
    height, width = (size, size) if isinstance(size, int) else size
    check_steps(height, "size")
    check_steps(width, "size")
    return height, width


def check_steps(steps: int, what: str = "steps") -> None:
    """Raise ``ValueError`` unless ``steps`` is an int >= 1 (also for sizes, octaves...)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{what} must be a positive int; got {steps!r}.")


@engine_call
def render(
    model: ModelLike,
    objective: Objective,
    *,
    count: int = 1,
    size: int | tuple[int, int] | None = None,
    steps: int = 512,
    lr: float = 0.05,
    param: ParamKind = "fourier",
    decorrelate: bool = True,
    transform: Robustness | None = STANDARD_TRANSFORM,
    penalties: Penalties = NO_PENALTIES,
    seed: int = 0,
    precision: Precision = "float32",
    on_step: OnStep | None = None,
    resume: SynthesisResult | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """Images that maximize ``objective``: K = ``count`` images (K, C, H, W) of ``size``
    (a side or (H, W); default 128 px, or the model's input size when it takes only one),
    C the model's input channels.

    Defaults are Lucid's: Fourier parameterization with decorrelated colour (RGB models),
    the standard robustness transforms (upsampled to 224 px for the model, or resized to its
    one input size), Adam with lr 0.05, 512 steps. ``trace`` is the objective per step (before penalties), (steps, K).
    ``precision="bfloat16"`` runs the network under autocast in bfloat16 (about 2x faster
    on CPUs with native bf16 and on GPUs; the image and the optimizer stay float32).
    """
    net = SynthesisNet.of(model, mean, std)
    net.check_layers(sorted(objective.layers))
    check_steps(steps)
    check_number("lr", lr, low=0, low_open=True)
    check_callback("on_step", on_step)
    height, width = image_size(net, size, 128)
    if net.input_size is not None and isinstance(transform, Robustness):
        transform = replace(transform, out_size=None)  # the net resizes views to its size
    generator = seeded_generator(seed, net.device)
    image = make_param(
        param,
        count,
        (height, width),
        generator=generator,
        device=net.device,
        decorrelate=decorrelate,
        channels=net.channels,
    )
    done, trace_rows = 0, list[torch.Tensor]()
    optimizer: torch.optim.Optimizer = torch.optim.Adam(image.params, lr=lr)
    if resume is not None:
        image, optimizer, done, trace_rows = _resumed(resume, image, lr, objective.name)
        generator.set_state(resume.resume_state.generator_state)
    layers = sorted(objective.layers)

    def step(_index: int) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        images = image()
        view = transform(images, generator) if transform is not None else images
        with autocast(net.device, precision):
            values = objective(net.features(view, layers)).float()
        loss = penalties(images).sum() - values.sum()
        (gradient,) = torch.autograd.grad(loss, image.params)
        image.params[0].grad = gradient
        optimizer.step()
        return values

    with net.session():
        rows, stopped = run_steps(
            steps, step, lambda: image().detach(), on_step, objective.name, start=done
        )
        with torch.no_grad():
            final = image().detach()
    trace_rows = trace_rows + rows
    return SynthesisResult(
        final,
        stack_trace(trace_rows, count, net.device),
        objective.name,
        stopped,
        {"objective": objective.name},
        resume_state=_RenderState(
            image, optimizer, done + len(rows), trace_rows, generator.get_state(), objective.name
        ),
    )


@dataclass
class _RenderState:
    image: ImageParam
    optimizer: torch.optim.Optimizer
    steps_done: int
    trace_rows: list[torch.Tensor]
    generator_state: torch.Tensor
    objective: str


def _resumed(
    resume: SynthesisResult, template: ImageParam, lr: float, objective: str
) -> tuple[ImageParam, torch.optim.Optimizer, int, list[torch.Tensor]]:
    state: Any = resume.resume_state
    if not isinstance(state, _RenderState):
        raise ValueError("resume= takes a result of the same method (its resume_state).")
    if state.objective != objective:
        raise ValueError(
            f"resume= continues {state.objective!r}; this call asks for {objective!r}. Pass "
            "the same layer and units as the run being resumed."
        )
    image = restore_param(state.image, state.image.params)
    if image.params[0].shape != template.params[0].shape:
        raise ValueError(
            "resume= needs the same count, size and param as the run it continues; got "
            f"{tuple(template.params[0].shape)} vs {tuple(image.params[0].shape)}."
        )
    optimizer = torch.optim.Adam(image.params, lr=lr)
    # Carry Adam's moments over so the run continues exactly where it stopped.
    old = state.optimizer.state_dict()
    optimizer.load_state_dict(old)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return image, optimizer, state.steps_done, list(state.trace_rows)
