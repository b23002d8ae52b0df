"""Composable objectives: what an optimized image should do to the network.

An :class:`Objective` maps the recorded features of a batch of K images to one score per
image (K,), higher is better. Objectives add, subtract and scale::

    from cnnvis_widget import objectives as obj
    goal = obj.channel("layer3", 5) - 0.5 * obj.channel("layer3", 7) + 1e-2 * obj.diversity("layer3")

``unit`` arguments take one index (every image of the batch pursues it) or a sequence with one
index per image (image i pursues ``unit[i]``): a whole layer is visualized in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .network import LOGITS, Features

Units = int | Sequence[int]


@dataclass(frozen=True)
class Objective:
    """Scores (K,) from features; ``layers`` are the feature keys it reads."""

    fn: Callable[[Features], torch.Tensor]
    layers: frozenset[str]
    name: str

    def __call__(self, features: Features) -> torch.Tensor:
        return self.fn(features)

    def __add__(self, other: Objective) -> Objective:
        return Objective(
            lambda f: self(f) + other(f), self.layers | other.layers, f"{self.name} + {other.name}"
        )

    def __sub__(self, other: Objective) -> Objective:
        return Objective(
            lambda f: self(f) - other(f), self.layers | other.layers, f"{self.name} - {other.name}"
        )

    def __mul__(self, weight: float) -> Objective:
        return Objective(lambda f: weight * self(f), self.layers, f"{weight:g} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Objective(lambda f: -self(f), self.layers, f"-{self.name}")


def _per_image(units: Units, count: int, what: str) -> torch.Tensor:
    """One index per image: (K,) long."""
    values = torch.as_tensor(units, dtype=torch.long).flatten()
    if values.numel() == 1:
        return values.expand(count)
    if values.numel() != count:
        raise ValueError(f"{what}: got {values.numel()} units for a batch of {count} images.")
    return values


def _units_label(units: Units) -> str:
    """``units`` for an objective's name: one index as is, a list as a list, but a list of one
    repeated index (restarts, diversity) as that index."""
    if isinstance(units, Sequence) and not isinstance(units, str) and len(set(units)) == 1:
        return str(units[0])
    return str(units)


def _spatial(tensor: torch.Tensor, layer: str) -> torch.Tensor:
    if tensor.ndim == 2:
        return tensor[:, :, None, None]
    if tensor.ndim != 4:
        raise ValueError(
            f"layer {layer!r} outputs shape {tuple(tensor.shape)}; feature objectives need "
            "(N, C, h, w) or (N, C)."
        )
    return tensor


def _check_units(index: torch.Tensor, channels: int, layer: str) -> None:
    if int(index.min()) < 0 or int(index.max()) >= channels:
        raise ValueError(
            f"unit {int(index.max()) if int(index.max()) >= channels else int(index.min())} is "
            f"out of range: layer {layer!r} has {channels} channels (0..{channels - 1})."
        )


def channel(layer: str, unit: Units) -> Objective:
    """Mean activation of channel ``unit`` of ``layer`` over all positions (Lucid)."""

    def score(features: Features) -> torch.Tensor:
        acts = _spatial(features[layer], layer)
        index = _per_image(unit, acts.shape[0], "channel").to(acts.device)
        _check_units(index, acts.shape[1], layer)
        picked = acts.gather(1, index.view(-1, 1, 1, 1).expand(-1, 1, *acts.shape[2:]))
        return picked.mean(dim=(1, 2, 3))

    return Objective(score, frozenset({layer}), f"{layer}:{_units_label(unit)}")


def neuron(layer: str, unit: Units, position: tuple[int, int] | None = None) -> Objective:
    """Activation of channel ``unit`` at one position (row, column); by default the centre
    (the bottom-right of the central 2x2 when a side is even, as Lucid)."""

    def score(features: Features) -> torch.Tensor:
        acts = _spatial(features[layer], layer)
        index = _per_image(unit, acts.shape[0], "neuron").to(acts.device)
        _check_units(index, acts.shape[1], layer)
        row, col = position if position is not None else (acts.shape[2] // 2, acts.shape[3] // 2)
        if not (0 <= row < acts.shape[2] and 0 <= col < acts.shape[3]):
            raise ValueError(
                f"position {(row, col)} lies outside layer {layer!r}'s {acts.shape[2]}x"
                f"{acts.shape[3]} grid at this image size."
            )
        return acts[torch.arange(acts.shape[0], device=acts.device), index, row, col]

    label = f"{layer}:{_units_label(unit)}@{position or 'centre'}"
    return Objective(score, frozenset({layer}), label)


def direction(layer: str, vector: torch.Tensor) -> Objective:
    """Mean over positions of the activation's dot product with ``vector`` (C,) (or one
    vector per image, (K, C)), divided by the vector's norm."""

    def score(features: Features) -> torch.Tensor:
        acts = _spatial(features[layer], layer)
        v = vector.to(acts.device, acts.dtype)
        v = v.expand(acts.shape[0], -1) if v.ndim == 1 else v
        if v.shape[1] != acts.shape[1]:
            raise ValueError(
                f"direction has {v.shape[1]} entries; layer {layer!r} has {acts.shape[1]} channels."
            )
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.einsum("kchw,kc->k", acts, v) / (acts.shape[2] * acts.shape[3])

    return Objective(score, frozenset({layer}), f"{layer}:direction")


