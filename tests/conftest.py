"""Shared fixtures: tiny seeded models and the real EfficientNet-Lite0."""

from __future__ import annotations

import pytest
import torch
from support import TinyCNN, TinyResidual, seeded
from torch import nn

import cnnvis_widget as cv


@pytest.fixture
def tiny() -> nn.Module:
    return seeded(TinyCNN())


@pytest.fixture
def tiny_inplace() -> nn.Module:
    return seeded(TinyCNN(inplace=True))


@pytest.fixture
def residual() -> nn.Module:
    return seeded(TinyResidual())


@pytest.fixture
def tiny_input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 16, 16, dtype=torch.float64)


@pytest.fixture(scope="session")
def lite0() -> cv.ModelBundle:
    return cv.load_model()
