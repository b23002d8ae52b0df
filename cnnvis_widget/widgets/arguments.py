"""The Explorer's constructor arguments: checked (refused with a message naming the fix, never
silently dropped), and a bare module turned into a :class:`~cnnvis_widget.models.ModelBundle`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..checks import check_module, check_number
from ..data import SAMPLE_KEY, sample_images
from ..images import ImageSource
from ..methods.api import check_params
from ..model_view import eval_view
from ..models import (
    AnyPreprocess,
    FunctionPreprocess,
    ModelBundle,
    Preprocess,
    as_preprocess,
    check_channels,
    imagenet_labels,
    logits_of,
    to_model_input,
)
from ..protocol import DEFAULT_METHOD, UPLOAD_PREFIX

CUSTOM_IMAGE = "custom image"
"""``image_name`` of an image given as an array, a tensor or an unnamed PIL image."""


def image_name_of(image: ImageSource | None) -> str:
    """The ``image_name`` trait of the constructor's image: a sample's name, ``upload:<file>``
    for a path, else ``CUSTOM_IMAGE``."""
    if image is None:
        return "cat"
    if isinstance(image, (str, Path)):
        return UPLOAD_PREFIX + Path(image).name
    if isinstance(image, Image.Image) and image.info.get(SAMPLE_KEY) in sample_images():
        return str(image.info[SAMPLE_KEY])
    return CUSTOM_IMAGE


def as_bundle(
    model: ModelBundle | nn.Module,
    preprocess: Preprocess | Callable[[Image.Image], Any] | None,
    labels: list[str] | None,
    image: ImageSource,
) -> ModelBundle:
    """The bundle of a bare module: ``preprocess`` a :class:`Preprocess`, any function
    image -> tensor (calibrated on ``image``, see :class:`FunctionPreprocess`), or ``None``
    (channels and input size inferred from the model: :meth:`Preprocess.for_model`)."""
    if isinstance(model, ModelBundle):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Explorer needs a ModelBundle (cv.load_model()) or an nn.Module; got {type(model).__name__}."
        )
    prepared = Preprocess.for_model(model) if preprocess is None else as_preprocess(preprocess)
    if isinstance(prepared, FunctionPreprocess):
        prepared.calibrate(image)
    check_channels(model, prepared)
    classes = class_count(model, prepared)
    if labels is None:
        labels = imagenet_labels() if classes == 1000 else []
    elif labels and len(labels) != classes:
        raise ValueError(
            f"got {len(labels)} labels for a model with {classes} classes; pass one label per "
            f"class ({classes}, in logit order), or labels=None for ImageNet's names (1000 "
            "classes) or 'class i'."
        )
    return ModelBundle(model, prepared, list(labels), name=type(model).__name__)


def check_arguments(
    model: object, preprocess: object, labels: object, traits: dict[str, Any]
) -> None:
    """The constructor's arguments, refused with a message naming the fix (never silently
    dropped, split or clamped)."""
    check_module(model, bundle=True)
    if isinstance(model, ModelBundle) and (preprocess is not None or labels is not None):
        given = ", ".join(
            f"{name}=..."
            for name, value in (("preprocess", preprocess), ("labels", labels))
            if value is not None
        )
        raise TypeError(
            f"Explorer(bundle, {given}): a bundle brings its own preprocess and labels; "
            f"refused rather than ignored. Pass dataclasses.replace(bundle, {given}) instead, "
            "or the bare module: Explorer(bundle.module, preprocess=..., labels=...)."
        )
    if labels is not None and (
        isinstance(labels, (str, bytes))
        or not isinstance(labels, Sequence)
        or not all(isinstance(label, str) for label in labels)
    ):
        raise TypeError(
            f"labels must be a list of class names (str), one per logit; got "
            f"{type(labels).__name__} {labels!r:.60}. Pass labels=[...] (a string is not "
            "split into characters)."
        )
    if "opacity" in traits:
        check_number("opacity", traits["opacity"], low=0, high=1)
    params = traits.get("method_params", {})
    if not isinstance(params, dict):
        raise TypeError(f"method_params must be a dict of parameter values; got {params!r}.")
    check_params(traits.get("method", DEFAULT_METHOD), dict(params))


def class_count(model: nn.Module, preprocess: AnyPreprocess) -> int:
    """Number of logits the model gives, from one forward of a grey image."""
    grey = torch.full((1, preprocess.channels, *preprocess.input_size), 0.5)
    with torch.no_grad():
        logits = logits_of(eval_view(model)(to_model_input(preprocess.normalize(grey), model)))
    return int(logits.shape[-1])