def class_indices(target: object) -> list[int]:
    """Class indices from an int or a list of them, with a message naming the fix."""
    values = target if isinstance(target, (Sequence, torch.Tensor)) else [target]
    if isinstance(target, str) or not all(
        isinstance(t, (int, torch.Tensor)) and not isinstance(t, bool) for t in values
    ):
        raise TypeError(
            f"target must be a class index (int) or a list of them; got {target!r}. Find an "
            "index by name with bundle.labels.index(name)."
        )
    return [int(t) for t in torch.as_tensor(values).flatten().tolist()]


def check_classes(index: torch.Tensor, classes: int) -> None:
    """Raise ``ValueError`` when a class index lies outside 0..classes-1."""
    if int(index.max()) >= classes or int(index.min()) < 0:
        bad = int(index.max()) if int(index.max()) >= classes else int(index.min())
        raise ValueError(
            f"class {bad} is out of range: the model has {classes} classes (0..{classes - 1})."
        )


def class_logit(target: Units) -> Objective:
    """The pre-softmax score of class ``target`` (Simonyan: the logit, not the probability)."""

    def score(features: Features) -> torch.Tensor:
        logits = features[LOGITS]
        index = _per_image(target, logits.shape[0], "class").to(logits.device)
        check_classes(index, logits.shape[1])
        return logits.gather(1, index.view(-1, 1)).squeeze(1)

    return Objective(score, frozenset({LOGITS}), f"logit {target}")


def log_probability(target: Units) -> Objective:
    """log softmax of class ``target`` (fooling images: saturates less than the probability)."""

    def score(features: Features) -> torch.Tensor:
        logits = features[LOGITS]
        index = _per_image(target, logits.shape[0], "class").to(logits.device)
        check_classes(index, logits.shape[1])
        return torch.log_softmax(logits.float(), dim=1).gather(1, index.view(-1, 1)).squeeze(1)

    return Objective(score, frozenset({LOGITS}), f"log p({target})")


def diversity(layer: str) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix at ``layer`` to the other
    images' (Olah et al.): rewards a batch whose images differ in style. Zero for one image."""

    def score(features: Features) -> torch.Tensor:
        acts = _spatial(features[layer], layer)
        count = acts.shape[0]
        if count < 2:
            return acts.new_zeros(count)
        flat = acts.flatten(2)
        gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
        gram = gram / gram.norm(dim=1, keepdim=True).clamp_min(1e-12)
        similarity = gram @ gram.T
        off_diagonal = similarity.sum(dim=1) - similarity.diagonal()
        return -off_diagonal / (count - 1)

    return Objective(score, frozenset({layer}), f"diversity {layer}")


def layer_energy(layer: str) -> Objective:
    """Half the squared norm of the layer's output per image (deep dream)."""

    def score(features: Features) -> torch.Tensor:
        return 0.5 * features[layer].flatten(1).pow(2).sum(dim=1)

    return Objective(score, frozenset({layer}), f"energy {layer}")
