"""Binary payloads: exact round trips and bounded quantization error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnvis_widget.encode import decode_payload, grid_payloads, ndarray_payload, quantize_channels


@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32"])
def test_payload_round_trip(dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    payload = ndarray_payload(array, dtype)
    assert payload["shape"] == [2, 3, 4] and isinstance(payload["data"], bytes)
    assert len(payload["data"]) == array.nbytes
    assert np.array_equal(decode_payload(payload), array)


def test_payload_from_a_non_contiguous_tensor() -> None:
    tensor = torch.arange(12, dtype=torch.float32).view(3, 4).t()
    assert np.array_equal(decode_payload(ndarray_payload(tensor, "float32")), tensor.numpy())


def test_unknown_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match="float64"):
        ndarray_payload(np.zeros(2), "float64")


def test_quantization_error_is_half_a_step() -> None:
    torch.manual_seed(0)
    maps = torch.randn(5, 7, 9) * torch.arange(1, 6).view(5, 1, 1)
    maps[2] = 3.0  # constant channel
    codes, lo, hi = quantize_channels(maps)
    assert codes.dtype == torch.uint8 and codes.shape == maps.shape
    restored = lo.view(-1, 1, 1) + codes.float() / 255 * (hi - lo).view(-1, 1, 1)
    step = ((hi - lo) / 255).view(-1, 1, 1)
    assert torch.all((restored - maps).abs() <= step / 2 + 1e-5)
    assert torch.all(codes[2] == 0) and lo[2] == hi[2] == 3.0
    assert codes.flatten(1).max(1).values.tolist() == [255, 255, 0, 255, 255]


def test_grid_payloads_carry_means() -> None:
    maps = torch.rand(4, 3, 3)
    payloads = grid_payloads(maps)
    means = decode_payload(payloads["grid_means"])
    assert np.allclose(means, maps.mean((1, 2)).numpy())
    assert payloads["grid"]["dtype"] == "uint8" and payloads["grid"]["shape"] == [4, 3, 3]
