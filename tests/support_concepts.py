"""A small concept data set and CNN for dissection tests: random images with colour label maps on
every image, object label maps on some (partial annotation) and a whole-image scene on some."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnvis_widget.datasets.concept_format import ConceptLabels, concept_table

TABLE = concept_table(
    {"color": ["red", "green", "blue"], "object": ["cat", "dog"], "scene": ["beach"]}
)
IMAGE_SIZE, MASK = 32, 16


class TinyConcepts(torch.utils.data.Dataset):
    """``count`` items (PIL image 32 x 32, ConceptLabels with 16 x 16 maps), seeded."""

    concepts = TABLE

    def __init__(self, count: int = 24, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        self.labels = []
        for _ in range(count):
            labels = ConceptLabels({"color": [rng.integers(0, 4, (MASK, MASK)).astype(np.int32)]})
            if rng.random() < 0.6:
                objects = np.zeros((MASK, MASK), np.int32)
                top, left = rng.integers(0, MASK - 6, 2)
                objects[top : top + 6, left : left + 5] = rng.choice([4, 5])
                labels.pixels["object"] = [objects]
            if rng.random() < 0.4:
                labels.whole["scene"] = [6]
            self.labels.append(labels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, ConceptLabels]:
        return Image.fromarray(self.images[index]), self.labels[index]


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip
