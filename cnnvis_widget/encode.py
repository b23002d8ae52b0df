"""Tensors -> binary payloads ``{dtype, shape, data}`` for the frontend (see docs/protocol.md; the type is :class:`NdArray`)."""

from __future__ import annotations

from typing import Literal, TypedDict, cast

import numpy as np
import torch

DType = Literal["uint8", "float16", "float32"]


class NdArray(TypedDict):
    """A C-contiguous little-endian array; ``data`` travels as a binary buffer."""

    dtype: DType
    shape: list[int]
    data: bytes


Payload = NdArray
_DTYPES = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}


def ndarray_payload(array: np.ndarray | torch.Tensor, dtype: str) -> NdArray:
    """A C-contiguous little-endian array as ``{"dtype", "shape", "data": bytes}``; tensors
    of any floating dtype (bfloat16 and float16 models' outputs too) are converted exactly
    through float32."""
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported payload dtype {dtype!r}; use one of {list(_DTYPES)}.")
    if isinstance(array, torch.Tensor):
        tensor = array.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()  # numpy has no bfloat16: half models' maps go as float32
        array = tensor.numpy()
    converted = np.ascontiguousarray(array, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
    return {
        "dtype": cast(DType, dtype),
        "shape": list(converted.shape),
        "data": converted.tobytes(),
    }


def decode_payload(payload: NdArray) -> np.ndarray:
    """Inverse of :func:`ndarray_payload` (used by tests and by saved-state readers)."""
    dtype = np.dtype(_DTYPES[payload["dtype"]]).newbyteorder("<")
    return np.frombuffer(payload["data"], dtype=dtype).reshape(payload["shape"])


def quantize_channels(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel uint8 quantization of ``(C, h, w)`` maps.

    Returns ``(codes, lo, hi)``: ``codes[c] = round(255 * (maps[c] - lo[c]) / (hi[c] - lo[c]))``
    (0 for a constant channel), with ``lo``/``hi`` the per-channel min / max, float32 ``(C,)``.
    """
    if maps.ndim != 3:
        raise ValueError(f"expected channel maps (C, h, w); got {tuple(maps.shape)}.")
    flat = maps.detach().float().flatten(1)
    lo = flat.min(dim=1).values
    hi = flat.max(dim=1).values
    span = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    codes = ((flat - lo[:, None]) * (255.0 / span)[:, None]).round_().clamp_(0, 255)
    return codes.to(torch.uint8).view_as(maps), lo, hi


def grid_payloads(maps: torch.Tensor) -> dict[str, NdArray]:
    """Everything the frontend needs to draw a layer's filter grid from ``(C, h, w)`` maps:
    ``grid`` (uint8 codes), ``grid_lo`` / ``grid_hi`` (dequantization), ``grid_means``."""
    codes, lo, hi = quantize_channels(maps)
    means = maps.detach().float().mean(dim=(1, 2))
    return {
        "grid": ndarray_payload(codes, "uint8"),
        "grid_lo": ndarray_payload(lo, "float32"),
        "grid_hi": ndarray_payload(hi, "float32"),
        "grid_means": ndarray_payload(means, "float32"),
    }
