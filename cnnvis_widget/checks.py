"""Argument checks shared by the public functions and the widget.

Each check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, bad value)
with a message that names the problem (what was given) and the fix (what to pass instead).
docs/bad_input.md lists the cases; tests/test_bad_input.py tests them. This module imports
nothing else from the package, so every other module can use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .methods.registry import Param

LOAD_HINT = (
    "Load one with cv.load_model(name) and pass bundle.module (or the bundle where a function "
    "takes one), or pass your own torch.nn.Module."
)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _given(value: object) -> str:
    """What was passed, for a message: the value and its type for plain data, the type alone
    for other objects (a function's repr would only add an address)."""
    if isinstance(value, (str, bytes, numbers.Number, list, tuple, dict)):
        return f"{_shown(value)} ({type(value).__name__})"
    return f"a {type(value).__name__}"


def check_module(module: object, *, bundle: bool = False) -> None:
    """``module`` is a ``torch.nn.Module`` (or, with ``bundle``, a ``ModelBundle``) whose
    parameters hold values (not on the meta device)."""
    from .models import ModelBundle

    if bundle and isinstance(module, ModelBundle):
        module = module.module
    if not isinstance(module, nn.Module):
        accepted = "a torch.nn.Module or a ModelBundle" if bundle else "a torch.nn.Module"
        raise TypeError(f"expected the model as {accepted}; got {_given(module)}. {LOAD_HINT}")
    tensors = [*module.parameters(), *module.buffers()]
    if any(t.device.type == "meta" for t in tensors):
        raise ValueError(
            "the model's parameters are on the meta device: they have shapes but no values. "
            "Give them values first: module.to_empty(device='cpu') then "
            "module.load_state_dict(weights), or build the model on the CPU or a GPU."
        )


def first_conv(module: nn.Module) -> tuple[str, int] | None:
    """(name, in_channels) of the module's first 2-D convolution in definition order (the
    stem of a CNN), or None without one."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Conv2d):
            return name, int(sub.in_channels)
    return None


def check_input(x: object, module: nn.Module | None = None) -> None:
    """``x`` is a model input: a float tensor (N, C, H, W) with N, H, W >= 1, with values
    (not on the meta device), finite, and with the channel count of ``module``'s first
    convolution when a module is given."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"expected the model input as a tensor (N, C, H, W); got {type(x).__name__}. "
            "Use bundle.preprocess(image)."
        )
    if x.ndim != 4:
        hint = "Add a batch dimension: x.unsqueeze(0), or use" if x.ndim == 3 else "Use"
        raise ValueError(
            f"expected input of shape (N, C, H, W); got {tuple(x.shape)}. {hint} "
            "bundle.preprocess(image)."
        )
    if not x.is_floating_point():
        raise ValueError(
            f"expected a float model input tensor; got {x.dtype}. Use bundle.preprocess(image)."
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"the input batch is empty: shape {tuple(x.shape)}. Pass at least one image "
            "(N >= 1), e.g. bundle.preprocess(image)."
        )
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(
            f"the input has an empty side: shape {tuple(x.shape)}. Pass images of at least "
            "1 x 1 pixels, e.g. bundle.preprocess(image)."
        )
    if x.device.type == "meta":
        raise ValueError(
            "the input is on the meta device: it has a shape but no values. Create it on the "
            "CPU or a GPU, e.g. bundle.preprocess(image)."
        )
    check_finite_tensor("the input", x)
    if module is not None:
        conv = first_conv(module)
        if conv is not None and conv[1] != x.shape[1]:
            name, wanted = conv
            grey = (
                " For a greyscale image use bundle.preprocess(image), or x.repeat(1, 3, 1, 1)."
                if x.shape[1] == 1 and wanted == 3
                else ""
            )
            raise ValueError(
                f"the input has {x.shape[1]} channel(s) (shape {tuple(x.shape)}) but the "
                f"model's first convolution ({name}) takes {wanted}. Pass {wanted}-channel "
                f"input made by the model's preprocessing (bundle.preprocess(image)).{grey}"
            )


