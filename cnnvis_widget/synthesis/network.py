"""The model as synthesis sees it: [0, 1] images in, named layer outputs and logits out.

Every synthesis method optimizes an image in [0, 1] pixel units; :class:`SynthesisNet`
normalizes it the way the model expects (the bundle's ``mean``/``std``, ImageNet's by default
for a bare module) and runs the forward pass only as far as the objective needs: once every
requested layer has produced its output, the rest of the network is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..capture import LayerRef, capture, resolve_layer
from ..layout import faster_layout
from ..model_view import eval_view, user_hooks
from ..models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelBundle,
    Preprocess,
    first_conv_channels,
    input_spec,
    logits_of,
    module_device,
)
from .stand_in import layer_stand_in

LOGITS = "<logits>"
"""Feature key of the model's output logits (N, classes)."""

ModelLike = nn.Module | ModelBundle
Features = dict[str, torch.Tensor]


@dataclass
class SynthesisNet:
    """A classifier plus the normalization of its input.

    ``mean`` / ``std`` (one value per input channel, [0, 1] units; their count is the
    model's channel count C) map a [0, 1] image (N, C, H, W) to model input. ``input_size``
    is the (H, W) the model needs when it takes only one size (a LeNet's flatten -> linear,
    a ViT): images of any other size are resized to it (bilinear, antialiased, inside the
    differentiated pass) before the model sees them. ``None``: any size works.
    """

    module: nn.Module
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    labels: list[str] = field(default_factory=list)
    input_size: tuple[int, int] | None = None
    fold: bool = True
    """Run passes on a batch-norm-folded stand-in cut after the wanted outputs (same function
    up to float rounding, checked when built; see :mod:`.stand_in`)."""
    _calls: dict[str, int] = field(default_factory=dict, repr=False)
    _stand_ins: dict[tuple[str, ...], nn.Module | None] = field(default_factory=dict, repr=False)
    origin: nn.Module = field(init=False, repr=False)
    """The user's model (only read: it keys the stand-in caches); ``module`` is its eval-mode
    view (:func:`~cnnvis_widget.model_view.eval_view`), which passes run on."""

    def __post_init__(self) -> None:
        self.origin = self.module
        self.module = eval_view(self.module)
        if user_hooks(self.origin):
            self.fold = False  # a stand-in rebuilt from forward() alone would skip them

    @classmethod
    def of(
        cls,
        model: ModelLike,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> SynthesisNet:
        """From a :class:`ModelBundle` (its preprocessing's mean/std unless given) or a module
        (ImageNet's mean/std for 3 input channels, mean 0 / std 1 for any other count, the
        count from its first convolution). A model that runs at one input size only gets it
        as ``input_size`` (found by trying it: :func:`~cnnvis_widget.models.input_spec`)."""
        if isinstance(model, ModelBundle):
            pre = model.preprocess
            channels = pre.channels
            return cls(
                model.module,
                _per_channel(mean, "mean", channels) if mean is not None else pre.mean,
                _per_channel(std, "std", channels) if std is not None else pre.std,
                list(model.labels),
                _fixed_size(model.module, channels, pre.input_size),
            )
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"expected a torch.nn.Module or a ModelBundle (cv.load_model()); got "
                f"{type(model).__name__}."
            )
        given = mean if mean is not None else std
        wanted = first_conv_channels(model)
        channels = len(given) if given is not None else wanted or 3
        if wanted is not None and channels != wanted:
            raise ValueError(
                f"mean/std give {channels} channel(s) but the model's first convolution takes "
                f"{wanted}. Pass {wanted} mean and std values (one per input channel)."
            )
        default_mean = IMAGENET_MEAN if channels == 3 else (0.0,) * channels
        default_std = IMAGENET_STD if channels == 3 else (1.0,) * channels
        return cls(
            model,
            _per_channel(mean, "mean", channels) if mean is not None else default_mean,
            _per_channel(std, "std", channels) if std is not None else default_std,
            input_size=_fixed_size(model, channels),
        )

    @property
    def channels(self) -> int:
        """Channels C of the model input (and of every synthesized image)."""
        return len(self.mean)

    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    @property
    def dtype(self) -> torch.dtype:
        return next(
            (p.dtype for p in self.module.parameters() if p.is_floating_point()), torch.float32
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images (N, C, H, W) -> model input."""
        return Preprocess(mean=self.mean, std=self.std).normalize(images)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (N, C, H, W) -> [0, 1] images (not clipped)."""
        return Preprocess(mean=self.mean, std=self.std).denormalize(x)

    def unit_images(self, x: torch.Tensor) -> torch.Tensor:
        """The [0, 1] images (not clipped) behind model input ``x`` (N, C, H, W), float32 on
        the model's device; a clear error for anything else (a PIL image, uint8 pixels)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"expected the model input (N, {self.channels}, H, W), e.g. "
                f"bundle.preprocess(image); got {shape}."
            )
        if not x.is_floating_point():
            raise ValueError(
                f"expected the normalized float model input; got a {x.dtype} tensor. Use "
                "bundle.preprocess(image) (or preprocess.normalize(pixels / 255))."
            )
        return self.denormalize(x.detach().to(self.device, torch.float32))

    def check_layers(self, names: Sequence[str]) -> None:
        """Raise ``ValueError`` listing the valid names for any unknown layer."""
        for name in names:
            if name != LOGITS:
                resolve_layer(self.module, name)

    def features(self, images: torch.Tensor, names: Sequence[str]) -> Features:
        """Outputs of the layers ``names`` (and the logits under :data:`LOGITS`) for [0, 1]
        ``images`` (N, C, H, W), differentiable with respect to ``images`` (resized to
        ``input_size`` first when the model takes one size only). A float16 / bfloat16 model
        runs in its dtype; its outputs come back as float32.

        A layer named plainly records its last call in the forward pass, ``"name@k"`` its
        call ``k``. Without :data:`LOGITS` the pass stops after the last wanted output.
        Call inside :meth:`session` (eval mode, restored after).
        """
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            images = nn.functional.interpolate(
                images.float(), self.input_size, mode="bilinear", antialias=True
            )
        x = self.normalize(images.to(dtype=self.dtype))
        outputs = self._run(x.contiguous(memory_format=self._layout(x, names)), names)
        if x.dtype in (torch.float16, torch.bfloat16):
            # A half model computes in its dtype; objectives and losses get float32 outputs
            # (a Gram matrix or squared error times 1e5 overflows float16's 65504).
            return {name: value.float() for name, value in outputs.items()}
        return outputs

    def _run(self, x: torch.Tensor, names: Sequence[str]) -> Features:
        """The forward pass of :meth:`features` on model input ``x``: through a batch-norm-
        folded stand-in cut after the wanted outputs when there is one (plain layer names and
        the logits), else through the model recording with :func:`~cnnvis_widget.capture.
        capture` (the outputs stay in the autograd graph), stopping after the last wanted
        output once the first pass has counted each layer's calls."""
        wanted = [name for name in names if name != LOGITS]
        if self.fold and all(LayerRef.parse(name).call is None for name in names):
            key = tuple(names)
            if key not in self._stand_ins:  # looked up once per run, not per step
                with torch.autocast(x.device.type, enabled=False), torch.no_grad():
                    self._stand_ins[key] = layer_stand_in(
                        self.origin, wanted, x[:1].detach(), logits=LOGITS in names
                    )
            stand_in = self._stand_ins[key]
            if stand_in is not None:  # it returns the layers' outputs, then the logits
                order = [*wanted, LOGITS] if LOGITS in names else wanted
                return dict(zip(order, stand_in(x), strict=True))
        stop_early = LOGITS not in names and all(name in self._calls for name in wanted)
        output: object = None
        with capture(self.module, wanted, calls=self._calls, stop_early=stop_early) as recorded:
            output = self.module(x)  # not run to its end when stopped early
        features: Features = {}
        for name in wanted:
            self._calls.setdefault(name, recorded.calls(name))
            tensor = recorded.output(name)
            if tensor is None:
                raise RuntimeError(
                    f"layer {name!r} produced no tensor output in the forward pass; pick a "
                    "layer listed with calls > 0 by cv.layers(module, x)."
                )
            features[name] = tensor
        if LOGITS in names:
            features[LOGITS] = logits_of(output)
        return features

    def _layout(self, x: torch.Tensor, names: Sequence[str]) -> torch.memory_format:
        """The activation layout for passes like this one (:func:`~cnnvis_widget.layout.
        faster_layout`), measured once per model, layers, batch size, channels, device, dtype
        and autocast state; not per image size, so deep dream's octaves measure once.
        Passes without autograd (probes) use the default layout."""
        if not torch.is_grad_enabled():
            return torch.contiguous_format
        autocast = torch.is_autocast_enabled(x.device.type)
        key = (
            "synthesis",
            id(self.origin),
            tuple(names),
            *x.shape[:2],
            x.device,
            x.dtype,
            autocast,
        )

        def run(probe: torch.Tensor) -> torch.Tensor:
            return torch.stack([o.float().sum() for o in self._run(probe, names).values()])

        return faster_layout(key, x, run)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) for [0, 1] images, differentiable."""
        return self.features(images, [LOGITS])[LOGITS]

    @contextmanager
    def session(self) -> Iterator[SynthesisNet]:
        """The block a synthesis run computes in: outside inference mode (the image's
        gradient needs autograd). The user's model is never changed: passes run on its
        eval-mode, frozen view (``module``)."""
        with torch.inference_mode(False):
            yield self

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"


def _fixed_size(
    module: nn.Module, channels: int, size: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """The one input size ``module`` runs at, or ``None`` when it runs at several or when
    trying sizes finds none (e.g. a model whose output is not logits, such as a feature
    extractor being inverted, or one for tiny images): images then keep their own size."""
    try:
        spec = input_spec(module, channels, size)
    except ValueError:
        return None
    return spec.size if spec.fixed else None


def _per_channel(values: Sequence[float], what: str, channels: int) -> tuple[float, ...]:
    items = tuple(float(v) for v in values)
    if len(items) != channels:
        raise ValueError(
            f"{what} must give one value per input channel ({channels}) in [0, 1] units; got "
            f"{values!r}."
        )
    return items
