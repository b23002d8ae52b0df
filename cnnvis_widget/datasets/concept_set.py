"""``cv.datasets.concepts()``: an offline concept data set for Network Dissection, built from
real imagery with pixel masks exact by construction (docs/concepts.md).

Three categories, global label indices as in :mod:`.concept_format`:

- ``color``: every pixel of every image is named with one of the 11 basic colour terms by
  its nearest CIELab prototype (:mod:`.concept_colors`). Every image is annotated for colour.
- ``object``: a real photo cut-out (Debian ``tuxpaint-stamps-default``, read through
  :func:`.photo_sources.photos`) pasted at a random place and scale, maybe mirrored, onto a
  random crop of a real background photo; its mask is where the pasted alpha is > 0.5.
  Concepts: :data:`OBJECT_CONCEPTS`, each with >= :data:`MIN_CUTOUTS` distinct cut-outs.
- ``texture``: a real GIMP pattern (Debian ``gimp-data``) or a procedural stripe, checker or
  dot texture (:mod:`.concept_textures`) tiled into a random region (rectangle, ellipse,
  polygon or half-plane) of a background photo crop; the region is the mask. Also whole-image
  textures, labelled for the whole image (``ConceptLabels.whole``).

Images are ``size`` x ``size`` RGB (224 by default: the EfficientNet-Lite0 input), label maps
``mask_size`` x ``mask_size`` (112: Broden's), the exact full-size masks downsampled by
nearest neighbour (pixel ``(i + 0.5) * size / mask_size``, floored). Everything is drawn from
``seed``; the set is built once and cached (PNG images, compressed npz label maps, a
``manifest.json``), so later calls only read the manifest and items load lazily.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from ..checks import check_callback, check_flag, check_int
from .concept_colors import COLOR_TERMS, name_colors
from .concept_format import ConceptLabels, ConceptTable, concept_table
from .concept_textures import (
    GIMP_PACKAGE,
    GIMP_PATTERNS_DIR,
    GIMP_TEXTURES,
    PROCEDURAL_TEXTURES,
    pattern_rgb,
    procedural_params,
    procedural_texture,
    read_gimp_pattern,
    tile,
)
from .photo_sources import STAMPS_DIR, Photos, photos

VERSION = "1"
CATEGORIES = ("color", "object", "texture")
DEFAULT_SIZE = 224
DEFAULT_MASK_SIZE = 112
DEFAULT_PER_CONCEPT = 50
DEFAULT_WHOLE_PER_CONCEPT = 10
MIN_CUTOUTS = 3  # distinct cut-outs an object concept needs to be kept

# object concept -> stamp folders (every kept stamp under it) or files, relative to STAMPS_DIR;
# a file entry wins over a folder entry, a longer folder over a shorter one.
OBJECT_CONCEPTS: dict[str, tuple[str, ...]] = {
    "bird": ("animals/birds",),
    "flower": ("plants/flowers",),
    "bovid": ("animals/mammals/bovines",),
    "fruit": ("food/fruit", "plants/trees/rambutan.png"),
    "vegetable": ("food/vegetables", "food/spices", "plants/eggplant.png"),
    "tool": ("household/tools",),
    "musical instrument": ("hobbies/music",),
    "rodent": ("animals/mammals/rodents",),
    "rabbit": (
        "animals/mammals/rodents/rabbit.png",
        "animals/mammals/rodents/rabbit-2.png",
        "animals/mammals/rabbit_little.png",
    ),
    "insect": ("animals/insects",),
    "pig": (
        "animals/mammals/pig.png",
        "animals/mammals/pig_golden.png",
        "animals/mammals/pig_golden2.png",
        "animals/mammals/wildboar.png",
    ),
    "big cat": ("animals/mammals/cats",),
    "deer": ("animals/mammals/deer",),
    "equine": ("animals/mammals/equines",),
    "marine mammal": ("animals/mammals/aquatic",),
    "primate": ("animals/mammals/apes",),
    "canine": ("animals/mammals/dogs",),
    "marsupial": ("animals/marsupials",),
    "bear": ("animals/mammals/bears",),
    "tree": ("plants/trees",),
    "mushroom": ("plants/mushrooms",),
    "nut": ("food/nuts",),
    "ball": (
        "sports/australian_rules_football.png",
        "sports/cricketball.png",
        "sports/tennis_ball.png",
    ),
    "car": ("vehicles/auto", "vehicles/race"),
    "truck": (
        "vehicles/auto/truck.png",
        "vehicles/garbagetruck.png",
        "vehicles/emergency/firetruck.png",
        "vehicles/construction/dumper.png",
    ),
    "armoured vehicle": (
        "military/vehicles/bradley.png",
        "military/vehicles/infantry-stryker.png",
        "military/vehicles/ww2_german_gun.png",
    ),
    "aircraft": (
        "vehicles/flight/planes/747.png",
        "military/vehicles/f22_raptor.png",
        "vehicles/flight/balloon360.png",
    ),
}
# stamps in a listed folder that are not the folder's concept
OBJECT_LEFT_OUT = frozenset(
    {
        "animals/insects/Brown_slug.png",
        "animals/insects/Woodlouse.png",
        "household/tools/cementmixer.png",
        "plants/trees/pinecone.png",
    }
)
TEXTURE_CONCEPTS: tuple[str, ...] = (*GIMP_TEXTURES, *PROCEDURAL_TEXTURES)

# background photos (photos() names) that show none of the object concepts: object images are
# annotated for "object", so an unlabelled flower or animal in the background would be wrong
OBJECT_BACKGROUNDS = frozenset(
    {
        "aero1",
        "aero3",
        "aloeL",
        "building",
        "home",
        "Blinds",
        "Dune",
        "GreenMeadow",
        "RainDrops",
        "Storm",
        "coffee",
    }
)
BACKGROUND_SOURCES = ("opencv", "mate", "skimage")
CROP_FRACTION = (0.35, 1.0)  # a background crop's side, of the photo's shorter side
OBJECT_FRACTION = (0.35, 0.8)  # a cut-out's longer side, of the image side
MAX_UPSCALE = 2.0  # a cut-out is never enlarged more than this
TEXTURE_SCALES = (1.0, 1.5, 2.0)  # a GIMP swatch's scale (at 224 px; proportional otherwise)


# ----------------------------------------------------------------------------- sources


def object_cutouts() -> dict[str, list[str]]:
    """Object concept -> its cut-outs (stamp files relative to :data:`STAMPS_DIR`, sorted): the
    stamps :func:`photos` keeps, by :data:`OBJECT_CONCEPTS`; only concepts with at least
    :data:`MIN_CUTOUTS` of them."""
    stamps = photos(sources=["tuxpaint"])
    found: dict[str, list[str]] = {name: [] for name in OBJECT_CONCEPTS}
    for path in stamps.paths:
        relative = path.relative_to(STAMPS_DIR).as_posix()
        concept = _object_concept(relative)
        if concept is not None and relative not in OBJECT_LEFT_OUT:
            found[concept].append(relative)
    return {name: sorted(files) for name, files in found.items() if len(files) >= MIN_CUTOUTS}


def _object_concept(relative: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, entries in OBJECT_CONCEPTS.items():
        for entry in entries:
            if entry == relative:
                return name
            if relative.startswith(entry + "/") and (best is None or len(entry) > best[0]):
                best = (len(entry), name)
    return best[1] if best else None


def _check_gimp() -> None:
    if not GIMP_PATTERNS_DIR.is_dir():
        raise FileNotFoundError(
            f"concepts(): GIMP's patterns are not installed ({GIMP_PATTERNS_DIR} missing). "
            f"Install them with `sudo apt-get install {GIMP_PACKAGE}` (or `make data` in the "
            "cnnvis-widget repository)."
        )


@cache
def _backgrounds(size: int) -> dict[str, Image.Image]:
    """Background photos by name, RGB, shrunk so that the shorter side is at most
    size / CROP_FRACTION[0] (a crop then never needs more pixels than that)."""
    data: Photos = photos(sources=BACKGROUND_SOURCES)
    limit = int(np.ceil(size / CROP_FRACTION[0]))
    out = {}
    for index, name in enumerate(data.names):
        image = data.load(index)[0]
        short = min(image.size)
        if short > limit:
            factor = limit / short
            new = (round(image.width * factor), round(image.height * factor))
            image = image.resize(new, Image.Resampling.LANCZOS)
        out[name] = image
    return out


@lru_cache(maxsize=256)
def _stamp(relative: str) -> Image.Image:
    with Image.open(STAMPS_DIR / relative) as image:
        return image.convert("RGBA")


@lru_cache(maxsize=64)
def _swatch(relative: str) -> np.ndarray:
    return pattern_rgb(read_gimp_pattern(GIMP_PATTERNS_DIR / relative)[1])


# ----------------------------------------------------------------------------- plan


def plan(
    per_concept: int = DEFAULT_PER_CONCEPT,
    whole_per_concept: int = DEFAULT_WHOLE_PER_CONCEPT,
    seed: int = 0,
) -> tuple[ConceptTable, list[dict[str, Any]]]:
    """The concept table and every image's recipe (a JSON-serialisable dict), without drawing.

    Per object concept ``per_concept`` images (its cut-outs in turn, shuffled); per texture
    concept ``per_concept`` region images and ``whole_per_concept`` whole-image ones (its
    swatches in turn). Geometry is stored as fractions, so a recipe draws at any size.
    """
    _check_gimp()
    cutouts = object_cutouts()
    table = concept_table(
        {"color": COLOR_TERMS, "object": tuple(cutouts), "texture": TEXTURE_CONCEPTS}
    )
    rng = np.random.default_rng(seed)
    object_backgrounds = sorted(OBJECT_BACKGROUNDS)
    all_backgrounds = sorted(_background_names())
    missing = sorted(set(object_backgrounds) - set(all_backgrounds))
    if missing:
        raise FileNotFoundError(f"concepts(): background photos {missing} are missing.")
    specs: list[dict[str, Any]] = []
    for concept, files in cutouts.items():
        order = rng.permutation(len(files))
        for j in range(per_concept):
            specs.append(
                {
                    "kind": "object",
                    "concept": concept,
                    "cutout": files[int(order[j % len(files)])],
                    "flip": bool(rng.random() < 0.5),
                    "scale": float(rng.uniform(*OBJECT_FRACTION)),
                    "place": [float(rng.random()), float(rng.random())],
                    **_background_spec(rng, object_backgrounds),
                }
            )
    for concept in TEXTURE_CONCEPTS:
        swatches = GIMP_TEXTURES.get(concept, ())
        for j in range(per_concept + whole_per_concept):
            spec: dict[str, Any] = {"kind": "texture", "concept": concept}
            spec["texture"] = _texture_spec(rng, concept, swatches, j)
            if j < per_concept:
                spec.update(_background_spec(rng, all_backgrounds))
                spec["region"] = _region_spec(rng)
            else:
                spec["kind"] = "whole texture"
            specs.append(spec)
    return table, specs


def _background_names() -> list[str]:
    return list(photos(sources=BACKGROUND_SOURCES).names)


def _background_spec(rng: np.random.Generator, names: list[str]) -> dict[str, Any]:
    return {
        "background": names[int(rng.integers(len(names)))],
        "crop": [float(rng.uniform(*CROP_FRACTION)), float(rng.random()), float(rng.random())],
    }


def _texture_spec(
    rng: np.random.Generator, concept: str, swatches: tuple[str, ...], j: int
) -> dict[str, Any]:
    if swatches:
        return {
            "swatch": swatches[j % len(swatches)],
            "scale": float(TEXTURE_SCALES[int(rng.integers(len(TEXTURE_SCALES)))]),
            "offset": [float(rng.random()), float(rng.random())],
        }
    return {"procedural": concept, **procedural_params(rng)}


def _region_spec(rng: np.random.Generator) -> dict[str, Any]:
    shape = ("rectangle", "ellipse", "polygon", "half-plane")[int(rng.integers(4))]
    if shape in ("rectangle", "ellipse"):
        width, height = rng.uniform(0.4, 0.85, size=2)
        x0, y0 = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
        return {
            "shape": shape,
            "box": [float(x0), float(y0), float(x0 + width), float(y0 + height)],
        }
    if shape == "polygon":
        count = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=count))
        radii = rng.uniform(0.25, 0.5, size=count)
        centre = rng.uniform(0.35, 0.65, size=2)
        points = centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return {"shape": shape, "points": np.clip(points, 0, 1).round(6).tolist()}
    return {
        "shape": shape,
        "point": rng.uniform(0.3, 0.7, size=2).round(6).tolist(),
        "angle": float(rng.uniform(0, 360)),
    }


# ----------------------------------------------------------------------------- drawing


def render(spec: dict[str, Any], size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw one recipe: the image (size, size, 3) uint8 and its concept's exact mask
    (size, size) bool, or None for a whole-image texture (the whole image is the texture)."""
    if spec["kind"] == "whole texture":
        return _texture(spec["texture"], size), None
    image = _background(spec, size)
    if spec["kind"] == "object":
        return _paste_cutout(image, spec, size)
    mask = _region_mask(spec["region"], size)
    return np.where(mask[..., None], _texture(spec["texture"], size), image), mask