def check_finite_tensor(what: str, values: torch.Tensor) -> None:
    """No NaN or infinity in ``values`` (``what`` names it in the message)."""
    if not values.is_floating_point() and not values.is_complex():
        return
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return
    bad = int((~finite).sum())
    kinds = " and ".join(
        kind
        for kind, present in (
            ("NaN", bool(torch.isnan(values).any())),
            ("infinite values", bool(torch.isinf(values).any())),
        )
        if present
    )
    raise ValueError(
        f"{what} contains {kinds} ({bad} of {values.numel()} values). Pass finite values: "
        "check the image and its preprocessing (a std of 0 divides by zero), or clean them "
        "with torch.nan_to_num."
    )


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` is a real, finite number (not a bool) within the bounds; returned as float.
    ``low_open`` / ``high_open`` exclude the bound itself."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {_given(value)}.")
    number = float(value)
    bounds = _bounds(low, high, low_open, high_open)
    if not math.isfinite(number):
        raise ValueError(
            f"{name} must be a finite number{' ' + bounds if bounds else ''}; got {value!r}."
        )
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        verb = "lie" if bounds.startswith("in ") else "be"
        raise ValueError(f"{name} must {verb} {bounds}; got {value!r}.")
    return number


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """ "in [0, 1]", "> 0", "<= 5" or ""."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` is an int (numpy ints too; not a bool or a float) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {_given(value)}.")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        if high is None:
            wanted = f"an int >= {low}"
        elif low is None:
            wanted = f"an int <= {high}"
        else:
            wanted = f"an int in [{low}, {high}]"
        raise ValueError(f"{name} must be {wanted}; got {value!r}.")
    return number


def check_flag(name: str, value: object) -> None:
    """``value`` is True or False (not a string such as "no", which would count as true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {_given(value)}.")


def check_callback(name: str, value: object) -> None:
    """``value`` is None or a function."""
    if value is not None and not callable(value):
        raise TypeError(
            f"{name} must be a function (called after every step) or None; got "
            f"{_given(value)}. Pass e.g. {name}=lambda *step: print(step)."
        )


def check_names(what: str, names: object) -> list[str]:
    """A layer name or a sequence of them, as a list of strings."""
    items: Any = [names] if isinstance(names, str) else names
    bad = (
        next((n for n in items if not isinstance(n, str)), None)
        if isinstance(items, Sequence)
        else names
    )
    if bad is not None:
        raise TypeError(
            f"{what} must be a layer name or a list of them as in named_modules(); got "
            f"{_shown(bad)}. List them with cv.layers(module, x)."
        )
    return list(items)


def check_tensor_param(where: str, value: torch.Tensor, shape: torch.Size) -> None:
    """A tensor-valued parameter (a baseline image): finite and broadcastable to ``shape``."""
    try:
        fits = torch.broadcast_shapes(value.shape, shape) == shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{where} has shape {tuple(value.shape)}, which does not broadcast to the input's "
            f"{tuple(shape)}. Pass a number, a tensor (C, 1, 1) per channel, or a tensor "
            "shaped like x."
        )
    check_finite_tensor(where, value)


def check_param(owner: str, param: Param, value: Any) -> None:
    """Type, range and choice of one form parameter of ``owner`` (an attribution method or a
    synthesis kind, named in the message) against its :class:`~cnnvis_widget.methods.
    registry.Param` (kind, ``low`` / ``high`` in the parameter's own units, choices), with a
    message that names the fix. A tensor passes a "float" parameter (e.g. a baseline image;
    its shape is the caller's to check, see :func:`check_tensor_param`)."""
    where = f"{owner}: {param.name}"
    if param.kind == "choice":
        if value not in param.choices:
            raise ValueError(f"{where} must be one of {list(param.choices)}; got {value!r}.")
        return
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be True or False; got {value!r}.")
        return
    if isinstance(value, torch.Tensor) and param.kind == "float":
        return  # e.g. a baseline image; its shape is the method's to check
    number_types = (int,) if param.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_types):
        raise TypeError(
            f"{where} must be {'an int' if param.kind == 'int' else 'a number'}; got {value!r}."
        )
    if not math.isfinite(value):
        raise ValueError(
            f"{where} must be a finite number in [{param.low}, {param.high}]; got {value!r}."
        )
    if (param.low is not None and value < param.low) or (
        param.high is not None and value > param.high
    ):
        raise ValueError(f"{where} must lie in [{param.low}, {param.high}]; got {value!r}.")
