"""A small, plain CNN trained on Fashion-MNIST: the model of the teaching material.

Five 3 x 3 convolutions, each followed by batch norm and ReLU, two 2 x 2 max-pools and a
global-average-pooling head (so CAM applies), about 36,000 parameters::

    input 1 x 28 x 28, normalized with Fashion-MNIST's mean 0.2860 and std 0.3530
    features.conv1  1 -> 16   28 x 28   features.bn1, features.relu1
    features.conv2 16 -> 16   28 x 28   features.bn2, features.relu2
    features.pool1            14 x 14   (max-pool 2 x 2)
    features.conv3 16 -> 32   14 x 14   features.bn3, features.relu3
    features.conv4 32 -> 32   14 x 14   features.bn4, features.relu4
    features.pool2             7 x 7
    features.conv5 32 -> 64    7 x 7    features.bn5, features.relu5
    gap                        1 x 1    (global average pool)
    fc             64 -> 10              logits, in the order of ``CLASSES``

The trained weights ship as ``fashion_cnn.pt`` beside this file (a plain state dict of
float32 tensors), with ``fashion_cnn.json`` recording their test accuracy, the seed, the
command that trained them (``scripts/train_fashion_cnn.py``) and their SHA-256.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..datasets.fashion import CLASSES

__all__ = ["CLASSES", "INFO", "MEAN", "STD", "WEIGHTS", "FashionCNN"]

MEAN = (0.2860,)
STD = (0.3530,)
WEIGHTS = Path(__file__).with_name("fashion_cnn.pt")
INFO = Path(__file__).with_name("fashion_cnn.json")

# (name, in channels, out channels) of each convolution; a max-pool follows conv2 and conv4.
_CONVS = [("1", 1, 16), ("2", 16, 16), ("3", 16, 32), ("4", 32, 32), ("5", 32, 64)]
_POOL_AFTER = {"2": "pool1", "4": "pool2"}


class FashionCNN(nn.Module):
    """conv-BN-ReLU x 5 (max-pool after the 2nd and 4th), global average pool, linear.

    Input ``(N, 1, 28, 28)`` normalized (any size >= 4 x 4 runs: the head averages over
    space); output logits ``(N, 10)``.
    """

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for name, cin, cout in _CONVS:
            layers[f"conv{name}"] = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
            layers[f"bn{name}"] = nn.BatchNorm2d(cout)
            layers[f"relu{name}"] = nn.ReLU()
            if name in _POOL_AFTER:
                layers[_POOL_AFTER[name]] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(_CONVS[-1][2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.gap(self.features(x)), 1))
