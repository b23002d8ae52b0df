"""Adversarial examples (FGSM, PGD) and fooling images (Goodfellow et al. 2015; Madry et al. 2018; Nguyen et al. 2015).

Attacks work on [0, 1] pixels with the model's normalization inside, so ``epsilon`` is in
pixel units of the original image (2/255 = two grey levels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ..checks import check_callback, check_input, check_number
from ..model_view import engine_call
from . import objectives as obj
from .network import ModelLike, SynthesisNet
from .render import check_steps, image_size, seeded_generator
from .result import OnStep, SynthesisResult, run_steps, stack_trace


@engine_call
def adversarial(
    model: ModelLike,
    x: torch.Tensor,
    *,
    method: Literal["fgsm", "pgd"] = "fgsm",
    epsilon: float = 2 / 255,
    target: int | Sequence[int] | None = None,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    on_step: OnStep | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """An adversarial version of ``x`` (model input (N, C, H, W)) within an L-infinity ball of
    radius ``epsilon`` in [0, 1] pixel units.

    ``method="fgsm"`` (Goodfellow et al.): one signed-gradient step of the cross-entropy.
    ``method="pgd"`` (Madry et al.): ``steps`` signed steps of ``step_size`` (default 2.5 *
    epsilon / steps), projected onto the ball and [0, 1], from a uniform random start when
    ``random_start``. ``target=None`` attacks the predicted class (untargeted, ascends the
    loss); a class index (or one per image) makes the model predict it (targeted, descends).

    ``images`` are the adversarial images; ``info`` holds ``original`` and ``perturbation``
    (N, C, H, W), ``before`` / ``after`` = (class, probability) of the top-1 per image, and
    ``target``. ``trace`` is the cross-entropy toward the goal per step.
    """
    net = SynthesisNet.of(model, mean, std)
    check_input(x)
    if step_size is not None:
        check_number("step_size", step_size, low=0, low_open=True)
    check_callback("on_step", on_step)
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"method must be 'fgsm' or 'pgd'; got {method!r}.")
    if not isinstance(epsilon, (int, float)) or not 0 < epsilon <= 1:
        raise ValueError(
            f"epsilon must lie in (0, 1] ([0, 1] pixel units: 2/255 = two grey levels); got "
            f"{epsilon!r}."
        )
    original = net.unit_images(x).clamp(0, 1)
    count = original.shape[0]
    with net.session(), torch.no_grad():
        logits = net.logits(original)
        before = _top1(logits)
    if target is not None:
        obj.check_classes(torch.as_tensor(obj.class_indices(target)), logits.shape[1])
    if target is None:
        labels, sign = torch.tensor([c for c, _ in before], device=net.device), 1.0
    else:
        wanted = obj.class_indices(target)
        if len(wanted) not in (1, count):
            raise ValueError(
                f"got {len(wanted)} targets for {count} images; give one per image or one for all."
            )
        labels = torch.tensor(wanted, device=net.device).expand(count)
        sign = -1.0
    generator = seeded_generator(seed, net.device)
    adv = original.clone()
    if method == "pgd":
        check_steps(steps)
        if random_start:
            noise = torch.rand(original.shape, generator=generator, device=generator.device)
            adv = (original + (noise.to(net.device) * 2 - 1) * epsilon).clamp(0, 1)
        size = step_size if step_size is not None else 2.5 * epsilon / steps
    else:
        steps, size = 1, epsilon

    def step(_index: int) -> torch.Tensor:
        point = adv.clone().requires_grad_(True)
        loss = F.cross_entropy(net.logits(point).float(), labels, reduction="none")
        (gradient,) = torch.autograd.grad(loss.sum(), point)
        with torch.no_grad():
            moved = point + sign * size * gradient.sign()
            adv.copy_(
                torch.min(torch.max(moved, original - epsilon), original + epsilon).clamp(0, 1)
            )
        return loss.detach()

    with net.session():
        rows, stopped = run_steps(steps, step, lambda: adv, on_step, "cross-entropy")
        with torch.no_grad():
            after = _top1(net.logits(adv))
    info = {
        "original": original,
        "perturbation": adv - original,
        "before": before,
        "after": after,
        "target": labels.tolist(),
        "targeted": target is not None,
        "epsilon": float(epsilon),
    }
    return SynthesisResult(
        adv, stack_trace(rows, count, net.device), "cross-entropy", stopped, info
    )


@engine_call
def fooling_image(
    model: ModelLike,
    target: int | Sequence[int],
    *,
    confidence: float = 0.99,
    steps: int = 500,
    step_size: float = 2 / 255,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    on_step: OnStep | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SynthesisResult:
    """An unrecognizable image the model classifies as ``target`` with at least
    ``confidence`` (Nguyen et al. 2015, gradient-ascent variant; the paper reports 99.99%).

    From uniform noise, unregularized ascent of log p(target) (the softmax saturates, its log
    does not) with normalized steps x += step_size * g / mean|g| in [0, 1] pixel units,
    clipped to [0, 1]; stops once every image reaches ``confidence`` or after ``steps``.
    ``trace`` is p(target) per step; ``info["steps_to_confidence"]`` the step count. Images
    (K, C, H, W): ``size`` a side or (H, W), by default 224 px or the model's input size when
    it takes only one; C the model's input channels.
    """
    net = SynthesisNet.of(model, mean, std)
    check_number("step_size", step_size, low=0, low_open=True)
    check_callback("on_step", on_step)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}.")
    check_steps(steps)
    targets = obj.class_indices(target)
    height, width = image_size(net, size, 224)
    generator = seeded_generator(seed, net.device)
    shape = (len(targets), net.channels, height, width)
    image = torch.rand(shape, generator=generator, device=net.device)
    goal = obj.log_probability(targets)

    def step(_index: int) -> torch.Tensor:
        point = image.clone().requires_grad_(True)
        values = goal(net.features(point, sorted(goal.layers)))
        (gradient,) = torch.autograd.grad(values.sum(), point)
        probability = values.detach().exp()
        with torch.no_grad():
            # An image that reached the confidence stays as it is: the one measured is kept.
            moving = (probability < confidence).to(image.dtype).view(-1, 1, 1, 1)
            scale = gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            image.copy_((point + moving * step_size * gradient / scale).clamp(0, 1))
        return probability

    reached_at: list[int | None] = [None] * len(targets)
    steps_seen = [0]

    def all_reached(probability: torch.Tensor) -> bool:
        steps_seen[0] += 1
        for index, value in enumerate(probability.tolist()):
            if reached_at[index] is None and value >= confidence:
                reached_at[index] = steps_seen[0]
        return all(at is not None for at in reached_at)

    with net.session():
        rows, stopped = run_steps(
            steps, step, lambda: image, on_step, "p(target)", stop_when=all_reached
        )
        with torch.no_grad():
            final = torch.softmax(net.logits(image).float(), dim=1)
    reached = final[torch.arange(len(targets)), torch.tensor(targets)].tolist()
    # steps_to_confidence[i]: the step at which image i first reached the confidence, or None.
    info = {"probability": reached, "steps_to_confidence": reached_at, "targets": targets}
    return SynthesisResult(
        image.clone(), stack_trace(rows, len(targets), net.device), "p(target)", stopped, info
    )


def _top1(logits: torch.Tensor) -> list[tuple[int, float]]:
    probs = torch.softmax(logits.float(), dim=1)
    values, indices = probs.max(dim=1)
    return [(int(i), float(v)) for i, v in zip(indices.tolist(), values.tolist(), strict=True)]