def _background(spec: dict[str, Any], size: int) -> np.ndarray:
    photo = _backgrounds(size)[spec["background"]]
    fraction, fx, fy = spec["crop"]
    side = fraction * min(photo.size)
    x0, y0 = fx * (photo.width - side), fy * (photo.height - side)
    box = (x0, y0, x0 + side, y0 + side)
    return np.asarray(photo.resize((size, size), Image.Resampling.BICUBIC, box=box))


def cutout_geometry(spec: dict[str, Any], size: int) -> tuple[int, int, int, int]:
    """Where an object recipe pastes its cut-out: (x, y, width, height) px."""
    stamp = _stamp(spec["cutout"])
    longer = max(stamp.size)
    factor = min(spec["scale"] * size, MAX_UPSCALE * longer) / longer
    width = max(1, round(stamp.width * factor))
    height = max(1, round(stamp.height * factor))
    x = round(spec["place"][0] * (size - width))
    y = round(spec["place"][1] * (size - height))
    return x, y, width, height


def _paste_cutout(
    image: np.ndarray, spec: dict[str, Any], size: int
) -> tuple[np.ndarray, np.ndarray]:
    x, y, width, height = cutout_geometry(spec, size)
    stamp = _stamp(spec["cutout"])
    if spec["flip"]:
        stamp = stamp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # premultiplied alpha, so transparent pixels' colours do not bleed into the edge
    resized = np.asarray(stamp.convert("RGBa").resize((width, height), Image.Resampling.LANCZOS))
    alpha = resized[..., 3:].astype(np.float64) / 255.0
    out = image.copy()
    under = out[y : y + height, x : x + width].astype(np.float64)
    blended = resized[..., :3].astype(np.float64) + under * (1.0 - alpha)
    out[y : y + height, x : x + width] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), dtype=bool)
    mask[y : y + height, x : x + width] = resized[..., 3] > 127  # alpha > 0.5
    return out, mask


