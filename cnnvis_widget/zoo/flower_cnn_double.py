"""The an8Flower CNN of :mod:`.flower_cnn` trained on an8Flower-double-12c: the class is the
ordered pair of colours of the flower's center and leaves (12 classes).

Same architecture (:class:`~.flower_cnn.FlowerCNN`, 12 outputs), input and normalization as
``flower_cnn``. The trained weights ship as ``flower_cnn_double.pt`` beside this file, with
``flower_cnn_double.json`` recording their held-out accuracy, the seed, the command that
trained them (``scripts/train_flower_cnn.py --variant double``) and their SHA-256.
"""

from __future__ import annotations

from pathlib import Path

from ..datasets.an8flower import DEFAULT_PARTS, class_colours
from .flower_cnn import MEAN, SIZE, STD, FlowerCNN

__all__ = ["CLASSES", "INFO", "MEAN", "SIZE", "STD", "VARIANT", "WEIGHTS", "FlowerCNN"]

VARIANT = "double"
CLASSES = [
    ", ".join(f"{part} {name}" for part, name in zip(DEFAULT_PARTS[VARIANT], names, strict=True))
    for names in class_colours(VARIANT)
]
WEIGHTS = Path(__file__).with_name("flower_cnn_double.pt")
INFO = Path(__file__).with_name("flower_cnn_double.json")
