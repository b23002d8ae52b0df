"""Deep dream (Mordvintsev, Olah, Tyka 2015)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..checks import check_callback, check_input, check_int, check_number
from ..model_view import engine_call
from . import objectives as obj
from .network import ModelLike, SynthesisNet
from .render import check_steps, seeded_generator
from .result import OnStep, SynthesisResult, offset_frames, run_steps, stack_trace


@engine_call
def deep_dream(
    model: ModelLike,
    x: torch.Tensor,
    layer: str,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 1.5 / 255,
    jitter: int = 32,
    seed: int = 0,
    on_step: OnStep | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """Amplify whatever ``layer`` responds to in ``x`` (model input (N, C, H, W)), images
    (N, C, H, W) in [0, 1].

    Maximizes 1/2 |A(x)|^2 by normalized gradient steps x += step_size * g / mean|g| (the
    Caffe notebook's 1.5 in [0, 255] units = 1.5/255 here), each under a random roll of up to
    ``jitter`` px that is undone after, clipped to [0, 1]; from the coarsest of ``octaves``
    scales (factor ``octave_scale``) to the full size, carrying the detail added at each
    octave to the next. ``steps`` per octave. ``trace`` is the objective per step. Octaves
    too small for the network are left out (``info["octaves"]`` lists the sizes used); a
    model that takes one input size only sees every octave resized to it.
    """
    net = SynthesisNet.of(model, mean, std)
    net.check_layers([layer])
    check_input(x)
    check_steps(steps)
    check_steps(octaves, "octaves")
    check_number("octave_scale", octave_scale, low=1)
    check_number("step_size", step_size, low=0, low_open=True)
    check_int("jitter", jitter, low=0)
    check_callback("on_step", on_step)
    base = net.unit_images(x).clamp(0, 1)
    height, width = base.shape[-2:]
    sizes = [
        (max(1, round(height / octave_scale**k)), max(1, round(width / octave_scale**k)))
        for k in reversed(range(octaves))
    ]
    while len(sizes) > 1 and not _runs_at(net, layer, sizes[0]):
        sizes.pop(0)
    generator = seeded_generator(seed, net.device)
    goal = obj.layer_energy(layer)
    detail = torch.zeros_like(base[:, :, : sizes[0][0], : sizes[0][1]])
    rows: list[torch.Tensor] = []
    total = octaves * steps
    stopped = False
    image = base
    with net.session():
        for octave, size in enumerate(sizes):
            octave_base = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            image = (octave_base + detail).clamp(0, 1)

            def step(_index: int, image: torch.Tensor = image) -> torch.Tensor:
                oy, ox = (
                    int(v)
                    for v in torch.randint(
                        -jitter, jitter + 1, (2,), generator=generator, device=generator.device
                    )
                )
                rolled = image.roll((oy, ox), dims=(2, 3)).requires_grad_(True)
                values = goal(net.features(rolled, [layer]))
                (gradient,) = torch.autograd.grad(values.sum(), rolled)
                with torch.no_grad():
                    scale = gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                    stepped = rolled + step_size * gradient / scale
                    image.copy_(stepped.roll((-oy, -ox), dims=(2, 3)).clamp_(0, 1))
                return values.detach()

            listener = offset_frames(on_step, octave * steps, total)
            octave_rows, stopped = run_steps(steps, step, _constant(image), listener, goal.name)
            rows += octave_rows
            detail = image - octave_base
            if stopped:
                break
    return SynthesisResult(
        image.detach(),
        stack_trace(rows, x.shape[0], net.device),
        goal.name,
        stopped,
        {"octaves": sizes},
    )


def _runs_at(net: SynthesisNet, layer: str, size: tuple[int, int]) -> bool:
    """Whether the network reaches ``layer`` from an image of ``size`` (H, W) (a small
    octave can shrink to nothing in a deep network: "Output size is too small")."""
    if net.input_size is not None:
        return True
    probe = torch.full((1, net.channels, *size), 0.5, device=net.device)
    try:
        with net.session(), torch.no_grad():
            net.features(probe, [layer])
    except RuntimeError:
        return False
    return True


def _constant(image: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: image
