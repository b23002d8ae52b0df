"""Feature visualization and image synthesis (activation maximization,
natural pre-images, deep dream, attacks, style; results and choices in docs/synthesis.md).

Every method optimizes [0, 1] images against a model (a bundle or a bare module with
``mean``/``std``), is seeded, runs on the model's device, leaves the model as found, streams
its steps to ``on_step`` and can be stopped from it.
"""

from . import objectives
from .attacks import adversarial, fooling_image
from .dream import deep_dream
from .feature import visualize_class, visualize_feature
from .image_params import ImageParam, make_param
from .network import LOGITS, SynthesisNet
from .preimage import PreimagePrior, caricature, invert
from .render import Penalties, render
from .result import SynthesisFrame, SynthesisResult
from .style import style_transfer
from .transforms import Robustness

__all__ = [
    "LOGITS",
    "ImageParam",
    "Penalties",
    "PreimagePrior",
    "Robustness",
    "SynthesisFrame",
    "SynthesisNet",
    "SynthesisResult",
    "adversarial",
    "caricature",
    "deep_dream",
    "fooling_image",
    "invert",
    "make_param",
    "objectives",
    "render",
    "style_transfer",
    "visualize_class",
    "visualize_feature",
]
