"""One batch of a layer's activations, checked once and reduced once for every statistic.

Every statistic of :mod:`cnnvis_widget.unit_stats` reads the same reductions of a batch (the
per-image spatial maximum and mean); :class:`LayerBatch` computes each at most once, and
:func:`layer_batch` checks the arguments with messages that name the problem and the fix.
Also here: the helpers that write and read the plain-tensor state dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import torch

StateDict = dict[str, torch.Tensor]


@dataclass
class LayerBatch:
    """A checked batch: ``maps`` (B, C, h * w) on the statistics' device, in float32 (or
    float64 when the activations are float64), the dataset ``indices`` (B,) int64 and the
    ``labels`` (B,) int64 (-1 = unlabelled) or None."""

    maps: torch.Tensor
    height: int
    width: int
    indices: torch.Tensor
    labels: torch.Tensor | None

    @property
    def size(self) -> int:
        return int(self.maps.shape[0])

    @property
    def units(self) -> int:
        return int(self.maps.shape[1])

    @cached_property
    def maxima(self) -> torch.Tensor:
        """(B, C): the maximum of each map over (y, x)."""
        return self.maps.amax(dim=2)

    @cached_property
    def means(self) -> torch.Tensor:
        """(B, C) float64: the mean of each map over (y, x). Each value depends only on its
        own map (one reduction per row), so it is the same whatever batch the image is in."""
        return self.maps.sum(dim=2).to(torch.float64) / (self.height * self.width)


def layer_batch(
    acts: object,
    indices: object,
    labels: object = None,
    *,
    units: int,
    device: torch.device,
) -> LayerBatch:
    """Check one batch and bring it to ``device`` as a :class:`LayerBatch`.

    ``acts``: (B, C, h, w) or (B, C) floating-point activations with C == ``units`` and no NaN;
    ``indices``: (B,) integer dataset indices, >= 0; ``labels``: None or (B,) integers >= -1.
    """
    if not isinstance(acts, torch.Tensor):
        raise TypeError(
            f"expected the activations as a tensor (B, C, h, w) or (B, C); got a "
            f"{type(acts).__name__}. Pass the layer's output, e.g. from cv.activations."
        )
    if acts.ndim not in (2, 4):
        raise ValueError(
            f"expected activations (B, C, h, w) or (B, C); got shape {tuple(acts.shape)}. "
            "Token layers (B, T, C) should be laid on their grid first."
        )
    if not acts.is_floating_point():
        raise TypeError(f"expected floating-point activations; got {acts.dtype}.")
    if acts.shape[1] != units:
        raise ValueError(
            f"these statistics are for {units} units; the activations have {acts.shape[1]} "
            f"channels (shape {tuple(acts.shape)}). Use one statistics object per layer."
        )
    batch = int(acts.shape[0])
    height, width = (int(acts.shape[2]), int(acts.shape[3])) if acts.ndim == 4 else (1, 1)
    if height * width == 0:
        raise ValueError(f"the activations have no positions (shape {tuple(acts.shape)}).")
    dtype = torch.float64 if acts.dtype == torch.float64 else torch.float32
    maps = acts.detach().to(device=device, dtype=dtype).reshape(batch, units, height * width)
    index = _integer_vector(indices, batch, "indices", device)
    if index.numel() and int(index.min()) < 0:
        raise ValueError(
            f"dataset indices must be >= 0; got {int(index.min())}. Pass each image's "
            "position in the dataset."
        )
    label = None
    if labels is not None:
        label = _integer_vector(labels, batch, "labels", device)
        if label.numel() and int(label.min()) < -1:
            raise ValueError(
                f"labels must be class indices >= 0, or -1 for unlabelled; got {int(label.min())}."
            )
    result = LayerBatch(maps, height, width, index, label)
    if batch and bool(torch.isnan(result.maxima).any()):  # amax propagates NaN: one check
        raise ValueError(
            "the activations contain NaN; statistics of NaN are undefined. Check the model "
            "and its input (torch.isnan(acts).nonzero() finds them)."
        )
    return result


def _integer_vector(value: object, batch: int, name: str, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"expected {name} as integers; got {tensor.dtype}.")
    if tuple(tensor.shape) != (batch,):
        raise ValueError(
            f"expected {name} of shape ({batch},), one per image of the batch; got "
            f"{tuple(tensor.shape)}."
        )
    return tensor.to(device=device, dtype=torch.int64)


# --- state dicts: only tensors (0-d ones for numbers), so torch.save / safetensors take them


def scalar(value: float | int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype)


def read_int(state: Mapping[str, object], key: str) -> int:
    value = _entry(state, key)
    return int(value.item()) if isinstance(value, torch.Tensor) else int(value)  # type: ignore[call-overload]


def read_float(state: Mapping[str, object], key: str) -> float:
    value = _entry(state, key)
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)  # type: ignore[arg-type]


def read_tensor(
    state: Mapping[str, object],
    key: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    value = _entry(state, key)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"state entry {key!r} should be a tensor; got a {type(value).__name__}.")
    if tuple(value.shape) != shape:
        raise ValueError(
            f"state entry {key!r} has shape {tuple(value.shape)}; expected {shape} (a state "
            "from another configuration, or a damaged file)."
        )
    return value.to(device=device, dtype=dtype).clone()


def _entry(state: Mapping[str, object], key: str) -> object:
    if key not in state:
        raise KeyError(
            f"state entry {key!r} is missing; pass a dict made by state_dict() (keys: "
            f"{sorted(state)[:8]}...)."
        )
    return state[key]


def sub_state(state: Mapping[str, object], prefix: str) -> dict[str, object]:
    """The entries of ``state`` under ``prefix.``, with the prefix taken off."""
    start = prefix + "."
    return {key[len(start) :]: value for key, value in state.items() if key.startswith(start)}


def prefixed(prefix: str, state: StateDict) -> StateDict:
    return {f"{prefix}.{key}": value for key, value in state.items()}


def state_nbytes(state: Mapping[str, torch.Tensor]) -> int:
    """Total bytes of the tensors of a state dict."""
    return sum(t.numel() * t.element_size() for t in state.values())


def check_same(name: str, mine: object, theirs: object) -> None:
    if mine != theirs:
        raise ValueError(
            f"cannot merge statistics with different {name}: {mine!r} here, {theirs!r} in the "
            "other. Build both shards with the same settings."
        )
