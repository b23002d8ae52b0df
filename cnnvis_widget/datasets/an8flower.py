"""an8Flower (Oramas, Wang & Tuytelaars, ICLR 2019): synthetic flowers whose class is the
colour of one part, with a mask of that part, for scoring visual explanations objectively.

The original images were rendered from a 3D flower model and are not redistributed here;
this is a 2D re-creation drawn with numpy / PIL, offline, deterministic from a seed (what
follows the paper and what is our choice: docs/an8flower.md).

A flower is a stem, two leaves, a ring of petals and a center disk, in front of a
two-colour gradient background. In the ``"single"`` variant (the paper's
an8Flower-single-6c) the class is the colour of one part (the center by default): red,
yellow, green, cyan, blue or magenta. In ``"double"`` (an8Flower-double-12c) it is the
ordered pair of colours of two parts (center and leaves by default) drawn from red,
yellow, green and blue, the two different: 12 classes. Every other part and the
background take colours drawn independently of the class, the same mix in every class,
and never a class colour (hues halfway between class hues, or greyish), while position,
scale, tilt and petal phase vary: only the discriminative part tells the class, and all
the class evidence of an image lies inside its mask.

Parts are drawn flat (one colour each, no anti-aliasing), so ``mask(i)`` (the pixels of
the discriminative part(s) that are visible) is exact. :func:`iou_curve`,
:func:`area_under_iou_curve` and :func:`pointing_game` score a heatmap against it.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from .files import transformed

__all__ = [
    "DOUBLE_COLOURS",
    "PARTS",
    "SINGLE_COLOURS",
    "OTHER_HUES",
    "An8Flower",
    "Flower",
    "an8flower",
    "area_under_iou_curve",
    "class_colours",
    "colour_name",
    "draw_flower",
    "iou_curve",
    "pointing_game",
]

# Part ids in the part map, in drawing order (later parts cover earlier ones).
PARTS = {"background": 0, "stem": 1, "leaves": 2, "petals": 3, "center": 4}

# Class colours: name -> hue in degrees. Drawn with a hue within HUE_JITTER of it.
SINGLE_COLOURS = {
    "red": 0.0,
    "yellow": 60.0,
    "green": 120.0,
    "cyan": 180.0,
    "blue": 240.0,
    "magenta": 300.0,
}
DOUBLE_COLOURS = {"red": 0.0, "yellow": 60.0, "green": 120.0, "blue": 240.0}
HUE_JITTER = 10.0  # degrees; neighbouring class hues are >= 60 apart
CLASS_SATURATION = (0.7, 1.0)
CLASS_VALUE = (0.7, 1.0)
# Hues of the other parts: halfway between neighbouring single-variant class hues, so at
# least 22 degrees from every class hue of either variant (``colour_name`` accepts 20).
OTHER_HUES = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
OTHER_JITTER = 8.0

DEFAULT_PARTS = {"single": ("center",), "double": ("center", "leaves")}
DEFAULT_IMAGES_PER_CLASS = {"train": 500, "test": 100}
_SPLIT_CODE = {"train": 1, "test": 2}
_VARIANT_CODE = {"single": 1, "double": 2}

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Flower:
    """Everything that decides one image: geometry in fractions of the image side, colours
    in RGB. ``colours`` maps each part but the background to its colour; ``background`` is
    the two ends of the gradient, along ``gradient_angle`` (degrees)."""

    x: float  # head center, fraction of the width
    y: float  # head center, fraction of the height
    radius: float  # petal length, fraction of the side
    tilt: float  # degrees the whole flower leans (0 = stem straight down)
    phase: float  # degrees the petal ring is turned
    petals: int
    colours: dict[str, RGB] = field(default_factory=dict)
    background: tuple[RGB, RGB] = ((0, 0, 0), (0, 0, 0))
    gradient_angle: float = 0.0

    def recoloured(self, **colours: RGB) -> Flower:
        """This flower with some parts' colours replaced (``center=(255, 0, 0)``)."""
        unknown = set(colours) - (set(PARTS) - {"background"})
        if unknown:
            raise ValueError(f"unknown part(s) {sorted(unknown)}; parts are {list(PARTS)[1:]}.")
        return replace(self, colours={**self.colours, **colours})


