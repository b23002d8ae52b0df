"""A small CNN trained on an8Flower-single-6c: the class is the colour of the flower's center.

Four 3 x 3 convolutions, each followed by batch norm and ReLU, a 2 x 2 max-pool after each
of the first three, and a global-average-pooling head (so CAM applies), about 61,000
parameters::

    input 3 x 112 x 112 RGB, normalized with mean 0.5 and std 0.24 per channel
    features.conv1  3 -> 8   112 x 112   features.bn1, features.relu1, features.pool1
    features.conv2  8 -> 16   56 x 56    features.bn2, features.relu2, features.pool2
    features.conv3 16 -> 32   28 x 28    features.bn3, features.relu3, features.pool3
    features.conv4 32 -> 64   14 x 14    features.bn4, features.relu4
    gap                        1 x 1     (global average pool)
    fc             64 -> 6               logits, in the order of ``CLASSES``

The trained weights ship as ``flower_cnn.pt`` beside this file (a plain state dict of
float32 tensors), with ``flower_cnn.json`` recording their held-out accuracy, the seed, the
command that trained them (``scripts/train_flower_cnn.py``) and their SHA-256. The data:
:func:`cnnvis_widget.datasets.an8flower.an8flower` (drawn, no download).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..datasets.an8flower import DEFAULT_PARTS, class_colours

__all__ = ["CLASSES", "INFO", "MEAN", "SIZE", "STD", "VARIANT", "WEIGHTS", "FlowerCNN"]

VARIANT = "single"
CLASSES = [
    ", ".join(f"{part} {name}" for part, name in zip(DEFAULT_PARTS[VARIANT], names, strict=True))
    for names in class_colours(VARIANT)
]
SIZE = 112
MEAN = (0.5, 0.5, 0.5)
STD = (0.24, 0.24, 0.24)
WEIGHTS = Path(__file__).with_name("flower_cnn.pt")
INFO = Path(__file__).with_name("flower_cnn.json")

# (name, in channels, out channels) of each convolution; a max-pool follows the first three.
_CONVS = [("1", 3, 8), ("2", 8, 16), ("3", 16, 32), ("4", 32, 64)]
_POOL_AFTER = {"1": "pool1", "2": "pool2", "3": "pool3"}


class FlowerCNN(nn.Module):
    """conv-BN-ReLU x 4 (max-pool after the first three), global average pool, linear.

    Input ``(N, 3, 112, 112)`` normalized (any size >= 8 x 8 runs: the head averages over
    space); output logits ``(N, num_classes)``.
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
