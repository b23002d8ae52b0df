"""What input a model takes, found by trying it: :class:`InputSpec` (channels C, a size
(H, W) in pixels it runs at, whether that size is fixed), and errors that name that size.

A size is tried with one forward pass of a zero batch ``(1, C, H, W)`` in the module's dtype,
on its device, without autograd and on its eval-mode view (the module is never changed);
results are cached per module.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .checks import first_conv
from .model_io import logits_of, module_device, module_dtype
from .model_view import eval_view


@dataclass(frozen=True)
class InputSpec:
    """What a model takes: ``channels`` C, a ``size`` (H, W) it accepts, and whether that
    size is ``fixed`` (the model fails at another one: a LeNet's flatten -> linear, a ViT)."""

    channels: int
    size: tuple[int, int]
    fixed: bool


COMMON_SIZES = (224, 28, 32, 64, 96, 128, 256, 299, 384, 512)
"""Square input sides tried, in order, when a model's input size is not known."""

_SPECS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], InputSpec | str]] = (
    weakref.WeakKeyDictionary()
)
"""Per module: the spec found, or the message of the search that found none (kept too, so a
model that runs on no common size is not probed at up to 11 sizes again on every call)."""
_SPECS_LOCK = threading.Lock()


def first_conv_channels(module: nn.Module) -> int | None:
    """``in_channels`` of the module's first 2-D convolution (definition order), or None."""
    conv = first_conv(module)
    return conv[1] if conv is not None else None


def input_spec(
    module: nn.Module, channels: int | None = None, size: tuple[int, int] | None = None
) -> InputSpec:
    """The model's :class:`InputSpec`, found by trying it (batch 1, no autograd, on its
    eval-mode view; cached per module). ``channels`` defaults to the first convolution's
    ``in_channels`` (3 without one); ``size`` is tried first, then :data:`COMMON_SIZES`. The
    size is ``fixed`` when the model also fails 32 px larger. Raises ``ValueError`` when no
    size works."""
    channels = channels or first_conv_channels(module) or 3
    # Submodule identities: a replaced head or layer (a model being fixed) is searched anew.
    modules = tuple(id(sub) for sub in module.modules())
    key = (channels, size, module_dtype(module), module_device(module), modules)
    with _SPECS_LOCK:
        cached = _SPECS.get(module, {}).get(key)
    if isinstance(cached, str):
        raise ValueError(cached)
    if cached is not None:
        return cached
    candidates = [size] if size is not None else []
    candidates += [(side, side) for side in COMMON_SIZES if (side, side) != size]
    errors: list[str] = []
    found = next((c for c in candidates if _runs(module, channels, c, errors)), None)
    if found is None:
        message = (
            f"the model runs on none of the input sizes tried ({channels} channel(s), "
            f"{', '.join(f'{h}x{w}' for h, w in candidates)}; first error: "
            f"{errors[0] if errors else '?'}). Pass preprocess=cv.Preprocess(input_size=(H, W), "
            "mean=..., std=...) with the size and channels it expects."
        )
        with _SPECS_LOCK:
            _SPECS.setdefault(module, {})[key] = message
        raise ValueError(message)
    fixed = not _runs(module, channels, (found[0] + 32, found[1] + 32), [])
    spec = InputSpec(channels, found, fixed)
    with _SPECS_LOCK:
        _SPECS.setdefault(module, {})[key] = spec
    return spec


@contextmanager
def size_errors_explained(module: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Turn a raw failure of ``module``'s forward pass on model input ``x`` (N, C, H, W), such
    as "mat1 and mat2 shapes cannot be multiplied" from a LeNet given 32 x 32 images or a ViT's
    "Wrong image height!", into a ``ValueError`` naming a size the model runs at (found by
    trying: :func:`input_spec`), when another size is what it needs. Other errors pass."""
    try:
        yield
    except (RuntimeError, AssertionError) as error:
        if type(error) not in (RuntimeError, AssertionError):
            raise  # subclasses (e.g. a method stopped by its callback) mean something else
        size = tuple(x.shape[-2:])
        try:
            spec = input_spec(module, int(x.shape[1]))
        except ValueError:
            raise error from None
        if spec.size == size or _runs(module, int(x.shape[1]), (size[0], size[1]), []):
            raise
        height, width = spec.size
        raise ValueError(
            f"the model failed on {size[0]}x{size[1]} input ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:160]}); it runs on {height}x{width} inputs"
            f"{' only' if spec.fixed else ''}. Resize the images to {height}x{width}: "
            f"preprocess=cv.Preprocess(input_size=({height}, {width}), ...) or bundle.preprocess."
        ) from error


def _runs(module: nn.Module, channels: int, size: tuple[int, int], errors: list[str]) -> bool:
    """Whether one forward pass of a (1, channels, *size) input returns logits (N, classes)."""
    probe = torch.zeros(
        1, channels, *size, dtype=module_dtype(module), device=module_device(module)
    )
    try:
        with torch.no_grad():
            logits = logits_of(eval_view(module)(probe))
    except Exception as error:  # any failure means: not this size
        errors.append(f"{type(error).__name__}: {str(error)[:200]}")
        return False
    return logits.ndim == 2