def _hsv_rgb(hue_deg: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def _class_colour(rng: np.random.Generator, hue: float) -> RGB:
    return _hsv_rgb(
        hue + rng.uniform(-HUE_JITTER, HUE_JITTER),
        rng.uniform(*CLASS_SATURATION),
        rng.uniform(*CLASS_VALUE),
    )


def _other_colour(rng: np.random.Generator) -> RGB:
    """A colour for a part that does not decide the class: the same mix in every class,
    and never a class colour (a hue between two class hues, or a greyish one), so the only
    class evidence in an image lies in the discriminative part(s)."""
    if rng.uniform() < 0.25:
        return _hsv_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.3, 1.0))
    hue = float(rng.choice(OTHER_HUES)) + rng.uniform(-OTHER_JITTER, OTHER_JITTER)
    return _hsv_rgb(hue, rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0))


def _background_colour(rng: np.random.Generator) -> RGB:
    """A greyish colour (saturation <= 0.3: never a class colour), any hue and brightness."""
    return _hsv_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.95))


def class_colours(variant: str) -> list[tuple[str, ...]]:
    """The colour names of each class, in label order: ``[("red",), ...]`` for ``"single"``,
    ``[("red", "yellow"), ...]`` (ordered pairs of different colours) for ``"double"``."""
    if variant == "single":
        return [(name,) for name in SINGLE_COLOURS]
    if variant == "double":
        return [(a, b) for a in DOUBLE_COLOURS for b in DOUBLE_COLOURS if a != b]
    raise ValueError(f"variant must be 'single' or 'double'; got {variant!r}.")