def _texture(spec: dict[str, Any], size: int) -> np.ndarray:
    if "swatch" in spec:
        swatch = _swatch(spec["swatch"])
        scale = spec["scale"] * size / DEFAULT_SIZE
        h, w = swatch.shape[:2]
        offset = (int(spec["offset"][0] * h * scale), int(spec["offset"][1] * w * scale))
        return tile(swatch, (size, size), offset, scale)
    return procedural_texture(
        spec["procedural"],
        (size, size),
        period=spec["period"] * size / DEFAULT_SIZE,
        angle=spec["angle"],
        phase=(spec["phase"][0], spec["phase"][1]),
        colors=spec["colors"],
    )


def _region_mask(spec: dict[str, Any], size: int) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    shape = spec["shape"]
    if shape in ("rectangle", "ellipse"):
        box = [round(v * (size - 1)) for v in spec["box"]]
        (draw.rectangle if shape == "rectangle" else draw.ellipse)(box, fill=255)
        return np.asarray(canvas) > 0
    if shape == "polygon":
        draw.polygon([(px * (size - 1), py * (size - 1)) for px, py in spec["points"]], fill=255)
        return np.asarray(canvas) > 0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    theta = np.deg2rad(spec["angle"])
    px, py = spec["point"]
    return (xs - px) * np.cos(theta) + (ys - py) * np.sin(theta) > 0


