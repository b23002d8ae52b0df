"""Small models shipped with the package, with their trained weights (``cv.load_model(name)``).

- :mod:`.fashion_cnn`: a five-convolution CNN trained on Fashion-MNIST (``"fashion_cnn"``).
- :mod:`.flower_cnn`: a four-convolution CNN trained on an8Flower-single-6c (``"flower_cnn"``).
- :mod:`.flower_cnn_double`: the same CNN trained on an8Flower-double-12c
  (``"flower_cnn_double"``).
"""

from .fashion_cnn import FashionCNN
from .flower_cnn import FlowerCNN

__all__ = ["FashionCNN", "FlowerCNN"]
