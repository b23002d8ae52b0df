"""Bad input, one row per case: every row names the call, the exception type it must raise,
and two patterns its message must match: one naming the problem, one naming the fix.

The table covers the public API (attribute, layers, activations, upsample, load_model,
Preprocess, images, predict, deletion_insertion, randomization_check, the synthesis methods)
and the widget (cv.Explorer). docs/bad_input.md lists the same rows (case, error, message);
``python tests/test_bad_input.py`` prints a census of what today's code does with each row
(clear message / raw internal error / meaningless result / invalid value silently accepted).
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import torch
from support import TinyCNN, seeded
from torch import nn

import cnnvis_widget as cv

NAN = float("nan")
INF = float("inf")


class Kit:
    """What the rows run on: a tiny seeded CNN (3 -> 10 classes, 16 px), an input for it, a
    bundle around it, and a scratch folder. Built once; no row changes them."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch

    @cached_property
    def model(self) -> nn.Module:
        return seeded(TinyCNN(), dtype=torch.float32)

    @cached_property
    def x(self) -> torch.Tensor:
        return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    @cached_property
    def bundle(self) -> cv.ModelBundle:
        preprocess = cv.Preprocess(input_size=(16, 16), resize=16)
        labels = [f"thing {i}" for i in range(10)]
        return cv.ModelBundle(self.model, preprocess, labels, name="tiny")

    @cached_property
    def model_1000(self) -> nn.Module:
        """TinyCNN with 1000 logits, as an ImageNet classifier has."""
        model = TinyCNN()
        model.fc = nn.Linear(16, 1000)
        return seeded(model, dtype=torch.float32)

    @cached_property
    def maps(self) -> torch.Tensor:
        return cv.attribute(self.model, self.x, "saliency", target=0)

    def explorer(self, model: Any = None, **kwargs: Any) -> Any:
        """An Explorer on the tiny bundle (or ``model``) and a 16 px image."""
        kwargs.setdefault("image", torch.rand(3, 16, 16, generator=torch.Generator()))
        return cv.Explorer(self.bundle if model is None else model, **kwargs)

    def explorer_of_module(self, **kwargs: Any) -> Any:
        return self.explorer(self.model, preprocess=self.bundle.preprocess, **kwargs)


@dataclass(frozen=True)
class Row:
    id: str
    call: Callable[[Kit], object]
    error: type[BaseException]
    problem: str  # regex the message must match: what is wrong
    fix: str  # regex the message must match: what to do instead


def twice(call: Callable[[], object]) -> object:
    """Run ``call`` twice; the second call's outcome is the row's. An error on the first call
    must come back, the same, on the second (no cache may turn it into a result)."""
    try:
        first = call()
    except Exception as error:
        try:
            second = call()
        except Exception as again:
            assert type(again) is type(error) and str(again) == str(error), (error, again)
            raise
        return second
    return first


def meta_model() -> nn.Module:
    with torch.device("meta"):
        return TinyCNN()