def downsample(label_map: np.ndarray, mask_size: int) -> np.ndarray:
    """Nearest-neighbour downsampling of a square (S, S, ...) map to (mask_size, mask_size,
    ...): output pixel i takes input pixel floor((i + 0.5) * S / mask_size)."""
    side = label_map.shape[0]
    index = np.floor((np.arange(mask_size) + 0.5) * side / mask_size).astype(np.int64)
    return label_map[index[:, None], index[None, :]]


def labels_for(
    spec: dict[str, Any],
    image: np.ndarray,
    mask: np.ndarray | None,
    table: ConceptTable,
    mask_size: int,
) -> ConceptLabels:
    """One image's labels: its colour map, and its concept's map (or whole-image label)."""
    colour_index = np.array([table.index_of(term, "color") for term in COLOR_TERMS], dtype=np.int32)
    # naming the pixels that nearest-neighbour downsampling keeps = downsampling the full map
    colours = colour_index[name_colors(downsample(image, mask_size))]
    labels = ConceptLabels(pixels={"color": [colours]})
    category = "object" if spec["kind"] == "object" else "texture"
    index = table.index_of(spec["concept"], category)
    if mask is None:
        labels.whole[category] = [index]
    else:
        labels.pixels[category] = [np.where(downsample(mask, mask_size), index, 0).astype(np.int32)]
    return labels


