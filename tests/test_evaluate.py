"""Deletion / insertion scores and the parameter randomization sanity check."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.evaluate import spearman


class RegionClassifier(nn.Module):
    """Two classes; class 0's logit is 5 x the mean of a 4x4 square at the top left."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = 5 * x[:, :, :4, :4].mean((1, 2, 3))
        return torch.stack([inside, torch.zeros_like(inside)], dim=1)


def test_deletion_and_insertion_reward_the_right_map() -> None:
    x = torch.zeros(1, 3, 12, 12)
    x[:, :, :4, :4] = 1.0  # blurring spreads the square, so insertion starts lower
    right = torch.zeros(1, 1, 12, 12)
    right[:, :, :4, :4] = 1.0
    wrong = torch.zeros(1, 1, 12, 12)
    wrong[:, :, 8:, 8:] = 1.0
    model = RegionClassifier()
    good = cv.deletion_insertion(model, x, right, target=0, steps=12, blur_sigma=2.0)
    bad = cv.deletion_insertion(model, x, wrong, target=0, steps=12, blur_sigma=2.0)
    assert good.deletion.item() < bad.deletion.item()
    assert good.insertion.item() > bad.insertion.item()
    # Curve ends: the intact image and the fully deleted / blurred one.
    p_full = torch.softmax(torch.tensor([5.0, 0.0]), 0)[0]
    assert torch.isclose(good.deletion_curve[0, 0], p_full)
    assert torch.isclose(good.deletion_curve[0, -1], torch.tensor(0.5))
    assert good.insertion_curve[0, 0] < p_full
    assert torch.isclose(good.insertion_curve[0, -1], p_full)
    assert good.fractions[0] == 0 and good.fractions[-1] == 1


def test_deletion_insertion_on_lite0(lite0) -> None:
    x = lite0.preprocess(cv.sample_image("coffee"))
    cam = cv.attribute(lite0.module, x, "gradcam", target=967)
    scores = cv.deletion_insertion(lite0.module, x, cam, target=967, steps=16)
    inverse = cv.deletion_insertion(lite0.module, x, -cam, target=967, steps=16)
    assert scores.deletion.item() < inverse.deletion.item()
    assert scores.insertion.item() > inverse.insertion.item()


def test_spearman_matches_scipy() -> None:
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 1, 5, 5)
    ours = spearman(a, b)
    for i in range(3):
        assert ours[i].item() == pytest.approx(
            spearmanr(a[i].flatten(), b[i].flatten())[0], abs=1e-9
        )


def test_randomization_check_leaves_the_model_alone(residual, tiny_input) -> None:
    residual.train()
    before = copy.deepcopy(residual.state_dict())
    steps = cv.randomization_check(residual, tiny_input, "saliency", target=[1, 2, 3])
    names = [step.layer for step in steps]
    assert names == ["fc", "conv2", "block_conv", "bn1", "conv1"]  # from the output down
    assert all(m.training for m in residual.modules())
    for key, value in residual.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(step.spearman.shape == (3,) for step in steps)
    assert all(torch.all(step.spearman.abs() <= 1 + 1e-9) for step in steps)
    # The gradient depends on the weights: with everything re-initialized it decorrelates.
    assert torch.all(steps[-1].spearman < 0.9)
