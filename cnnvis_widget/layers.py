"""Layer discovery: every named module with its type and output shape, from one dry forward."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .capture import capture, model_guard, resolve_module
from .models import to_model_input


@dataclass(frozen=True)
class LayerInfo:
    """One named submodule.

    ``output_shape`` is the shape of its (last) output tensor for the probed input, ``None`` if
    it did not run or returned something other than a tensor. ``calls`` counts how often it ran
    in one forward pass (torchvision ResNet reuses ``relu``: address one call as ``"name@k"``).
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    calls: int
    finished: int | None = None  # rank of its last call's completion in the forward pass

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1

    @property
    def spatial(self) -> bool:
        """True when the output is (N, C, h, w) with more than one position."""
        shape = self.output_shape
        return shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1


def layers(module: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    """All named submodules of ``module`` in definition order, probed with one forward of ``x``
    (``(N, C, H, W)`` model input; the model is left as found)."""
    check_input(x)
    names = [name for name, _ in module.named_modules() if name]
    types = {name: type(sub).__name__ for name, sub in module.named_modules() if name}
    with model_guard(module), torch.no_grad(), capture(module, names) as recorded:
        module(to_model_input(x, module))
    result = []
    for name in names:
        tap = recorded.taps[name]
        output = tap.output
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        result.append(LayerInfo(name, types[name], shape, tap.calls, tap.finished))
    return result


def activations(
    module: nn.Module, x: torch.Tensor, names: Sequence[str] | str
) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for input ``x`` (``(N, C, H, W)``), detached, on the model's
    device. Names are as in ``named_modules()``; ``"name@k"`` picks call ``k`` of a reused one."""
    check_input(x)
    wanted = [names] if isinstance(names, str) else list(names)
    for name in wanted:
        resolve_module(module, name.rpartition("@")[0] if "@" in name else name)
    with model_guard(module), torch.no_grad(), capture(module, wanted) as recorded:
        module(to_model_input(x, module))
    return {name: recorded.tensor(name).detach() for name in wanted}


def default_cam_layer(infos: Sequence[LayerInfo]) -> str:
    """The spatial layer that finished last in the forward pass: the end of the last
    convolutional stage of a classifier (``layer4`` in ResNet), where CAM methods look."""
    spatial = [info for info in infos if info.spatial and info.finished is not None]
    if not spatial:
        raise ValueError("the model has no layer with a spatial (N, C, h, w) output.")
    return max(spatial, key=lambda info: info.finished or 0).name


def check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"expected the model input as a tensor (N, 3, H, W); got {type(x).__name__}. "
            "Use bundle.preprocess(image)."
        )
    if x.ndim != 4:
        hint = " Add a batch dimension: x.unsqueeze(0)." if x.ndim == 3 else ""
        raise ValueError(f"expected input of shape (N, C, H, W); got {tuple(x.shape)}.{hint}")
    if not x.is_floating_point():
        raise ValueError(
            f"expected a float input tensor; got {x.dtype}. Use bundle.preprocess(image)."
        )