# ----------------------------------------------------------------------------- data set


class ConceptSet(Dataset[tuple[Any, ConceptLabels]]):
    """The built concept set (see :func:`concepts`): item ``i`` is ``(PIL image RGB of size x
    size, ConceptLabels)``, read lazily from ``root``; ``concepts`` is its ConceptTable.

    ``specs[i]`` is image i's recipe (:func:`render` redraws it), ``kinds[i]`` its kind
    ("object", "texture", "whole texture").
    """

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        *,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.root = root
        self.size = int(manifest["size"])
        self.mask_size = int(manifest["mask_size"])
        self.seed = int(manifest["seed"])
        names = {c: [n for n, cat in manifest["concepts"] if cat == c] for c in CATEGORIES}
        self.concepts = concept_table(names)
        self.items: list[dict[str, Any]] = manifest["items"]
        self.specs = [item["spec"] for item in self.items]
        self.kinds = [spec["kind"] for spec in self.specs]
        self._pixel_counts = np.asarray(manifest["pixel_counts"], dtype=np.int64)
        self._image_counts = np.asarray(manifest["image_counts"], dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def image(self, index: int) -> Image.Image:
        """Image ``index``: PIL RGB, size x size."""
        with Image.open(self.root / self.items[index]["image"]) as image:
            return image.convert("RGB")

    def labels(self, index: int) -> ConceptLabels:
        """Image ``index``'s labels: label maps (mask_size, mask_size) int32 of global indices."""
        item = self.items[index]
        with np.load(self.root / item["labels"]) as stored:
            pixels = {name: [stored[name].astype(np.int32)] for name in stored.files}
        whole = {name: list(values) for name, values in item["whole"].items()}
        return ConceptLabels(pixels=pixels, whole=whole)

    def __getitem__(self, index: int) -> tuple[Any, ConceptLabels]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} images.")
        index %= len(self)
        image: Any = self.image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels(index)

    def pixel_counts(self) -> np.ndarray:
        """(L,) int64: each label index's positive pixels over the set, at mask resolution
        (a whole-image label counts mask_size**2); index 0 counts unlabelled pixels of the
        object and texture maps. IoU is unreliable for concepts with few pixels."""
        return self._pixel_counts.copy()

    def image_counts(self) -> np.ndarray:
        """(L,) int64: how many images hold each label index (0: unused, 0)."""
        return self._image_counts.copy()

    def summary(self) -> list[dict[str, Any]]:
        """One row per concept: index, name, category, images, pixels."""
        return [
            {
                "index": c.index,
                "name": c.name,
                "category": c.category,
                "images": int(self._image_counts[c.index]),
                "pixels": int(self._pixel_counts[c.index]),
            }
            for c in self.concepts.concepts
        ]

    def __repr__(self) -> str:
        return (
            f"ConceptSet({len(self)} images {self.size}x{self.size}, "
            f"{self.concepts.size - 1} concepts, masks {self.mask_size}x{self.mask_size}, "
            f"{self.root})"
        )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cnnvis_widget/concepts`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnvis_widget" / "concepts"


def concepts(
    *,
    per_concept: int = DEFAULT_PER_CONCEPT,
    whole_per_concept: int = DEFAULT_WHOLE_PER_CONCEPT,
    size: int = DEFAULT_SIZE,
    mask_size: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
    transform: Callable[[Image.Image], Any] | None = None,
) -> ConceptSet:
    """The offline concept set (built on first use, then read from the cache).

    ``per_concept`` images per object concept and texture-region images per texture concept,
    plus ``whole_per_concept`` whole-image textures per texture concept; images ``size`` x
    ``size`` (224), label maps ``mask_size`` x ``mask_size`` (default size // 2: 112). Drawn
    from ``seed``. Cached under ``cache_dir`` (default :func:`default_cache_dir`) in
    ``<VERSION>/seed<seed>-n<per_concept>-w<whole>-<size>px-m<mask_size>/``; ``rebuild=True``
    draws it again. ``transform`` is applied to each item's image. Needs Debian's
    tuxpaint-stamps-default, opencv-doc, mate-backgrounds and gimp-data (``make data``).
    """
    per = check_int("per_concept", per_concept, low=1)
    whole = check_int("whole_per_concept", whole_per_concept, low=0)
    side = check_int("size", size, low=32)
    masks = side // 2 if mask_size is None else check_int("mask_size", mask_size, low=1)
    if masks > side:
        raise ValueError(f"mask_size ({masks}) must be at most size ({side}).")
    check_int("seed", seed, low=0)
    check_flag("rebuild", rebuild)
    check_flag("progress", progress)
    check_callback("transform", transform)
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    folder = root / VERSION / f"seed{int(seed)}-n{per}-w{whole}-{side}px-m{masks}"
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file() and not rebuild:
        manifest = json.loads(manifest_path.read_text())
        return ConceptSet(folder, manifest, transform=transform)
    manifest = _build(folder, per, whole, side, masks, int(seed), progress)
    return ConceptSet(folder, manifest, transform=transform)


def _build(
    folder: Path, per: int, whole: int, size: int, mask_size: int, seed: int, progress: bool
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    table, specs = plan(per, whole, seed)
    staging = folder.with_name(f"{folder.name}.building-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "images").mkdir(parents=True)
    (staging / "labels").mkdir()
    pixel_counts = np.zeros(table.size, dtype=np.int64)
    image_counts = np.zeros(table.size, dtype=np.int64)
    items = []
    for number, spec in enumerate(tqdm(specs, desc="concepts", unit="img", disable=not progress)):
        image, mask = render(spec, size)
        labels = labels_for(spec, image, mask, table, mask_size)
        name = f"{number:05d}"
        Image.fromarray(image).save(staging / "images" / f"{name}.png", compress_level=1)
        maps16: dict[str, Any] = {c: m[0].astype(np.uint16) for c, m in labels.pixels.items()}
        np.savez_compressed(staging / "labels" / f"{name}.npz", **maps16)
        present = np.zeros(table.size, dtype=bool)
        for maps in labels.pixels.values():
            counts = np.bincount(maps[0].ravel(), minlength=table.size)
            pixel_counts += counts
            present |= counts > 0
        for indices in labels.whole.values():
            pixel_counts[indices] += mask_size * mask_size
            present[indices] = True
        present[0] = False
        image_counts += present
        items.append(
            {
                "image": f"images/{name}.png",
                "labels": f"labels/{name}.npz",
                "whole": labels.whole,
                "spec": spec,
            }
        )
    manifest = {
        "version": VERSION,
        "seed": seed,
        "size": size,
        "mask_size": mask_size,
        "per_concept": per,
        "whole_per_concept": whole,
        "concepts": [[c.name, c.category] for c in table.concepts],
        "pixel_counts": pixel_counts.tolist(),
        "image_counts": image_counts.tolist(),
        "items": items,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    return manifest