def colour_name(rgb: RGB, palette: dict[str, float]) -> str | None:
    """The palette colour an RGB colour is drawn as, or None when it is none of them (hue
    farther than 2 x HUE_JITTER from every palette hue, or too grey / dark)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    if s < CLASS_SATURATION[0] - 0.05 or v < CLASS_VALUE[0] - 0.05:
        return None
    hue = h * 360.0
    for name, centre in palette.items():
        if abs((hue - centre + 180.0) % 360.0 - 180.0) <= 2 * HUE_JITTER:
            return name
    return None


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ rot.T


def _ellipse(cx: float, cy: float, ax: float, ay: float, angle: float, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    pts = np.stack([ax * np.cos(t), ay * np.sin(t)], axis=1)
    return _rotate(pts, angle) + np.array([cx, cy])


def _shapes(flower: Flower) -> list[tuple[str, np.ndarray]]:
    """(part, polygon) in flower units (petal length 1, head at the origin, stem down +y),
    in drawing order."""
    shapes: list[tuple[str, np.ndarray]] = []
    w = 0.09  # half width of the stem
    shapes.append(("stem", np.array([[-w, 0.0], [w, 0.0], [w, 3.2], [-w, 3.2]])))
    for side, depth in ((-1, 1.25), (1, 1.85)):
        # a leaf leaning up and out from the stem, 40 degrees above the horizontal
        cx = side * 0.45 * math.cos(math.radians(40))
        cy = depth - 0.45 * math.sin(math.radians(40))
        shapes.append(("leaves", _ellipse(cx, cy, 0.5, 0.2, -side * 40.0)))
    for k in range(flower.petals):
        a = flower.phase + 360.0 * k / flower.petals
        c = _rotate(np.array([[0.55, 0.0]]), a)[0]
        shapes.append(("petals", _ellipse(c[0], c[1], 0.47, 0.2, a)))
    shapes.append(("center", _ellipse(0.0, 0.0, 0.3, 0.3, 0.0, n=36)))
    return shapes


def draw_flower(flower: Flower, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """The image ``(size, size, 3)`` uint8 and the part map ``(size, size)`` uint8 (ids of
    :data:`PARTS`; a pixel holds the part drawn last over it)."""
    side = float(size)
    parts = Image.new("L", (size, size), PARTS["background"])
    pen = ImageDraw.Draw(parts)
    origin = np.array([flower.x * side, flower.y * side])
    scale = flower.radius * side
    for part, polygon in _shapes(flower):
        pts = _rotate(polygon, flower.tilt) * scale + origin
        pen.polygon([(float(px), float(py)) for px, py in pts], fill=PARTS[part])
    part_map = np.asarray(parts, dtype=np.uint8).copy()

    # background: a linear gradient between two colours
    a = math.radians(flower.gradient_angle)
    coords = (np.arange(size) + 0.5) / side - 0.5
    t = coords[None, :] * math.cos(a) + coords[:, None] * math.sin(a)
    t = np.clip(t / math.sqrt(0.5) * 0.5 + 0.5, 0.0, 1.0)[..., None]
    start, end = (np.array(c, dtype=np.float64) for c in flower.background)
    image = np.rint(start * (1 - t) + end * t).astype(np.uint8)
    for part, pid in PARTS.items():
        if part != "background":
            image[part_map == pid] = flower.colours[part]
    return image, part_map


class An8Flower(Dataset[tuple[Any, Any]]):
    """an8Flower as a torch Dataset; items are ``(PIL image RGB size x size, label int)``.

    Attributes: ``classes`` (names such as ``"center red"`` or ``"center red, leaves
    blue"``), ``class_colours`` (colour names per class), ``targets`` (list of int),
    ``parts`` (the discriminative part(s)), ``variant``, ``split``, ``size``, ``seed``.
    ``flower(i)`` gives the drawing parameters of item ``i``, ``render(i)`` its image and
    part map (numpy), ``mask(i)`` the discriminative part(s) as an H x W bool array,
    ``part_masks(i)`` one mask per part. Items are drawn on demand (about a millisecond
    each), the same for the same ``(seed, split, variant, index)``.
    """

    def __init__(
        self,
        split: str = "train",
        variant: str = "single",
        images_per_class: int | None = None,
        size: int = 112,
        seed: int = 0,
        *,
        parts: Sequence[str] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        if split not in _SPLIT_CODE:
            raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
        self.class_colours = class_colours(variant)  # checks the variant
        parts = tuple(DEFAULT_PARTS[variant] if parts is None else parts)
        if len(parts) != len(DEFAULT_PARTS[variant]) or len(set(parts)) != len(parts):
            raise ValueError(
                f"the {variant!r} variant takes {len(DEFAULT_PARTS[variant])} different part(s); "
                f"got {parts!r}."
            )
        for part in parts:
            if part not in PARTS or part == "background":
                raise ValueError(f"unknown part {part!r}; parts are {list(PARTS)[1:]}.")
        if images_per_class is None:
            images_per_class = DEFAULT_IMAGES_PER_CLASS[split]
        if not isinstance(images_per_class, int) or images_per_class < 1:
            raise ValueError(f"images_per_class must be an int >= 1; got {images_per_class!r}.")
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"size must be an int >= 16 pixels; got {size!r}.")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0; got {seed!r}.")
        self.split, self.variant, self.parts = split, variant, parts
        self.size, self.seed = size, seed
        self.palette = SINGLE_COLOURS if variant == "single" else DOUBLE_COLOURS
        self.classes = [
            ", ".join(f"{part} {name}" for part, name in zip(parts, names, strict=True))
            for names in self.class_colours
        ]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.images_per_class = images_per_class
        self.targets = [i % len(self.classes) for i in range(images_per_class * len(self.classes))]
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} images.")
        return index % len(self)

    def flower(self, index: int) -> Flower:
        """The drawing parameters of item ``index`` (its own random stream: seed, split,
        variant and index)."""
        index = self._check_index(index)
        rng = np.random.default_rng(
            [self.seed, _SPLIT_CODE[self.split], _VARIANT_CODE[self.variant], index]
        )
        label = self.targets[index]
        colours = {part: _other_colour(rng) for part in PARTS if part != "background"}
        for part, name in zip(self.parts, self.class_colours[label], strict=True):
            colours[part] = _class_colour(rng, self.palette[name])
        background = (_background_colour(rng), _background_colour(rng))
        return Flower(
            x=float(rng.uniform(0.35, 0.65)),
            y=float(rng.uniform(0.3, 0.42)),
            radius=float(rng.uniform(0.17, 0.23)),
            tilt=float(rng.uniform(-25, 25)),
            phase=float(rng.uniform(0, 360)),
            petals=8,
            colours=colours,
            background=background,
            gradient_angle=float(rng.uniform(0, 360)),
        )

    def class_of(self, flower: Flower) -> int | None:
        """The class a flower's colours make (from its discriminative part(s) only), or None
        when a discriminative part has no class colour."""
        names = tuple(colour_name(flower.colours[part], self.palette) for part in self.parts)
        try:
            return self.class_colours.index(names)  # type: ignore[arg-type]
        except ValueError:
            return None

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` as (image ``(H, W, 3)`` uint8, part map ``(H, W)`` uint8)."""
        return draw_flower(self.flower(index), self.size)

    def part_masks(self, index: int) -> dict[str, np.ndarray]:
        """One ``(H, W)`` bool mask per part (visible pixels), background included."""
        _, part_map = self.render(index)
        return {part: part_map == pid for part, pid in PARTS.items()}

    def mask(self, index: int) -> np.ndarray:
        """The ground truth of item ``index``: ``(H, W)`` bool, True on the visible pixels
        of the discriminative part(s) (the union of both in ``"double"``)."""
        _, part_map = self.render(index)
        return np.isin(part_map, [PARTS[part] for part in self.parts])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = self._check_index(index)
        image, _ = self.render(index)
        return transformed(self, Image.fromarray(image, "RGB"), self.targets[index])

    def __repr__(self) -> str:
        return (
            f"An8Flower(split={self.split!r}, variant={self.variant!r}, {len(self)} images, "
            f"{len(self.classes)} classes, size={self.size}, seed={self.seed})"
        )


def an8flower(
    split: str = "train",
    variant: str = "single",
    images_per_class: int | None = None,
    size: int = 112,
    seed: int = 0,
    *,
    parts: Sequence[str] | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
    target_transform: Callable[[int], Any] | None = None,
) -> An8Flower:
    """an8Flower's ``"train"`` (500 images a class by default) or ``"test"`` (100) split.

    ``variant="single"``: 6 classes, the colour of the center; ``"double"``: 12 classes, the
    colours of center and leaves (``parts=`` picks other parts: stem, leaves, petals,
    center). Items are ``(PIL image RGB size x size, label)``; ``.mask(i)`` is the
    discriminative part(s) as an H x W bool array. Train and test come from separate
    random streams of the same ``seed``.
    """
    return An8Flower(
        split,
        variant,
        images_per_class,
        size,
        seed,
        parts=parts,
        transform=transform,
        target_transform=target_transform,
    )


# --- scoring a heatmap against the mask -------------------------------------------------

DEFAULT_THRESHOLDS = tuple(i / 20 for i in range(1, 20))  # 0.05, 0.10, ..., 0.95


def _heatmap(heatmap: Any, shape: tuple[int, int]) -> torch.Tensor:
    """A heatmap (H', W') / (1, H', W') / (C, H', W'), numpy or torch, as float (H, W):
    channels summed, resized bilinearly to the mask, min-max scaled to [0, 1]."""
    h = torch.as_tensor(np.asarray(heatmap) if not isinstance(heatmap, torch.Tensor) else heatmap)
    h = h.detach().float().cpu()
    while h.ndim > 3 and h.shape[0] == 1:
        h = h[0]
    if h.ndim == 3:
        h = h.sum(0)
    if h.ndim != 2:
        raise ValueError(f"a heatmap must be (H, W) or (C, H, W); got shape {tuple(h.shape)}.")
    if tuple(h.shape) != shape:
        h = F.interpolate(h[None, None], size=shape, mode="bilinear", align_corners=False)[0, 0]
    low, high = float(h.min()), float(h.max())
    return (h - low) / (high - low) if high > low else torch.zeros_like(h)


def iou_curve(
    heatmap: Any, mask: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> np.ndarray:
    """IoU of ``heatmap >= t`` with the mask, for each threshold ``t`` of the heatmap scaled
    to [0, 1] (min-max, after resizing to the mask's size)."""
    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    h = _heatmap(heatmap, (int(m.shape[0]), int(m.shape[1])))
    out = []
    for t in thresholds:
        on = h >= t
        union = int((on | m).sum())
        out.append(int((on & m).sum()) / union if union else 0.0)
    return np.array(out)


def area_under_iou_curve(
    heatmap: Any, mask: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> float:
    """The mean of :func:`iou_curve` over evenly spaced thresholds: the normalized area
    under the IoU-vs-threshold curve (1 = the heatmap is the mask at every threshold)."""
    return float(iou_curve(heatmap, mask, thresholds).mean())


def pointing_game(heatmap: Any, mask: Any, tolerance: int = 0) -> bool:
    """True when the heatmap's maximum (resized to the mask) falls on the mask, or within
    ``tolerance`` pixels of it (Zhang et al. 2016 use 15 at 224 px)."""
    m = np.asarray(mask, dtype=bool)
    h = _heatmap(heatmap, m.shape).numpy()
    y, x = np.unravel_index(int(np.argmax(h)), h.shape)
    y0, y1 = max(0, y - tolerance), y + tolerance + 1
    x0, x1 = max(0, x - tolerance), x + tolerance + 1
    return bool(m[y0:y1, x0:x1].any())
