"""attribute(precision="bfloat16"): the network runs under autocast, the maps come back in the
input's dtype and agree with float32 on EfficientNet-Lite0's real weights and the cat photo."""

from __future__ import annotations

import pytest
import torch

import cnnvis_widget as cv

# method -> (parameters, least correlation with the float32 map). bfloat16 keeps 8 bits of
# mantissa: single input gradients of Lite0 agree to 0.82-0.88 (measured), averages over
# noisy copies better (SmoothGrad: 0.94 with 8 samples, 0.95 with 50), maps built from a
# layer's activations or from logits best.
CASES = {
    "saliency": ({}, 0.8),
    "integrated_gradients": ({"steps": 16}, 0.75),
    "smoothgrad": ({"n_samples": 8}, 0.88),
    "gradcam": ({}, 0.9),
    "layercam": ({}, 0.9),
    "occlusion": ({"window": 56, "stride": 56}, 0.9),
}


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


@pytest.mark.slow
@pytest.mark.parametrize("method", list(CASES))
def test_bfloat16_maps_agree_with_float32(lite0: cv.ModelBundle, method: str) -> None:
    x = lite0.preprocess(cv.sample_image("cat"))
    partials: list[torch.dtype] = []

    def listen(partial: torch.Tensor, done: float) -> None:
        partials.append(partial.dtype)

    params, least = CASES[method]
    exact = cv.attribute(lite0.module, x, method, target=285, **params)
    fast = cv.attribute(
        lite0.module, x, method, target=285, precision="bfloat16", on_step=listen, **params
    )
    assert fast.dtype == x.dtype and fast.shape == exact.shape
    assert all(dtype == x.dtype for dtype in partials)
    assert _correlation(fast, exact) > least, method
    assert not torch.allclose(fast, exact, rtol=1e-5, atol=0), "bfloat16 was not applied"
    assert not torch.is_autocast_enabled("cpu")  # the autocast region ended


def test_precision_is_checked() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten()).eval()
    with pytest.raises(ValueError, match="precision must be 'float32' or 'bfloat16'"):
        cv.attribute(model, torch.rand(1, 3, 8, 8), "saliency", precision="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float32 model and input"):
        cv.attribute(model.double(), torch.rand(1, 3, 8, 8), "saliency", precision="bfloat16")
