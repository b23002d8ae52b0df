"""A classifier whose relevant filters are known, and its data: images of one bright bar on
noise, vertical (class 0) or horizontal (class 1). Filter 0 of ``conv1`` detects vertical
bars, filter 1 horizontal ones, filter 2 is a box blur (the bar's brightness: the same for
both classes), filter 3 is dead (all zero); ``conv2`` passes filters 0 and 1 on, and the
logits are their pooled maps, so the model classifies every image right."""

from __future__ import annotations

import torch
from torch import nn


class BarNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        with torch.no_grad():
            vertical = torch.tensor([[-1.0, 2.0, -1.0]] * 3)
            weight = torch.zeros(4, 1, 3, 3)
            weight[0, 0], weight[1, 0], weight[2, 0] = vertical, vertical.T, 1 / 9
            self.conv1.weight.copy_(weight)
            self.conv1.bias.copy_(torch.tensor([-0.5, -0.5, 0.0, 0.0]))
            self.conv2.weight.zero_()
            self.conv2.weight[0, 0, 1, 1] = self.conv2.weight[1, 1, 1, 1] = 1.0
            self.conv2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.conv1(x)))
        return self.gap(self.relu2(self.conv2(x))).flatten(1)


def bars(n: int, seed: int = 0, size: int = 12) -> list[tuple[torch.Tensor, int]]:
    """``n`` (image (1, size, size), label) pairs, labels alternating 0, 1."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        image = 0.2 * torch.rand(1, size, size, generator=generator)
        where = int(torch.randint(2, size - 2, (1,), generator=generator))
        if i % 2 == 0:
            image[0, :, where] += 1.0
        else:
            image[0, where, :] += 1.0
        items.append((image, i % 2))
    return items


def identity(image: torch.Tensor) -> torch.Tensor:
    """The preprocess: the image is already the model input."""
    return image[None]