def grey_png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` greyscale pixels (without carrying them)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


WEIGHTS_FILE = r"resnet18-[0-9a-f]+\.pth"


class Payload:
    """Runs code when unpickled: a cached weights file must never be able to do that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def load_with_cached_weights(kit: Kit, kind: str) -> object:
    """``load_model("resnet18", pretrained=True)`` with a bad file in a scratch torch cache."""
    import torchvision.models as tvm

    hub = kit.scratch / f"hub-{kind}"
    path = hub / "checkpoints" / tvm.get_model_weights("resnet18").DEFAULT.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = kit.scratch / "pickle-ran"
    if kind == "truncated":
        torch.save(kit.model.state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "architecture":
        torch.save(kit.model.state_dict(), path)
    elif kind == "pickle":
        torch.save({"conv1.weight": Payload(marker)}, path)
    elif kind == "not a dict":
        torch.save([torch.zeros(3)], path)
    # set_dir pins the hub folder for the process; put back exactly what was there (None:
    # follow $TORCH_HOME, as other tests rely on).
    before = torch.hub._hub_dir  # type: ignore[attr-defined]
    torch.hub.set_dir(str(hub))
    try:
        return cv.load_model("resnet18", pretrained=True)
    finally:
        torch.hub._hub_dir = before  # type: ignore[attr-defined]
        assert not marker.exists(), "loading the weights file ran code from its pickle"


def x_with(kit: Kit, value: float) -> torch.Tensor:
    x = kit.x.clone()
    x[0, 1, 3, 4] = value
    return x


def saliency_after_a_good_call(kit: Kit, x: torch.Tensor) -> object:
    """NaN input after a valid call has warmed the caches (fast stand-ins), then again."""
    cv.attribute(kit.model, kit.x, "integrated_gradients", target=1, steps=4)
    return twice(lambda: cv.attribute(kit.model, x, "integrated_gradients", target=1, steps=4))


def grey_explorer_1000(kit: Kit) -> object:
    return kit.explorer(kit.model_1000, preprocess=kit.bundle.preprocess, labels=["a", "b", "c"])


FINITE = r"finite"
NUMBER_FIX = r"finite number|must (lie|be)"

ROWS: list[Row] = [
    # --- attribute: the input --------------------------------------------------------------
    Row(
        "attribute: empty batch",
        lambda k: cv.attribute(k.model, torch.zeros(0, 3, 16, 16), "saliency"),
        ValueError,
        r"empty.*\(0, 3, 16, 16\)",
        r"at least one image",
    ),
    Row(
        "attribute: 1-channel input to a 3-channel model",
        lambda k: cv.attribute(k.model, k.x[:, :1], "saliency"),
        ValueError,
        r"1 channel.*conv1.*3",
        r"bundle\.preprocess|repeat",
    ),
    Row(
        "attribute: input (C, H, W) without batch dimension",
        lambda k: cv.attribute(k.model, k.x[0], "saliency"),
        ValueError,
        r"\(N, C, H, W\).*\(3, 16, 16\)",
        r"unsqueeze\(0\)",
    ),
    Row(
        "attribute: 5-d input",
        lambda k: cv.attribute(k.model, k.x[None], "saliency"),
        ValueError,
        r"\(N, C, H, W\).*\(1, 1, 3, 16, 16\)",
        r"bundle\.preprocess|\(N, C, H, W\)",
    ),
    Row(
        "attribute: integer (uint8) input",
        lambda k: cv.attribute(k.model, (k.x * 255).to(torch.uint8), "saliency"),
        ValueError,
        r"float.*uint8",
        r"bundle\.preprocess",
    ),
    Row(
        "attribute: a PIL image instead of a tensor",
        lambda k: cv.attribute(k.model, cv.sample_image("cat"), "saliency"),
        TypeError,
        r"tensor.*got Image",
        r"bundle\.preprocess",
    ),
    Row(
        "attribute: NaN in the input (first and second call)",
        lambda k: twice(lambda: cv.attribute(k.model, x_with(k, NAN), "saliency", target=1)),
        ValueError,
        r"NaN",
        r"finite|nan_to_num",
    ),
    Row(
        "attribute: NaN in the input after a valid call (fast path cached)",
        lambda k: saliency_after_a_good_call(k, x_with(k, NAN)),
        ValueError,
        r"NaN",
        r"finite|nan_to_num",
    ),
    Row(
        "attribute: infinity in the input",
        lambda k: cv.attribute(k.model, x_with(k, INF), "gradcam", target=1),
        ValueError,
        r"infinite",
        r"finite|nan_to_num",
    ),
    Row(
        "attribute: input on the meta device",
        lambda k: cv.attribute(k.model, k.x.to("meta"), "saliency"),
        ValueError,
        r"input.*meta device",
        r"CPU or a GPU|bundle\.preprocess",
    ),
    # --- attribute: the model --------------------------------------------------------------
    Row(
        "attribute: a string instead of a module",
        lambda k: cv.attribute("resnet50", k.x, "saliency"),  # type: ignore[arg-type]
        TypeError,
        r"nn\.Module.*got '.*' \(str\)",
        r"cv\.load_model",
    ),
    Row(
        "attribute: a lambda instead of a module",
        lambda k: cv.attribute(lambda t: t, k.x, "saliency"),  # type: ignore[arg-type]
        TypeError,
        r"nn\.Module.*got a function",
        r"cv\.load_model",
    ),
    Row(
        "attribute: model on the meta device",
        lambda k: cv.attribute(meta_model(), k.x, "saliency"),
        ValueError,
        r"model.*meta device",
        r"load_state_dict|to_empty",
    ),
    # --- attribute: method, layer, target ----------------------------------------------------
    Row(
        "attribute: unknown method",
        lambda k: cv.attribute(k.model, k.x, "gradcamm"),
        ValueError,
        r"unknown method 'gradcamm'",
        r"Did you mean gradcam",
    ),
    Row(
        "attribute: method not a string",
        lambda k: cv.attribute(k.model, k.x, 3),  # type: ignore[arg-type]
        TypeError,
        r"method.*got 3",
        r"saliency.*gradcam",
    ),
    Row(
        "attribute: unknown layer",
        lambda k: cv.attribute(k.model, k.x, "gradcam", layer="conv3"),
        ValueError,
        r"unknown layer 'conv3'",
        r"Did you mean 'conv1', 'conv2'|Valid layer names",
    ),
    Row(
        "attribute: layer given as a number",
        lambda k: cv.attribute(k.model, k.x, "gradcam", layer=2),  # type: ignore[arg-type]
        TypeError,
        r"layer.*got 2",
        r"name.*cv\.layers",
    ),
    Row(
        "attribute: a layer for a pixel method",
        lambda k: cv.attribute(k.model, k.x, "saliency", layer="conv2"),
        TypeError,
        r"saliency works on the input pixels",
        r"drop layer=|layer method",
    ),
    Row(
        "attribute: target='5' (a string)",
        lambda k: cv.attribute(k.model, k.x, "saliency", target="5"),  # type: ignore[arg-type]
        TypeError,
        r"target.*'5'",
        r"target=5|int",
    ),
    Row(
        "attribute: target=1.5",
        lambda k: cv.attribute(k.model, k.x, "saliency", target=1.5),  # type: ignore[arg-type]
        ValueError,
        r"target.*1\.5",
        r"class ind(ex|ices) \(int\)",
    ),
    Row(
        "attribute: target=True",
        lambda k: cv.attribute(k.model, k.x, "saliency", target=True),
        ValueError,
        r"target.*True",
        r"class ind(ex|ices) \(int\)",
    ),
    Row(
        "attribute: negative target",
        lambda k: cv.attribute(k.model, k.x, "saliency", target=-1),
        ValueError,
        r"target -1 is negative",
        r"start at 0",
    ),
    Row(
        "attribute: target out of range for the class count",
        lambda k: cv.attribute(k.model, k.x, "saliency", target=10),
        ValueError,
        r"target 10 is out of range",
        r"the model has 10 classes",
    ),
    Row(
        "attribute: target out of range, layer method",
        lambda k: cv.attribute(k.model, k.x, "gradcam", target=1000),
        ValueError,
        r"target 1000 is out of range",
        r"the model has 10 classes",
    ),
    Row(
        "attribute: one target per sample, wrong count",
        lambda k: cv.attribute(k.model, k.x.repeat(2, 1, 1, 1), "saliency", target=[1, 2, 3]),
        ValueError,
        r"3 targets for a batch of 2",
        r"one per sample or one for all",
    ),
    # --- attribute: options and method parameters -------------------------------------------
    Row(
        "attribute: on_step=5",
        lambda k: cv.attribute(k.model, k.x, "smoothgrad", on_step=5),  # type: ignore[arg-type]
        TypeError,
        r"on_step.*got 5",
        r"function|callable",
    ),
    Row(
        "attribute: fast='no'",
        lambda k: cv.attribute(k.model, k.x, "saliency", fast="no"),  # type: ignore[arg-type]
        TypeError,
        r"fast.*'no'",
        r"True or False",
    ),
    Row(
        "attribute: precision='float16'",
        lambda k: cv.attribute(k.model, k.x, "saliency", precision="float16"),  # type: ignore[arg-type]
        ValueError,
        r"precision.*'float16'",
        r"'float32' or 'bfloat16'",
    ),
    Row(
        "attribute: unknown method parameter",
        lambda k: cv.attribute(k.model, k.x, "smoothgrad", n_sample=4),
        TypeError,
        r"does not take \['n_sample'\]",
        r"parameters are \[.*'n_samples'",
    ),
    Row(
        "attribute: NaN noise_level",
        lambda k: cv.attribute(k.model, k.x, "smoothgrad", noise_level=NAN, n_samples=2),
        ValueError,
        r"noise_level.*nan",
        NUMBER_FIX,
    ),
    Row(
        "attribute: infinite noise_level",
        lambda k: cv.attribute(k.model, k.x, "smoothgrad", noise_level=INF, n_samples=2),
        ValueError,
        r"noise_level.*inf",
        NUMBER_FIX,
    ),
    Row(
        "attribute: noise_level out of range",
        lambda k: cv.attribute(k.model, k.x, "smoothgrad", noise_level=-0.5),
        ValueError,
        r"noise_level.*-0\.5",
        r"must lie in \[",
    ),
    Row(
        "attribute: n_samples=2.5",
        lambda k: cv.attribute(k.model, k.x, "smoothgrad", n_samples=2.5),
        TypeError,
        r"n_samples.*2\.5",
        r"must be an int",
    ),
    Row(
        "attribute: steps=0 (integrated gradients)",
        lambda k: cv.attribute(k.model, k.x, "integrated_gradients", steps=0),
        ValueError,
        r"steps.*got 0",
        r"must lie in \[1",
    ),
    Row(
        "attribute: NaN baseline (integrated gradients)",
        lambda k: cv.attribute(k.model, k.x, "integrated_gradients", baseline=NAN, steps=4),
        ValueError,
        r"baseline.*nan",
        NUMBER_FIX,
    ),
    Row(
        "attribute: NaN in a baseline tensor",
        lambda k: cv.attribute(
            k.model, k.x, "integrated_gradients", baseline=x_with(k, NAN), steps=4
        ),
        ValueError,
        r"baseline.*NaN",
        FINITE,
    ),
    Row(
        "attribute: baseline of the wrong shape",
        lambda k: cv.attribute(
            k.model, k.x, "integrated_gradients", baseline=torch.zeros(1, 3, 8, 8), steps=4
        ),
        ValueError,
        r"baseline.*\(1, 3, 8, 8\).*\(1, 3, 16, 16\)",
        r"a number|shaped like",
    ),
    Row(
        "attribute: NaN baseline (occlusion)",
        lambda k: cv.attribute(k.model, k.x, "occlusion", baseline=NAN, window=8, stride=8),
        ValueError,
        r"baseline.*nan",
        NUMBER_FIX,
    ),
    Row(
        "attribute: occlusion window larger than the image",
        lambda k: cv.attribute(k.model, k.x, "occlusion", window=32, stride=8),
        ValueError,
        r"window 32 is larger than the input \(16x16\)",
        r"smaller window",
    ),
    Row(
        "attribute: unknown choice (scorecam weights)",
        lambda k: cv.attribute(k.model, k.x, "scorecam", weights="softmax"),
        ValueError,
        r"weights.*'softmax'",
        r"one of \['class_softmax', 'channel_softmax'\]",
    ),
    Row(
        "attribute: a bool flag given as a string",
        lambda k: cv.attribute(k.model, k.x, "deconvnet", stride_correction="yes"),
        TypeError,
        r"stride_correction.*'yes'",
        r"True or False",
    ),
    # --- layers / activations / upsample -------------------------------------------------------
    Row(
        "layers: a string instead of a module",
        lambda k: cv.layers("resnet18", k.x),  # type: ignore[arg-type]
        TypeError,
        r"nn\.Module.*got '.*' \(str\)",
        r"cv\.load_model",
    ),
    Row(
        "layers: empty batch",
        lambda k: cv.layers(k.model, torch.zeros(0, 3, 16, 16)),
        ValueError,
        r"empty",
        r"at least one image",
    ),
    Row(
        "layers: NaN in the input",
        lambda k: twice(lambda: cv.layers(k.model, x_with(k, NAN))),
        ValueError,
        r"NaN",
        r"finite|nan_to_num",
    ),
    Row(
        "activations: unknown layer",
        lambda k: cv.activations(k.model, k.x, ["conv1", "relu3"]),
        ValueError,
        r"unknown layer 'relu3'",
        r"Did you mean 'relu1', 'relu2'|Valid layer names",
    ),
    Row(
        "activations: layer names given as numbers",
        lambda k: cv.activations(k.model, k.x, [0, 1]),  # type: ignore[list-item]
        TypeError,
        r"layer name.*got 0",
        r"cv\.layers",
    ),
    Row(
        "activations: 1-channel input",
        lambda k: cv.activations(k.model, k.x[:, :1], "conv1"),
        ValueError,
        r"1 channel",
        r"bundle\.preprocess|repeat",
    ),
    Row(
        "upsample: a (C, h, w) map",
        lambda k: cv.upsample(torch.zeros(1, 7, 7), 224),
        ValueError,
        r"\(N, C, h, w\).*\(1, 7, 7\)",
        r"unsqueeze\(0\)|\(N, C, h, w\)",
    ),
    Row(
        "upsample: size 0",
        lambda k: cv.upsample(torch.zeros(1, 1, 7, 7), 0),
        ValueError,
        r"size.*got 0",
        r">= 1",
    ),
    # --- load_model, weights files ---------------------------------------------------------------
    Row(
        "load_model: unknown name",
        lambda k: cv.load_model("resnet5"),
        ValueError,
        r"unknown model 'resnet5'",
        r"Did you mean.*resnet50",
    ),
    Row(
        "load_model: name not a string",
        lambda k: cv.load_model(50),  # type: ignore[arg-type]
        TypeError,
        r"model name.*got 50",
        r"efficientnet_lite0|torchvision",
    ),
    Row(
        "load_model: pretrained='yes'",
        lambda k: cv.load_model("resnet18", pretrained="yes"),  # type: ignore[arg-type]
        TypeError,
        r"pretrained.*'yes'",
        r"True or False",
    ),
    Row(
        "load_model: cached weights file truncated",
        lambda k: load_with_cached_weights(k, "truncated"),
        ValueError,
        WEIGHTS_FILE + r".*(truncated|damaged|cannot be read)",
        r"[Dd]elete.*copy|download",
    ),
    Row(
        "load_model: cached weights of another architecture",
        lambda k: load_with_cached_weights(k, "architecture"),
        ValueError,
        WEIGHTS_FILE + r".*(do not fit|another|different) (model|architecture)",
        r"[Dd]elete.*copy|download",
    ),
    Row(
        "load_model: cached weights file is a malicious pickle (never run)",
        lambda k: load_with_cached_weights(k, "pickle"),
        ValueError,
        WEIGHTS_FILE + r".*(code|objects)",
        r"[Dd]elete.*copy|download",
    ),
    Row(
        "load_model: cached weights file holds no state dict",
        lambda k: load_with_cached_weights(k, "not a dict"),
        ValueError,
        WEIGHTS_FILE + r".*state dict",
        r"[Dd]elete.*copy|download",
    ),
    # --- Preprocess and images ----------------------------------------------------------------------
    Row(
        "Preprocess: std=(0, 0, 0)",
        lambda k: cv.Preprocess(std=(0, 0, 0)),
        ValueError,
        r"std.*got \(0(\.0)?, 0(\.0)?, 0(\.0)?\)",
        r"positive",
    ),
    Row(
        "Preprocess: resize=-5",
        lambda k: cv.Preprocess(resize=-5),
        ValueError,
        r"resize.*got -5",
        r"int >= 1",
    ),
    Row(
        "Preprocess: input_size=(0, 224)",
        lambda k: cv.Preprocess(input_size=(0, 224)),
        ValueError,
        r"input_size.*\(0, 224\)",
        r"two positive ints|\(H, W\)",
    ),
    Row(
        "Preprocess: NaN in mean",
        lambda k: cv.Preprocess(mean=(0.5, NAN, 0.5)),
        ValueError,
        r"mean.*nan",
        FINITE,
    ),
    Row(
        "Preprocess: mean and std of different lengths",
        lambda k: cv.Preprocess(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2)),
        ValueError,
        r"mean has 3 values but std has 2",
        r"one of each per input channel",
    ),
    Row(
        "Preprocess: a tensor in 0..255",
        lambda k: cv.Preprocess()(torch.full((3, 8, 8), 200.0)),
        ValueError,
        r"span \[200, 200\]",
        r"Divide 0\.\.255 data by 255",
    ),
    Row(
        "image: a missing file",
        lambda k: cv.Preprocess()(k.scratch / "missing.png"),
        ValueError,
        r"not found: .*missing\.png",
        r"existing path",
    ),
    Row(
        "image: bytes that are not an image",
        lambda k: cv.Preprocess()(b"hello"),
        ValueError,
        r"not an image",
        r"PNG, JPEG",
    ),
    Row(
        "image: a 20000 x 20000 PNG (decompression bomb)",
        lambda k: cv.Preprocess()(grey_png_header(20000, 20000)),
        ValueError,
        r"400,000,000 pixels",
        r"smaller|downscale|MAX_IMAGE_PIXELS",
    ),
    Row(
        "image: NaN in a float array",
        lambda k: cv.Preprocess()(x_with(k, NAN)[0].clamp(0, 1).numpy()),
        ValueError,
        r"NaN",
        r"finite|\[0, 1\]",
    ),
    Row(
        "image: a list",
        lambda k: cv.Preprocess()([1, 2, 3]),  # type: ignore[arg-type]
        TypeError,
        r"cannot use a list as an image",
        r"a PIL image, a numpy array",
    ),
    Row(
        "sample_image: unknown name",
        lambda k: cv.sample_image("dog"),
        ValueError,
        r"unknown sample image 'dog'",
        r"choose one of \['cat'",
    ),
    Row(
        "predict: k=0",
        lambda k: k.bundle.predict(k.x, k=0),
        ValueError,
        r"k.*got 0",
        r"an int >= 1",
    ),
    # --- evaluation --------------------------------------------------------------------------------
    Row(
        "deletion_insertion: steps=0",
        lambda k: cv.deletion_insertion(k.model, k.x, k.maps, 0, steps=0),
        ValueError,
        r"steps.*got 0",
        r"int >= 1|positive",
    ),
    Row(
        "deletion_insertion: blur_sigma=0",
        lambda k: cv.deletion_insertion(k.model, k.x, k.maps, 0, blur_sigma=0),
        ValueError,
        r"blur_sigma.*got 0",
        r"> 0|positive",
    ),
    Row(
        "deletion_insertion: NaN baseline",
        lambda k: cv.deletion_insertion(k.model, k.x, k.maps, 0, baseline=NAN),
        ValueError,
        r"baseline.*nan",
        FINITE,
    ),
    Row(
        "deletion_insertion: batch_size=0",
        lambda k: cv.deletion_insertion(k.model, k.x, k.maps, 0, batch_size=0),
        ValueError,
        r"batch_size.*got 0",
        r"int >= 1|positive",
    ),
    Row(
        "deletion_insertion: maps for another batch size",
        lambda k: cv.deletion_insertion(k.model, k.x, k.maps.repeat(2, 1, 1, 1), 0),
        ValueError,
        r"2 maps for 1 input",
        r"one map per (sample|image)",
    ),
    Row(
        "deletion_insertion: NaN in the map",
        lambda k: cv.deletion_insertion(k.model, k.x, x_with(k, NAN), 0),
        ValueError,
        r"map.*NaN",
        FINITE,
    ),
    Row(
        "deletion_insertion: target='5'",
        lambda k: cv.deletion_insertion(k.model, k.x, k.maps, "5"),  # type: ignore[arg-type]
        TypeError,
        r"target.*'5'",
        r"target=5|int",
    ),
    Row(
        "randomization_check: unknown layer",
        lambda k: cv.randomization_check(k.model, k.x, "saliency", layers=["fc2"]),
        ValueError,
        r"unknown layer 'fc2'",
        r"choose among \['conv1'",
    ),
    # --- synthesis -------------------------------------------------------------------------------------
    Row(
        "visualize_feature: a string instead of a model",
        lambda k: cv.visualize_feature("resnet18", "layer4"),  # type: ignore[arg-type]
        TypeError,
        r"nn\.Module.*got str",
        r"cv\.load_model",
    ),
    Row(
        "visualize_feature: unknown layer",
        lambda k: cv.visualize_feature(k.bundle, "conv9", 0, steps=2),
        ValueError,
        r"unknown layer 'conv9'",
        r"Did you mean|Valid layer names",
    ),
    Row(
        "visualize_feature: steps=0",
        lambda k: cv.visualize_feature(k.bundle, "conv2", 0, steps=0),
        ValueError,
        r"steps.*got 0",
        r"positive int",
    ),
    Row(
        "visualize_feature: NaN lr",
        lambda k: cv.visualize_feature(k.bundle, "conv2", 0, steps=2, size=16, lr=NAN),
        ValueError,
        r"lr.*nan",
        NUMBER_FIX,
    ),
    Row(
        "visualize_feature: on_step=5",
        lambda k: cv.visualize_feature(k.bundle, "conv2", 0, steps=2, size=16, on_step=5),  # type: ignore[arg-type]
        TypeError,
        r"on_step.*got 5",
        r"function|callable",
    ),
    Row(
        "visualize_feature: channel out of range",
        lambda k: cv.visualize_feature(k.bundle, "conv2", 99, steps=2, size=16),
        ValueError,
        r"99",
        r"16 channels|0\.\.15",
    ),
    Row(
        "visualize_class: target='5'",
        lambda k: cv.visualize_class(k.bundle, "5", steps=2, size=16),  # type: ignore[arg-type]
        TypeError,
        r"target.*'5'",
        r"bundle\.labels\.index|class index \(int\)",
    ),
    Row(
        "caricature: strength=-1",
        lambda k: cv.caricature(k.bundle, k.x, "conv2", strength=-1, steps=2),
        ValueError,
        r"strength.*-1",
        r"> 0|positive",
    ),
    Row(
        "invert: NaN strength",
        lambda k: cv.invert(k.bundle, k.x, "conv2", strength=NAN, steps=(2, 1)),
        ValueError,
        r"strength.*nan",
        NUMBER_FIX,
    ),
    Row(
        "invert: NaN in the input",
        lambda k: twice(lambda: cv.invert(k.bundle, x_with(k, NAN), "conv2", steps=(2, 1))),
        ValueError,
        r"NaN",
        r"finite|nan_to_num",
    ),
    Row(
        "deep_dream: NaN step_size",
        lambda k: cv.deep_dream(k.bundle, k.x, "conv2", steps=2, octaves=1, step_size=NAN),
        ValueError,
        r"step_size.*nan",
        NUMBER_FIX,
    ),
    Row(
        "deep_dream: octave_scale=0",
        lambda k: cv.deep_dream(k.bundle, k.x, "conv2", steps=2, octave_scale=0),
        ValueError,
        r"octave_scale.*got 0",
        r"> 1|must (lie|be)",
    ),
    Row(
        "deep_dream: jitter=-1",
        lambda k: cv.deep_dream(k.bundle, k.x, "conv2", steps=2, octaves=1, jitter=-1),
        ValueError,
        r"jitter.*-1",
        r">= 0|must (lie|be)",
    ),
    Row(
        "adversarial: NaN step_size",
        lambda k: cv.adversarial(k.bundle, k.x, method="pgd", steps=2, step_size=NAN),
        ValueError,
        r"step_size.*nan",
        NUMBER_FIX,
    ),
    Row(
        "adversarial: NaN epsilon",
        lambda k: cv.adversarial(k.bundle, k.x, epsilon=NAN),
        ValueError,
        r"epsilon.*nan",
        r"must lie in \(0, 1\]",
    ),
    Row(
        "adversarial: unknown method",
        lambda k: cv.adversarial(k.bundle, k.x, method="cw"),  # type: ignore[arg-type]
        ValueError,
        r"method.*'cw'",
        r"'fgsm' or 'pgd'",
    ),
    Row(
        "adversarial: target out of range",
        lambda k: cv.adversarial(k.bundle, k.x, target=10),
        ValueError,
        r"class 10 is out of range",
        r"10 classes \(0\.\.9\)",
    ),
    Row(
        "fooling_image: confidence=1.5",
        lambda k: cv.fooling_image(k.bundle, 3, confidence=1.5, steps=2, size=16),
        ValueError,
        r"confidence.*1\.5",
        r"must lie in \(0, 1\)",
    ),
    Row(
        "fooling_image: NaN step_size",
        lambda k: cv.fooling_image(k.bundle, 3, steps=2, size=16, step_size=NAN),
        ValueError,
        r"step_size.*nan",
        NUMBER_FIX,
    ),
    Row(
        "style_transfer: NaN lr",
        lambda k: cv.style_transfer(k.bundle, k.x, k.x, steps=2, lr=NAN),
        ValueError,
        r"lr.*nan",
        NUMBER_FIX,
    ),
    Row(
        "style_transfer: negative style_weight",
        lambda k: cv.style_transfer(k.bundle, k.x, k.x, steps=2, style_weight=-1.0),
        ValueError,
        r"style_weight.*-1",
        r">= 0|must (lie|be)",
    ),
    # --- the widget ------------------------------------------------------------------------------------
    Row(
        "Explorer: a string instead of a model",
        lambda k: cv.Explorer("resnet18"),
        TypeError,
        r"got ('resnet18' \()?str",
        r"cv\.load_model",
    ),
    Row(
        "Explorer: labels='a string'",
        lambda k: k.explorer_of_module(labels="a string"),
        TypeError,
        r"labels.*str",
        r"list of class names",
    ),
    Row(
        "Explorer: 3 labels for a 1000-class model",
        grey_explorer_1000,
        ValueError,
        r"3 labels.*1000 classes",
        r"one label per class",
    ),
    Row(
        "Explorer: 3 labels for a 10-class module",
        lambda k: k.explorer_of_module(labels=["a", "b", "c"]),
        ValueError,
        r"3 labels.*10 classes",
        r"one label per class",
    ),
    Row(
        "Explorer: labels with a bundle (would be ignored)",
        lambda k: k.explorer(labels=[f"label {i}" for i in range(10)]),
        TypeError,
        r"a bundle brings its own preprocess and labels",
        r"dataclasses\.replace\(bundle, labels=\.\.\.\)",
    ),
    Row(
        "Explorer: preprocess with a bundle (would be ignored)",
        lambda k: k.explorer(preprocess=cv.Preprocess(input_size=(32, 32), resize=32)),
        TypeError,
        r"Explorer\(bundle, preprocess=\.\.\.\).*refused rather than ignored",
        r"dataclasses\.replace\(bundle, preprocess=\.\.\.\)|bundle\.module",
    ),
    Row(
        "Explorer: preprocess that is neither a Preprocess nor a function",
        lambda k: k.explorer(k.model, preprocess="imagenet"),
        TypeError,
        r"preprocess.*got str",
        r"cv\.Preprocess or a function",
    ),
    Row(
        "Explorer: opacity=5",
        lambda k: k.explorer(opacity=5),
        ValueError,
        r"opacity.*got 5",
        r"\[0, 1\]",
    ),
    Row(
        "Explorer: opacity=NaN",
        lambda k: k.explorer(opacity=NAN),
        ValueError,
        r"opacity.*got nan",
        r"\[0, 1\]",
    ),
    Row(
        "Explorer: method_params={'bogus': 1}",
        lambda k: k.explorer(method_params={"bogus": 1}),
        TypeError,
        r"does not take \['bogus'\]",
        r"parameters are",
    ),
    Row(
        "Explorer: method_params with a NaN value",
        lambda k: k.explorer(method="smoothgrad", method_params={"noise_level": NAN}),
        ValueError,
        r"noise_level.*nan",
        NUMBER_FIX,
    ),
    Row(
        "Explorer: unknown method",
        lambda k: k.explorer(method="gradcamm"),
        ValueError,
        r"unknown method 'gradcamm'",
        r"Did you mean gradcam",
    ),
    Row(
        "Explorer: unknown layer",
        lambda k: k.explorer(layer="conv9"),
        ValueError,
        r"unknown layer 'conv9'",
        r"Did you mean|Valid layer names",
    ),
    Row(
        "Explorer: an image file that does not exist",
        lambda k: k.explorer(image=k.scratch / "nothing.jpg"),
        ValueError,
        r"not found: .*nothing\.jpg",
        r"existing path",
    ),
    Row(
        "Explorer: a model on the meta device",
        lambda k: k.explorer(meta_model(), preprocess=k.bundle.preprocess),
        ValueError,
        r"model.*meta device",
        r"load_state_dict|to_empty",
    ),
    Row(
        "Explorer.compare: a single method",
        lambda k: k.explorer().compare(["gradcam"]),
        ValueError,
        r"2 to 6 maps.*gives 1",
        r"Pick 2-6 methods",
    ),
]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit(tmp_path_factory.mktemp("bad-input"))


def test_the_table_has_at_least_60_distinct_rows() -> None:
    assert len(ROWS) >= 60
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_is_refused_with_a_clear_message(row: Row, kit: Kit) -> None:
    with pytest.raises(row.error) as raised:
        row.call(kit)
    message = str(raised.value)
    assert type(raised.value) is row.error or row.error is Exception, message
    assert re.search(row.problem, message, re.IGNORECASE | re.DOTALL), (
        f"the message does not name the problem ({row.problem!r}): {message}"
    )
    assert re.search(row.fix, message, re.IGNORECASE | re.DOTALL), (
        f"the message does not name the fix ({row.fix!r}): {message}"
    )


def test_the_docs_list_every_row_with_its_error() -> None:
    table = (Path(__file__).resolve().parent.parent / "docs" / "bad_input.md").read_text()
    for row in ROWS:
        assert f"| {row.id} | `{row.error.__name__}` |" in table, row.id


def test_the_malicious_pickle_would_run_if_loaded_without_weights_only(kit: Kit) -> None:
    """The premise of the pickle row: the file really runs code when fully unpickled."""
    path, marker = kit.scratch / "payload.pth", kit.scratch / "ran-without-weights-only"
    torch.save({"conv1.weight": Payload(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


def test_what_the_messages_suggest_works_and_valid_edge_values_pass(kit: Kit) -> None:
    import dataclasses

    import numpy as np

    # The fix named for Explorer(bundle, preprocess=...): dataclasses.replace.
    preprocess = cv.Preprocess(input_size=(24, 24), resize=24)
    explorer = cv.Explorer(dataclasses.replace(kit.bundle, preprocess=preprocess), kit.x[0] * 0)
    assert explorer.session.input.shape == (1, 3, 24, 24)
    # Values at the edges of what is allowed still pass.
    assert kit.explorer(opacity=0).opacity == 0 and kit.explorer(opacity=1).opacity == 1
    assert kit.explorer_of_module(labels=[]).labels == []
    assert kit.explorer_of_module(labels=tuple(f"c{i}" for i in range(10))).labels[3] == "c3"
    grey = cv.attribute(kit.model, kit.x[:, :1].repeat(1, 3, 1, 1), "saliency", target=np.int64(2))
    assert bool(torch.isfinite(grey).all())
    per_channel = torch.zeros(3, 1, 1)
    ig = cv.attribute(
        kit.model, kit.x, "integrated_gradients", target=[1], baseline=per_channel, steps=4
    )
    assert ig.shape == kit.x.shape
    one_channel = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    assert cv.attribute(one_channel, torch.rand(1, 1, 16, 16), "saliency").shape == (1, 1, 16, 16)
    assert cv.Preprocess(input_size=(np.int64(8), 8), resize=np.int64(8)).resize == 8
    assert cv.upsample(torch.zeros(1, 1, 2, 2), (3, 5)).shape == (1, 1, 3, 5)


# --- census: what today's code does with each row (python tests/test_bad_input.py) ----------


def _nonfinite(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_nonfinite(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return any(_nonfinite(getattr(value, name)) for name in value.__dataclass_fields__)
    return False


def census(kit: Kit) -> dict[str, dict[str, str]]:
    """Each row as the code at hand handles it, by category: "clear" (the row passes), "raw"
    (an error that does not name the problem and the fix, or of another type),
    "meaningless" (a result without an error, computed from a NaN or degenerate) or
    "accepted" (the bad value went through); row id -> what came out."""
    outcome: dict[str, dict[str, str]] = {"clear": {}, "raw": {}, "meaningless": {}, "accepted": {}}
    for row in ROWS:
        try:
            result = row.call(kit)
        except Exception as error:
            message = str(error)
            ok = (
                type(error) is row.error
                and re.search(row.problem, message, re.I | re.S)
                and re.search(row.fix, message, re.I | re.S)
            )
            text = message.replace(str(kit.scratch), "<tmp>").replace("\n", " ")
            outcome["clear" if ok else "raw"][row.id] = f"{type(error).__name__}: {text}"
            continue
        degenerate = (
            _nonfinite(result)
            or re.search(r"NaN|infinit", row.id) is not None  # numbers computed from a NaN
            or row.id in MEANINGLESS_WITHOUT_NAN
        )
        outcome["meaningless" if degenerate else "accepted"][row.id] = f"returned {result!r:.60}"
    return outcome


MEANINGLESS_WITHOUT_NAN = {
    "deletion_insertion: steps=0",  # areas of 0 from a one-point curve
    "predict: k=0",  # an empty top-k
    "deletion_insertion: blur_sigma=0",  # a 0/0 blur kernel: NaN start images
}


def markdown(
    now: dict[str, dict[str, str]], before: dict[str, dict[str, str]] | None, label: str
) -> str:
    """docs/bad_input.md: one table row per case with its error type and message."""
    was = {row_id: kind for kind, rows in (before or {}).items() for row_id in rows}
    lines = [
        "# Bad input: every case and its message",
        "",
        "Generated by `python tests/test_bad_input.py --markdown docs/bad_input.md --before "
        'docs/bad_input_before.json --label "main at 4419ba7"` from the table in',
        "[tests/test_bad_input.py](../tests/test_bad_input.py), which asserts for every row the "
        "exception type and that the message names the problem and the fix. Checks shared by "
        "the functions live in `cnnvis_widget/checks.py`.",
        "",
    ]
    if before:
        counts = ", ".join(f"{len(rows)} {kind}" for kind, rows in before.items())
        lines += [
            f"Before the checks ({label}; its census, made there with `--json`), of "
            f"{sum(map(len, before.values()))} cases: {counts} "
            "(clear: the message named problem and fix; raw: an internal or unclear error; "
            "meaningless: a result without an error, computed from a NaN or degenerate; "
            "accepted: the invalid value went through). The *before* column says which.",
            "",
        ]
    lines += ["| Case | Error | Message |" + (" Before |" if before else ""), "|---|---|---|"]
    lines[-1] += "---|" if before else ""
    for row in ROWS:
        kind, text = next((k, rows[row.id]) for k, rows in now.items() if row.id in rows)
        error, _, message = text.partition(": ") if kind in ("clear", "raw") else ("-", "", text)
        if kind != "clear":
            message = f"**{kind}** {message}"
        cells = [row.id, f"`{error}`", message.replace("|", "\\|")]
        if before:
            cells.append(was.get(row.id, "new"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the census here")
    parser.add_argument("--markdown", help="write the table (docs/bad_input.md) here")
    parser.add_argument("--before", help="a census --json of earlier code, for the table")
    parser.add_argument("--label", default="earlier code", help="what --before was run on")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = census(Kit(Path(folder)))
    for kind, rows in result.items():
        print(f"\n{kind}: {len(rows)}")
        for row_id, text in rows.items():
            print(f"    {row_id}: {text[:160]}")
    print("\n" + ", ".join(f"{kind} {len(rows)}" for kind, rows in result.items()))
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(result, indent=1))
    if arguments.markdown:
        earlier = json.loads(Path(arguments.before).read_text()) if arguments.before else None
        Path(arguments.markdown).write_text(markdown(result, earlier, arguments.label))
