"""cnnvis-widget: open any PyTorch CNN in a notebook and see how it sees.

Public API (see DESIGN.md): load_model, sample_image(s), layers, activations, attribute,
upsample, METHODS, Explorer.
"""

from .data import sample_image, sample_images
from .evaluate import deletion_insertion, randomization_check
from .layers import LayerInfo, activations, layers
from .methods import METHODS, attribute, upsample
from .models import ModelBundle, Preprocess, load_model

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Explorer",
    "LayerInfo",
    "ModelBundle",
    "Preprocess",
    "__version__",
    "activations",
    "attribute",
    "deletion_insertion",
    "layers",
    "load_model",
    "randomization_check",
    "sample_image",
    "sample_images",
    "upsample",
]


def __getattr__(name: str) -> object:
    # The widget pulls in anywidget/ipywidgets; import it only when asked for.
    if name == "Explorer":
        from .widgets import Explorer

        return Explorer
    raise AttributeError(f"module 'cnnvis_widget' has no attribute {name!r}")
