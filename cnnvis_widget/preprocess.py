"""Preprocessing: images to the normalized model input ``(1, C, H, W)`` and back.

:class:`Preprocess` resizes, center-crops and normalizes with per-channel ``mean`` / ``std``
in [0, 1] pixel units; :class:`FunctionPreprocess` wraps a user's function (a torchvision
``transforms.Compose``) and finds its mean / std by calibration. Also here: the check that a
preprocessing fits a module's first convolution, and [0, 1] pixels ``(C, H, W)`` or
``(K, C, H, W)`` turned into PIL images or uint8 display tiles ``(K, H, W, 3)``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .checks import check_int
from .images import ImageSource, to_pil_rgb
from .input_spec import first_conv_channels, input_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Maps an image to the normalized ``(1, C, H, W)`` float tensor a model expects.

    ``C`` is the number of ``mean`` / ``std`` values (per channel, [0, 1] units): 3 for RGB
    models (ImageNet's by default), 1 for greyscale ones (``mean=(0.1307,), std=(0.3081,)``),
    any other count for multi-channel models. Images (PIL, numpy, path, bytes) are resized so
    the short side is ``resize`` pixels, center-cropped to ``input_size`` (H, W) and
    normalized. Colour images become greyscale (ITU-R 601 luma, PIL's ``"L"``) for C = 1;
    for a C other than 1 or 3 the grey level is repeated in every channel (pass tensors for
    real multi-channel data). Float tensors ``(C, H, W)`` or ``(N, C, H, W)`` in [0, 1] are
    only normalized (no resize).
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: int = 256

    def __post_init__(self) -> None:
        _check_channel_stats(self)
        _check_preprocess_values(self)

    @property
    def channels(self) -> int:
        """Channels C of the model input (the number of ``mean`` values)."""
        return len(self.mean)

    @classmethod
    def for_model(cls, module: nn.Module) -> Preprocess:
        """The preprocessing a bare module gets when none is given: its input channels from
        its first convolution (3 when it has none), its input size found by trying the
        model (224 x 224 first, then common sizes: 28 for MNIST-like models, 32, 64, ...),
        ImageNet's mean/std for 3 channels, none (mean 0, std 1: pixels in [0, 1]) for any
        other count. Images are resized to 256 and cropped for 224, else resized to the
        input size (short side) and cropped."""
        spec = input_spec(module)
        height, width = spec.size
        mean: tuple[float, ...] = IMAGENET_MEAN
        std: tuple[float, ...] = IMAGENET_STD
        if spec.channels != 3:
            mean, std = (0.0,) * spec.channels, (1.0,) * spec.channels
        resize = 256 if spec.size == (224, 224) else min(height, width)
        return cls(input_size=spec.size, mean=mean, std=std, resize=resize)

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

    def prepare(self, image: ImageSource) -> tuple[torch.Tensor, Image.Image]:
        """(model input (1, C, H, W), the image as the model sees it: PIL ``"L"`` for
        one channel, ``"RGB"`` otherwise, H x W)."""
        crop = self.crop(image)
        return self.from_crop(crop), crop

    def from_crop(self, crop: Image.Image) -> torch.Tensor:
        """An already cropped image (see :meth:`crop`) -> model input (1, C, H, W)."""
        return self.normalize(_with_channels(self.to_unit_tensor(crop), self.channels)[None])

    def crop(self, image: ImageSource) -> Image.Image:
        """The image exactly as the model sees it, resized and center-cropped: greyscale
        (PIL ``"L"``) for a one-channel model, RGB otherwise."""
        rgb = to_pil_rgb(image)
        height, width = self.input_size
        # The centre region that resize-then-crop would keep, cut first (so a 1 x 10000 strip
        # is never blown up to millions of pixels), then resized to exactly the input size.
        scale = max(self.resize / min(rgb.size), height / rgb.height, width / rgb.width)
        box_w, box_h = width / scale, height / scale
        left, top = (rgb.width - box_w) / 2, (rgb.height - box_h) / 2
        crop = rgb.resize(
            (width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
        )
        return crop.convert("L") if self.channels == 1 else crop

    @staticmethod
    def to_unit_tensor(image: Image.Image) -> torch.Tensor:
        """RGB or greyscale (``"L"``) PIL image -> float tensor (3, H, W) or (1, H, W) in
        [0, 1]."""
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        bands = len(image.getbands())
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(image.height, image.width, bands).permute(2, 0, 1).float() / 255.0

    def normalize(self, unit: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> model input."""
        channels = self.channels
        if unit.ndim != 4 or unit.shape[1] != channels:
            raise ValueError(
                f"expected a float tensor ({channels}, H, W) or (N, {channels}, H, W) in [0, 1] "
                f"(this preprocessing has {channels} channel(s)); got {tuple(unit.shape)}."
            )
        mean = torch.tensor(self.mean, dtype=unit.dtype, device=unit.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=unit.dtype, device=unit.device).view(1, -1, 1, 1)
        return (unit - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (N, C, H, W) -> [0, 1] pixels (not clamped)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * std + mean


def _check_channel_stats(pre: Preprocess) -> None:
    """``mean`` / ``std`` as float tuples of one length (the channel count) >= 1."""
    for what in ("mean", "std"):
        values = getattr(pre, what)
        if isinstance(values, (int, float)):
            values = (values,)
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise ValueError(
                f"Preprocess {what} must give one value per input channel, e.g. (0.5,) for a "
                f"greyscale model or 3 values (R, G, B); got {values!r}."
            )
        object.__setattr__(pre, what, tuple(float(v) for v in values))
    if len(pre.mean) != len(pre.std):
        raise ValueError(
            f"Preprocess mean has {len(pre.mean)} values but std has {len(pre.std)}; give one "
            "of each per input channel."
        )


def _check_preprocess_values(pre: Preprocess) -> None:
    """``input_size`` two ints >= 1, ``resize`` an int >= 1, ``mean`` / ``std`` finite and
    ``std`` non-zero (normalizing divides by it)."""
    size = pre.input_size
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in size
        )
    ):
        raise ValueError(
            f"Preprocess input_size must be (H, W), two positive ints; got {size!r}. "
            "E.g. input_size=(224, 224)."
        )
    check_int("Preprocess resize (the short side in pixels before the crop)", pre.resize, low=1)
    for what in ("mean", "std"):
        values = getattr(pre, what)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"Preprocess {what} must hold finite numbers; got {values!r}. Pass the "
                "per-channel values in [0, 1] units, e.g. ImageNet's."
            )
    if any(v == 0 for v in pre.std):
        raise ValueError(
            f"Preprocess std must be non-zero (positive) in every channel, since normalizing "
            f"divides by it; got {pre.std!r}. Pass the per-channel standard deviations, e.g. "
            f"{IMAGENET_STD} for ImageNet."
        )


