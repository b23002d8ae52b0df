"""Small models shipped with the package, with their trained weights (``cv.load_model(name)``).

- :mod:`.fashion_cnn`: a five-convolution CNN trained on Fashion-MNIST (``"fashion_cnn"``).
"""

from .fashion_cnn import FashionCNN

__all__ = ["FashionCNN"]
