"""Real labelled photos for ImageNet models, all offline: :func:`photos`.

Four sources (licences in docs/data.md); ``make data`` installs the Debian ones:

- ``tuxpaint``: Debian ``tuxpaint-stamps-default``, ``/usr/share/tuxpaint/stamps``: photo
  cut-outs with alpha masks (animals, fruit and vegetables, flowers, tools, instruments,
  vehicles). Labelled by folder (:data:`STAMP_CLASSES`, the longest matching folder prefix).
  Left out, by rule: folders named ``cartoon``, ``toys`` or ``plastic``, the folders not in
  :data:`STAMP_CLASSES` (letters, symbols, flags, seasonal clip-art, planets, clothes: mostly
  drawings), stamps under 64 px on their longer side (too small to show anything once
  upscaled), and, by looking at every stamp of the 2022.06.04 package,
  :data:`STAMP_EXCLUDED` (drawings, 3-D renders, paintings and mirrored duplicates).
- ``opencv``: Debian ``opencv-doc``, ``/usr/share/doc/opencv-doc/examples/data``: the colour
  photos of :data:`OPENCV_PHOTOS` (not its calibration, text or synthetic images).
- ``mate``: Debian ``mate-backgrounds``, ``/usr/share/backgrounds/mate/nature``: the photos of
  :data:`MATE_PHOTOS`, each whole (1280 x 1024 to 2560 x 1600 px).
- ``skimage``: scikit-image's colour photos (:data:`SKIMAGE_PHOTOS`), a dependency already.

Cut-outs are composited on white and padded with white to a square (object centred), so an
ImageNet centre crop keeps all of it; ``dataset.mask(i)`` is their alpha mask on the same
square canvas (PIL "L", 255 = object), None for the other photos.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from .files import ImageFiles

STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
MATE_DIR = Path("/usr/share/backgrounds/mate/nature")

SOURCES = ("tuxpaint", "opencv", "mate", "skimage")
DEBIAN_PACKAGES = {
    "tuxpaint": "tuxpaint-stamps-default",
    "opencv": "opencv-doc",
    "mate": "mate-backgrounds",
}

MIN_STAMP_SIZE = 64  # px, longer side

# stamp folder (relative to STAMPS_DIR) -> class; the longest matching prefix wins
STAMP_CLASSES = {
    "animals/amphibians": "animal/amphibian or reptile",
    "animals/lizards": "animal/amphibian or reptile",
    "animals/birds": "animal/bird",
    "animals/fish": "animal/sea life",
    "animals/shellfish": "animal/sea life",
    "animals/insects": "animal/invertebrate",
    "animals/mammals": "animal/mammal",
    "animals/marsupials": "animal/mammal",
    "food/fruit": "food/fruit",
    "food/nuts": "food/nut",
    "food/vegetables": "food/vegetable",
    "food/spices": "food/vegetable",
    "plants": "plant/other",
    "plants/flowers": "plant/flower",
    "plants/trees": "plant/tree",
    "plants/mushrooms": "fungus/mushroom",
    "hobbies": "object/other",
    "hobbies/music": "object/musical instrument",
    "household": "object/other",
    "household/tools": "object/tool",
    "household/arttools": "object/tool",
    "medical": "object/other",
    "sports": "object/sports equipment",
    "vehicles": "vehicle/land",
    "vehicles/flight": "vehicle/air",
    "vehicles/ship": "vehicle/water",
    "military/vehicles": "vehicle/land",
}
STAMP_OVERRIDES = {
    "plants/trees/rambutan.png": "food/fruit",
    "military/vehicles/f22_raptor.png": "vehicle/air",
}
STAMP_EXCLUDED_FOLDERS = ("cartoon", "toys", "plastic")
STAMP_EXCLUDED = frozenset(
    {
        # drawings and paintings
        "animals/fish/bluegroper.png",
        "animals/fish/butterflyfish.png",
        "animals/fish/clownfish.png",
        "animals/fish/coraltrout.png",
        "animals/fish/dolphinfish.png",
        "animals/fish/moonwrasse.png",
        "animals/fish/stripedfish.png",
        "animals/fish/shrimp.png",
        "animals/insects/bee.png",
        "animals/insects/fly.png",
        "animals/mammals/aquatic/whale.png",
        "animals/mammals/echidna.png",
        "animals/mammals/hedgehog.png",
        "household/arttools/highlighter.png",
        "plants/trees/holly_leaves.png",
        "medical/tooth.png",
        "vehicles/7spoke256.png",
        "vehicles/ship/chineseJunk.png",
        "vehicles/emergency/sedan_police.png",
        "vehicles/emergency/sedan_police_mirror.png",
        # 3-D renders
        "household/dishes/glass.png",
        "household/dishes/mug.png",
        "household/rubberduck.png",
        "sports/basketball.png",
        "sports/football.png",
        "sports/soccer.png",
        "sports/rugby_goal_posts.png",
        "vehicles/auto/sedan.png",
        # mirrored duplicates of another stamp
        "military/vehicles/bradley_mirror.png",
        "household/tools/measuring_tape_mirror.png",
        "vehicles/construction/dumper_mirror.png",
    }
)

OPENCV_PHOTOS = {
    "aero1.jpg": "scene/landscape",
    "aero3.jpg": "scene/landscape",
    "aloeL.jpg": "plant/other",
    "apple.jpg": "food/fruit",
    "baboon.jpg": "animal/mammal",
    "building.jpg": "scene/building",
    "butterfly.jpg": "animal/invertebrate",
    "chicky_512.png": "animal/mammal",
    "fruits.jpg": "food/fruit",
    "home.jpg": "scene/building",
    "leuvenA.jpg": "scene/building",
    "messi5.jpg": "person",
    "orange.jpg": "food/fruit",
    "squirrel_cls.jpg": "animal/mammal",
}

MATE_PHOTOS = {
    "Blinds.jpg": "plant/other",
    "Dune.jpg": "scene/landscape",
    "FreshFlower.jpg": "plant/flower",
    "Garden.jpg": "plant/flower",
    "GreenMeadow.jpg": "plant/other",
    "LadyBird.jpg": "animal/invertebrate",
    "RainDrops.jpg": "plant/other",
    "Storm.jpg": "scene/landscape",
    "TwoWings.jpg": "plant/flower",
    "YellowFlower.jpg": "plant/flower",
}

SKIMAGE_PHOTOS = {
    "chelsea.png": "animal/mammal",
    "coffee.png": "food/drink",
    "astronaut.png": "person",
    "rocket.jpg": "vehicle/air",
}


class Photos(ImageFiles):
    """Labelled photos; items are ``(PIL image RGB, label int)`` (see :func:`photos`).

    Besides ``paths``, ``targets``, ``classes`` and ``mask(i)``: ``names`` (each photo's own
    name, e.g. "tiger_sumatran"), ``sources`` (its source: "tuxpaint", "opencv", "mate",
    "skimage") and ``has_mask`` (True for the cut-outs).
    """

    def __init__(
        self,
        items: list[tuple[Path, str, str]],
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        classes = sorted({label for _, label, _ in items})
        index = {name: i for i, name in enumerate(classes)}
        super().__init__(
            [path for path, _, _ in items],
            [index[label] for _, label, _ in items],
            classes,
            transform=transform,
            target_transform=target_transform,
        )
        self.names = [path.stem for path, _, _ in items]
        self.sources = [source for _, _, source in items]
        self.has_mask = [source == "tuxpaint" for source in self.sources]

    def load(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        image, mask = super().load(index)
        if mask is None:
            return image, None
        return _pad_square(image, (255, 255, 255)), _pad_square(mask, 0)


def _pad_square(image: Image.Image, fill: Any) -> Image.Image:
    width, height = image.size
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _stamp_class(relative: str) -> str | None:
    if relative in STAMP_OVERRIDES:
        return STAMP_OVERRIDES[relative]
    folder = relative.rsplit("/", 1)[0] if "/" in relative else ""
    prefixes = [p for p in STAMP_CLASSES if folder == p or folder.startswith(p + "/")]
    return STAMP_CLASSES[max(prefixes, key=len)] if prefixes else None


def _stamps() -> list[tuple[Path, str, str]]:
    items = []
    for path in sorted(STAMPS_DIR.rglob("*.png")):
        relative = path.relative_to(STAMPS_DIR).as_posix()
        if relative in STAMP_EXCLUDED or any(
            part in STAMP_EXCLUDED_FOLDERS for part in relative.split("/")[:-1]
        ):
            continue
        label = _stamp_class(relative)
        if label is None:
            continue
        with Image.open(path) as image:
            if max(image.size) < MIN_STAMP_SIZE:
                continue
        items.append((path, label, "tuxpaint"))
    return items


def _listed(folder: Path, photos: dict[str, str], source: str) -> list[tuple[Path, str, str]]:
    items = [(folder / name, label, source) for name, label in photos.items()]
    missing = [str(path) for path, _, _ in items if not path.is_file()]
    if missing:
        reinstall = (
            f"sudo apt-get install --reinstall {DEBIAN_PACKAGES[source]}"
            if source in DEBIAN_PACKAGES
            else "pip install --force-reinstall scikit-image"
        )
        raise FileNotFoundError(
            f"photos(): {len(missing)} file(s) of source {source!r} are missing: "
            f"{', '.join(missing[:3])}. Reinstall them (`{reinstall}`) or leave the source "
            "out: photos(sources=[...])."
        )
    return items


def _skimage_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def photos(
    sources: Iterable[str] = SOURCES,
    *,
    transform: Callable[[Image.Image], Any] | None = None,
    target_transform: Callable[[int], Any] | None = None,
) -> Photos:
    """Real labelled photos (273 with every source on Debian 12), items ``(PIL image RGB, label)``.

    ``classes`` are coarse "kind/sub-kind" labels such as "animal/bird", "food/fruit",
    "object/tool", "vehicle/air" (sorted); ``names`` give each photo's own name. ``sources``
    picks among "tuxpaint", "opencv", "mate", "skimage" (default: all). A Debian source not
    installed raises FileNotFoundError naming the package to install (``make data`` installs
    them all). Order: sources in the given order, files sorted within each.
    """
    chosen = [sources] if isinstance(sources, str) else list(sources)
    unknown = [s for s in chosen if s not in SOURCES]
    if unknown or not chosen:
        problem = f"unknown photo sources {unknown}" if unknown else "no photo source given"
        raise ValueError(f"{problem}; choose among {list(SOURCES)}.")
    folders = {"tuxpaint": STAMPS_DIR, "opencv": OPENCV_DIR, "mate": MATE_DIR}
    absent = [s for s in chosen if s in folders and not folders[s].is_dir()]
    if absent:
        packages = " ".join(DEBIAN_PACKAGES[s] for s in absent)
        raise FileNotFoundError(
            f"photos(): the photos of {', '.join(absent)} are not installed "
            f"({', '.join(str(folders[s]) for s in absent)} missing). Install them with "
            f"`sudo apt-get install {packages}` (or `make data` in the cnnvis-widget "
            f"repository), or leave them out: photos(sources={[s for s in chosen if s not in absent]})."
        )
    items: list[tuple[Path, str, str]] = []
    for source in dict.fromkeys(chosen):
        if source == "tuxpaint":
            items += _stamps()
        elif source == "opencv":
            items += _listed(OPENCV_DIR, OPENCV_PHOTOS, source)
        elif source == "mate":
            items += _listed(MATE_DIR, MATE_PHOTOS, source)
        else:
            items += _listed(_skimage_dir(), SKIMAGE_PHOTOS, source)
    return Photos(items, transform=transform, target_transform=target_transform)