def _with_channels(unit: torch.Tensor, channels: int) -> torch.Tensor:
    """[0, 1] pixels (3 or 1, H, W) -> (channels, H, W): grey is repeated, colour kept for 3
    channels, reduced to its luma (ITU-R 601, as PIL's "L") for any other count."""
    if unit.shape[0] == channels:
        return unit
    if unit.shape[0] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=unit.dtype).view(3, 1, 1)
        unit = (unit * weights).sum(dim=0, keepdim=True)
    return unit.expand(channels, *unit.shape[1:]).contiguous()


class FunctionPreprocess:
    """Any preprocessing function ``image -> tensor`` (a torchvision ``transforms.Compose``, a
    lambda) with what the tool needs around it.

    The function receives a PIL image: a PIL image passed by the user as it is, anything else
    (arrays, paths, bytes, the sample photos, uploads) as RGB. It must return a float tensor
    ``(C, H, W)`` or ``(1, C, H, W)`` (a numpy array is accepted); the result is the model
    input ``(1, C, H, W)``.

    The first image calibrates it: ``channels`` and ``input_size`` come from the output's
    shape; ``mean`` / ``std`` (per channel, [0, 1] units) from feeding the function uniform
    black, white and mid-grey images of the same PIL mode and size. For a per-channel affine
    function of the pixels (resize, crop, ``ToTensor``, ``Normalize``, greyscale conversion:
    the usual), x_black = -mean / std and x_white = (1 - mean) / std, checked on the grey
    image. Synthesis and the displayed image use them. A function that is not of that kind
    gets mean 0, std 1 (its output taken as [0, 1] pixels) and a warning.
    """

    def __init__(self, function: Callable[[Image.Image], Any]) -> None:
        if not callable(function):
            raise TypeError(
                f"preprocess must be a cv.Preprocess or a function image -> tensor; got "
                f"{type(function).__name__}."
            )
        self.function = function
        self._stats: tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]] | None = None
        self.affine = True
        """False when calibration found the function not per-channel affine (see above)."""

    def __repr__(self) -> str:
        return f"FunctionPreprocess({self.function!r})"

    def __call__(self, image: ImageSource) -> torch.Tensor:
        pil = image if isinstance(image, Image.Image) else to_pil_rgb(image)
        x = self._apply(pil)
        if self._stats is None:
            self._calibrate(pil, x)
        elif tuple(x.shape[1:]) != (self.channels, *self.input_size):
            raise ValueError(
                f"the preprocessing function returned {tuple(x.shape)} for this image but "
                f"{(1, self.channels, *self.input_size)} for the first one; a model needs one "
                "input size: resize and crop to a fixed size inside the function."
            )
        return x

    def prepare(self, image: ImageSource) -> tuple[torch.Tensor, Image.Image]:
        """(model input (1, C, H, W), the image as the model sees it: the input mapped back
        to [0, 1] pixels with the calibrated mean/std; PIL ``"L"`` for one channel, RGB for
        three, the channel mean as grey for any other count)."""
        x = self(image)
        return x, unit_to_pil(self.denormalize(x.float())[0].clamp(0, 1))

    def calibrate(self, image: ImageSource) -> None:
        """Calibrate on ``image`` now (the first call does it otherwise)."""
        self._stats = None
        self(image)

    def _apply(self, pil: Image.Image) -> torch.Tensor:
        out = self.function(pil)
        if isinstance(out, np.ndarray):
            out = torch.from_numpy(out)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the preprocessing function returned {type(out).__name__}; it must return a "
                "float tensor (C, H, W) or (1, C, H, W), e.g. end it with transforms.ToTensor()."
            )
        if out.ndim == 3:
            out = out.unsqueeze(0)
        if out.ndim != 4 or out.shape[0] != 1 or not out.is_floating_point():
            raise ValueError(
                f"the preprocessing function returned a {out.dtype} tensor of shape "
                f"{tuple(out.shape)}; it must return a float tensor (C, H, W) or (1, C, H, W)."
            )
        return out.detach()

    def _calibrate(self, pil: Image.Image, x: torch.Tensor) -> None:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        channels = int(x.shape[1])
        levels = [self._apply(_uniform_like(pil, value)).double() for value in (0, 255, 128)]
        black, white, grey = (level.flatten(2) for level in levels)
        span = white.mean(dim=2) - black.mean(dim=2)  # (1, C): 1 / std
        constant = all(
            float((v.amax(dim=2) - v.amin(dim=2)).abs().max()) <= 1e-3 * (1 + float(v.abs().max()))
            for v in (black, white, grey)
        )
        expected = black.mean(dim=2) + span * (128 / 255)
        affine = (
            constant
            and all(level.shape == x.shape for level in levels)
            and bool((span.abs() > 1e-12).all())
            and bool(((grey.mean(dim=2) - expected).abs() <= 0.02 * span.abs()).all())
        )
        if affine:
            std = tuple(float(v) for v in (1 / span)[0])
            mean = tuple(float(-b * d) for b, d in zip(black.mean(dim=2)[0], std, strict=True))
        else:
            warnings.warn(
                "the preprocessing function is not a per-channel affine map of the pixels "
                "(resize, crop, ToTensor, Normalize): its output is taken as [0, 1] pixels "
                "(mean 0, std 1) for the displayed image and for synthesis. Pass "
                "cv.Preprocess(...) for exact ones.",
                stacklevel=3,
            )
            mean, std = (0.0,) * channels, (1.0,) * channels
        self.affine = affine
        self._stats = (size, mean, std)

    def _calibrated(self) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]:
        if self._stats is None:
            raise RuntimeError(
                "the preprocessing function has not seen an image yet: call it on one first "
                "(preprocess(image), or preprocess.calibrate(image))."
            )
        return self._stats

    @property
    def input_size(self) -> tuple[int, int]:
        return self._calibrated()[0]

    @property
    def mean(self) -> tuple[float, ...]:
        return self._calibrated()[1]

    @property
    def std(self) -> tuple[float, ...]:
        return self._calibrated()[2]

    @property
    def channels(self) -> int:
        return len(self.mean)

    def normalize(self, unit: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> model input, with the calibrated mean/std."""
        return Preprocess(self.input_size, self.mean, self.std).normalize(unit)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (N, C, H, W) -> [0, 1] pixels (not clamped)."""
        return Preprocess(self.input_size, self.mean, self.std).denormalize(x)


def as_preprocess(preprocess: Preprocess | Callable[[Image.Image], Any]) -> AnyPreprocess:
    """A :class:`Preprocess` as it is, a function wrapped in :class:`FunctionPreprocess`."""
    if isinstance(preprocess, (Preprocess, FunctionPreprocess)):
        return preprocess
    return FunctionPreprocess(preprocess)


def _uniform_like(image: Image.Image, value: int) -> Image.Image:
    """A uniform image of ``image``'s size and PIL mode at grey level ``value`` (0..255)."""
    rgb = Image.new("RGB", image.size, (value, value, value))
    try:
        return rgb.convert(image.mode)
    except ValueError:
        return rgb


def unit_to_pil(unit: torch.Tensor) -> Image.Image:
    """[0, 1] pixels (C, H, W) -> PIL: ``"L"`` for one channel, RGB for three, the channel
    mean as grey for any other count."""
    if unit.shape[0] not in (1, 3):
        unit = unit.mean(dim=0, keepdim=True)
    pixels = (unit.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if unit.shape[0] == 1 else array)


def display_pixels(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (K, C, H, W) -> uint8 (K, H, W, 3) for the widget: RGB as is, one
    channel repeated (greyscale shown as greyscale), any other count as the grey channel
    mean."""
    if images.shape[1] != 3:
        images = images.float().mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu()


def check_channels(module: nn.Module, preprocess: AnyPreprocess) -> None:
    """Raise ``ValueError`` when ``preprocess`` gives another channel count than the
    module's first convolution takes, naming the fix."""
    wanted = first_conv_channels(module)
    if wanted is not None and wanted != preprocess.channels:
        example = "mean=(0.5,), std=(0.5,)" if wanted == 1 else f"{wanted} mean and std values"
        raise ValueError(
            f"the preprocessing gives {preprocess.channels} channel(s) but the model's first "
            f"convolution takes {wanted}. Pass preprocess=cv.Preprocess(input_size=..., "
            f"{example}), or a function that returns {wanted}-channel tensors, or "
            "preprocess=None to let the Explorer infer it from the model."
        )


class WholeImage:
    """``preprocess`` with the whole image in view: the image is resized (bilinear, aspect
    not kept) to the model's input size and never cropped, so that a label map made for the
    whole image lines up with the model's input (Network Dissection's concept masks). With a
    :class:`Preprocess` the result is exact; a function preprocess gets the resized image
    and should not crop it again."""

    def __init__(self, preprocess: Preprocess | FunctionPreprocess | WholeImage) -> None:
        if isinstance(preprocess, WholeImage):
            preprocess = preprocess.base
        if isinstance(preprocess, Preprocess):
            preprocess = replace(preprocess, resize=min(preprocess.input_size))
        self.base: Preprocess | FunctionPreprocess = preprocess

    @property
    def input_size(self) -> tuple[int, int]:
        return self.base.input_size

    @property
    def channels(self) -> int:
        return self.base.channels

    def _resized(self, image: ImageSource) -> ImageSource:
        if isinstance(image, torch.Tensor):
            return image  # tensors are only normalized
        rgb = to_pil_rgb(image)
        height, width = self.base.input_size
        if rgb.size == (width, height):
            return rgb
        return rgb.resize((width, height), Image.Resampling.BILINEAR)

    def __call__(self, image: ImageSource) -> torch.Tensor:
        """Model input (1, C, H, W) of the whole ``image``."""
        return self.base(self._resized(image))

    def prepare(self, image: ImageSource) -> tuple[torch.Tensor, Image.Image]:
        """(model input (1, C, H, W), the image as the model sees it)."""
        return self.base.prepare(self._resized(image))

    @property
    def mean(self) -> tuple[float, ...]:
        return self.base.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.base.std

    def normalize(self, unit: torch.Tensor) -> torch.Tensor:
        return self.base.normalize(unit)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.denormalize(x)


AnyPreprocess = Preprocess | FunctionPreprocess | WholeImage
"""Anything the engine accepts as a preprocess."""
