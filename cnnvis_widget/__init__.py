"""cnnvis-widget: open any PyTorch CNN in a notebook and see how it sees.

Public API (described in README.md): load_model, sample_image(s), layers, activations, attribute,
upsample, METHODS, Explorer; synthesis: visualize_feature, visualize_class, invert, caricature,
deep_dream, fooling_image, adversarial, style_transfer, render with composable objectives;
datasets (real image data, offline, as torch Datasets; imported when first used); unit_atlas
and UnitAtlas (per-unit statistics of a pass over a data set); dissect (Network Dissection);
relevant_features, average_visualizations and explain (Oramas et al.'s explanation by
interpretation); empirical_receptive_field and empirical_fields (Zhou et al.'s occlusion
fields).
"""

from .atlas import UnitAtlas, unit_atlas
from .atlas.sheet import examples_sheet
from .data import sample_image, sample_images
from .dissection import DissectionResult, dissect
from .empirical_field import EmpiricalField, empirical_fields, empirical_receptive_field
from .evaluate import deletion_insertion, randomization_check
from .images import image_sheet
from .interpretation import (
    RelevantFeatures,
    average_visualizations,
    explain,
    relevant_features,
)
from .layers import LayerInfo, activations, layers
from .methods import METHODS, attribute, upsample
from .models import ModelBundle, Preprocess, load_model
from .synthesis import (
    SynthesisFrame,
    SynthesisResult,
    adversarial,
    caricature,
    deep_dream,
    fooling_image,
    invert,
    objectives,
    render,
    style_transfer,
    visualize_class,
    visualize_feature,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Explorer",
    "LayerInfo",
    "ModelBundle",
    "Preprocess",
    "SynthesisFrame",
    "SynthesisResult",
    "DissectionResult",
    "EmpiricalField",
    "RelevantFeatures",
    "UnitAtlas",
    "__version__",
    "activations",
    "adversarial",
    "attribute",
    "average_visualizations",
    "caricature",
    "datasets",
    "deep_dream",
    "deletion_insertion",
    "dissect",
    "empirical_fields",
    "empirical_receptive_field",
    "examples_sheet",
    "explain",
    "fooling_image",
    "image_sheet",
    "invert",
    "layers",
    "load_model",
    "objectives",
    "randomization_check",
    "relevant_features",
    "render",
    "sample_image",
    "sample_images",
    "style_transfer",
    "unit_atlas",
    "upsample",
    "visualize_class",
    "visualize_feature",
]


def __getattr__(name: str) -> object:
    # The widget pulls in anywidget/ipywidgets; import it only when asked for.
    if name == "Explorer":
        from .widgets import Explorer

        return Explorer
    if name == "datasets":
        import importlib

        return importlib.import_module(".datasets", __name__)
    raise AttributeError(f"module 'cnnvis_widget' has no attribute {name!r}")
