"""Attribution methods (pixel, layer and perturbation maps; synthesis lives in cnnvis_widget.synthesis). Importing this package registers every method in ``METHODS``."""

from . import cam, fixations, gradients, perturbation  # noqa: F401  (registration side effects)
from .api import attribute, upsample
from .context import Cancelled
from .registry import METHODS, Method, Param

__all__ = ["METHODS", "Cancelled", "Method", "Param", "attribute", "upsample"]
