"""Your own segmentation data as a concept data set: ``cv.datasets.label_folder(path, concepts)``.

A folder of images with a parallel folder of label-map PNGs (PASCAL VOC, ADE20K, your own)::

    path/images/2007_000032.jpg        path/labels/2007_000032.png
    path/images/street/a.jpg           path/labels/street/a.png

A label map pairs with the image of the same relative path and stem. Its pixel values are
class ids: ``concepts[v]`` names value ``v``; value 0 is always "no label" (VOC's
"background", ADE's "other"), so ``concepts[0]`` only names it and is not a concept.
``encoding`` says how a PNG holds the ids:

- ``"index"`` (default): a palette ("P", VOC's ``SegmentationClass``: the palette indices
  are the ids) or greyscale ("L", "I;16", "I": ADE20K SceneParsing's ``annotations``) PNG.
- ``"ade"``: ADE20K's full-data ``*_seg.png``: id = ``R // 10 * 256 + G``.
- ``"rgb16"``: Broden's ``R + 256 * G``.

Values in ``ignore`` (default for ``"index"``: 255, VOC's void border) read as 0. Items are
``(PIL image RGB, ConceptLabels)`` (:mod:`.concept_format`); label indices are the ids.
Every concept is in one category (``category="object"``) or in the category a mapping
``{name: category}`` gives. Image-level labels (``image_labels``: a dict image -> names or
ids, or a CSV) are whole-image labels. A label map annotates its image for every category
in ``map_categories`` (default: every category but those of the image-level labels), split
into one map per category; image-level labels annotate their image for their categories.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .concept_format import Concept, ConceptLabels, ConceptTable
from .files import IMAGE_EXTENSIONS, open_rgb

Encoding = Literal["index", "ade", "rgb16"]
ENCODINGS: tuple[str, ...] = ("index", "ade", "rgb16")
_INDEX_MODES = ("P", "L", "I", "I;16", "I;16L", "I;16B", "I;16N")


def decode_label_map(image: Image.Image, encoding: Encoding, path: Path) -> np.ndarray:
    """A label PNG -> (H, W) int64 class ids, by ``encoding`` (see the module docstring)."""
    if encoding == "index":
        if image.mode not in _INDEX_MODES:
            raise ValueError(
                f"label map {path} is a {image.mode} image, not class indices (a palette or "
                "greyscale PNG). For ADE20K's coloured *_seg.png pass encoding='ade'; for "
                "Broden-style R + 256 * G pass encoding='rgb16'."
            )
        return np.asarray(image).astype(np.int64)
    if encoding not in ("ade", "rgb16"):
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}; got {encoding!r}.")
    rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    if encoding == "ade":
        return rgb[..., 0] // 10 * 256 + rgb[..., 1]
    return rgb[..., 0] + 256 * rgb[..., 1]


def _files_under(folder: Path, extensions: Sequence[str]) -> list[Path]:
    """Files under folder (recursive) with one of the extensions, sorted; hidden ones left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def resize_nearest(label_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) -> size (h, w) by nearest neighbour: output pixel (i, j) takes input pixel
    (floor((i + 0.5) * H / h), floor((j + 0.5) * W / w)), the one under its centre."""
    height, width = label_map.shape
    if (height, width) == size:
        return label_map
    rows = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64)
    cols = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64)
    return label_map[np.minimum(rows, height - 1)[:, None], np.minimum(cols, width - 1)[None, :]]


class LabelFolder(Dataset[tuple[Any, ConceptLabels]]):
    """Images with label maps and/or image-level labels; items ``(PIL image RGB,
    ConceptLabels)``.

    Attributes: ``paths`` (image files), ``label_paths`` (each image's label PNG or None),
    ``whole`` (each image's image-level label indices), ``concepts`` (:class:`ConceptTable`),
    ``map_categories`` (the categories a label map annotates), ``unlabelled`` (images found
    with neither, left out), ``encoding``, ``ignore``, ``mask_size`` ((h, w) or None: the
    maps' own size). ``labels(i)`` reads item i's labels without decoding its image.
    """

    def __init__(
        self,
        paths: list[Path],
        label_paths: list[Path | None],
        whole: list[list[int]],
        concepts: ConceptTable,
        *,
        map_categories: tuple[str, ...],
        encoding: Encoding = "index",
        ignore: Sequence[int] = (255,),
        mask_size: tuple[int, int] | None = None,
        unlabelled: Sequence[Path] = (),
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.paths = paths
        self.label_paths = label_paths
        self.whole = whole
        self.concepts = concepts
        self.map_categories = map_categories
        self.encoding = encoding
        self.ignore = tuple(int(v) for v in ignore)
        self.mask_size = mask_size
        self.unlabelled = list(unlabelled)
        self.transform = transform
        self._category_of = concepts.category_of()

    def __len__(self) -> int:
        return len(self.paths)

    def label_map(self, index: int) -> np.ndarray | None:
        """Item index's label map, (h, w) int32 label indices (``mask_size`` when set), or
        None when it has only image-level labels."""
        path = self.label_paths[index]
        if path is None:
            return None
        try:
            with Image.open(path) as png:
                ids = decode_label_map(png, self.encoding, path)
            with Image.open(self.paths[index]) as image:
                image_width, image_height = image.size
        except OSError as error:
            raise ValueError(f"cannot read {path} or its image: {error}") from error
        height, width = ids.shape
        if abs(width - image_width * height / image_height) > 1:
            raise ValueError(
                f"label map {path} is {height} x {width} pixels but its image "
                f"{self.paths[index]} is {image_height} x {image_width}: not the same shape. "
                "Check the pairing of images and label maps."
            )
        if self.ignore:
            ids[np.isin(ids, self.ignore)] = 0
        bad = (ids < 0) | (ids >= self.concepts.size)
        if bad.any():
            values = np.unique(ids[bad])[:5].tolist()
            raise ValueError(
                f"label map {path} holds class id(s) {values}, beyond the {self.concepts.size} "
                "names given (concepts[0] names 0, no label). Name every id, or pass "
                "ignore=[...] for ids to read as no label."
            )
        if self.mask_size is not None:
            ids = resize_nearest(ids, self.mask_size)
        return ids.astype(np.int32)

    def labels(self, index: int) -> ConceptLabels:
        """Item index's concept labels: its label map split by category (one map per category
        of ``map_categories``), its image-level labels by category."""
        out = ConceptLabels()
        label_map = self.label_map(index)
        if label_map is not None:
            category_of = self._category_of[label_map]
            present = set(np.unique(category_of[label_map != 0]).tolist())
            for number in sorted(present):
                category = self.concepts.categories[number]
                if category not in self.map_categories:
                    found = np.unique(label_map[category_of == number])[:3].tolist()
                    names = [self.concepts[v].name for v in found]
                    raise ValueError(
                        f"label map {self.label_paths[index]} holds {names} of category "
                        f"{category!r}, which label maps do not annotate (map_categories="
                        f"{list(self.map_categories)}); add it to map_categories."
                    )
            for category in self.map_categories:
                number = self.concepts.categories.index(category)
                out.pixels[category] = [np.where(category_of == number, label_map, 0)]
        for label in self.whole[index]:
            out.whole.setdefault(self.concepts[label].category, []).append(label)
        return out

    def __getitem__(self, index: int) -> tuple[Any, ConceptLabels]:
        image = open_rgb(self.paths[index])[0]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels(index)

    def __repr__(self) -> str:
        return (
            f"LabelFolder({len(self)} images, {self.concepts.size - 1} concepts in "
            f"{', '.join(self.concepts.categories)})"
        )


def _table(concepts: Sequence[str], category: str | Mapping[str, str]) -> ConceptTable:
    if isinstance(concepts, str) or len(concepts) < 2:
        raise ValueError(
            "concepts must list the names of class ids 0, 1, 2, ... (0: no label, e.g. "
            "'background'), at least two; got " + repr(concepts)[:80] + "."
        )
    names = [str(name) for name in concepts]
    if isinstance(category, str):
        categories_of = {name: category for name in names[1:]}
    else:
        missing = [name for name in names[1:] if name not in category]
        if missing:
            raise ValueError(
                f"category mapping has no category for {missing[:5]}; give every concept "
                "(concepts[1:]) one."
            )
        categories_of = {name: category[name] for name in names[1:]}
    seen: set[tuple[str, str]] = set()
    for name in names[1:]:
        key = (name, categories_of[name])
        if key in seen:
            raise ValueError(f"concept {name!r} is named twice in {key[1]!r}; names must differ.")
        seen.add(key)
    ordered = tuple(dict.fromkeys(categories_of[name] for name in names[1:]))
    return ConceptTable(
        tuple(Concept(i, name, categories_of[name]) for i, name in enumerate(names) if i > 0),
        ordered,
    )


def _read_image_labels(path: Path) -> dict[str, list[str]]:
    """A CSV ``image,labels`` (header), labels ``;``-separated names or ids."""
    if not path.is_file():
        raise FileNotFoundError(f"image-label file {path} does not exist.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        if "image" not in fields or "labels" not in fields:
            raise ValueError(
                f"{path} must have the columns 'image' and 'labels' (labels ';'-separated); "
                f"its columns: {fields}."
            )
        return {
            row["image"]: [s.strip() for s in (row["labels"] or "").split(";") if s.strip()]
            for row in reader
        }


def _label_index(value: str | int, table: ConceptTable, image: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"image {image!r}: labels must be names or class ids; got {value!r}.")
    if isinstance(value, str) and not value.isdigit():
        try:
            return table.index_of(value)
        except KeyError:
            raise ValueError(
                f"image {image!r} has image-level label {value!r}, which is not one of the "
                "concepts given."
            ) from None
    index = int(value)
    if not 1 <= index < table.size:
        raise ValueError(
            f"image {image!r} has image-level label id {index}, out of range 1..{table.size - 1}."
        )
    return index


def label_folder(
    path: str | Path,
    concepts: Sequence[str],
    *,
    category: str | Mapping[str, str] = "object",
    images: str = "images",
    labels: str = "labels",
    encoding: Encoding = "index",
    ignore: Sequence[int] | None = None,
    image_labels: Mapping[str, Sequence[str | int]] | str | Path | None = None,
    map_categories: Sequence[str] | None = None,
    mask_size: int | tuple[int, int] | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
) -> LabelFolder:
    """Images under ``path/images`` with label maps under ``path/labels`` as a concept data set.

    ``concepts``: the names of class ids 0, 1, 2, ... (``concepts[0]`` names id 0, "no
    label"). ``category``: one category for all (default ``"object"``) or ``{name:
    category}``. ``images`` / ``labels``: the two folders' names under ``path`` (VOC:
    ``"JPEGImages"``, ``"SegmentationClass"``; ADE20K SceneParsing: ``"images"``,
    ``"annotations"``). A label map is ``labels/<image's relative path>.png``.
    ``encoding``: ``"index"``, ``"ade"`` or ``"rgb16"`` (module docstring). ``ignore``: ids
    read as 0 (default: 255, VOC's void, for ``"index"``; none for the others). ``image_labels``: ``{image: [name or id, ...]}`` or
    a CSV with columns ``image,labels`` (``;``-separated); an image is its path relative to
    ``images`` (``"street/a.jpg"``) or that without extension (``"street/a"``).
    ``map_categories``: the categories a label map annotates (default: all but those of
    the image-level labels). ``mask_size``: (h, w) (an int: square) label maps are resized
    to, nearest neighbour; default their own size.

    Images with neither a label map nor image-level labels are left out (listed in
    ``.unlabelled``: VOC's JPEGImages holds many). Errors name the file: a missing folder,
    a label map without its image, two images with one stem, an unknown label name.
    """
    root = Path(path).expanduser()
    image_dir, label_dir = root / images, root / labels
    for folder, what in ((image_dir, "images"), (label_dir, "labels")):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} is not a folder; label_folder reads {root}/{images} (images) and "
                f"{root}/{labels} (label-map PNGs): pass {what}= to name yours."
            )
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}; got {encoding!r}.")
    table = _table(concepts, category)
    if ignore is None:
        ignore = (255,) if encoding == "index" else ()

    found = _files_under(image_dir, IMAGE_EXTENSIONS)
    by_stem: dict[str, Path] = {}
    for image in found:
        stem = image.relative_to(image_dir).with_suffix("").as_posix()
        if stem in by_stem:
            raise ValueError(
                f"images {by_stem[stem]} and {image} share the name {stem!r}; a label map "
                "pairs with one image: rename or remove one."
            )
        by_stem[stem] = image
    label_of: dict[str, Path] = {}
    for png in _files_under(label_dir, (".png",)):
        stem = png.relative_to(label_dir).with_suffix("").as_posix()
        if stem not in by_stem:
            raise ValueError(
                f"label map {png} has no image {image_dir}/{stem}.<jpg|png|...>; label maps "
                "pair with images by relative path and name."
            )
        label_of[stem] = png

    given: Mapping[str, Sequence[str | int]]
    if image_labels is None:
        given = {}
    elif isinstance(image_labels, (str, Path)):
        given = _read_image_labels(Path(image_labels).expanduser())
    else:
        given = image_labels
    whole_of: dict[str, list[int]] = {}
    for key, values in given.items():
        stem = Path(key).with_suffix("").as_posix() if key not in by_stem else key
        if stem not in by_stem:
            raise ValueError(
                f"image-level labels name image {key!r}, which is not in {image_dir} (give "
                "paths relative to it, e.g. 'street/a.jpg')."
            )
        if isinstance(values, (str, int)):
            values = [values]
        indices = [_label_index(v, table, key) for v in values]
        whole_of[stem] = list(dict.fromkeys(indices))

    if map_categories is None:
        whole_categories = {table[i].category for v in whole_of.values() for i in v}
        chosen = tuple(c for c in table.categories if c not in whole_categories)
    else:
        unknown = [c for c in map_categories if c not in table.categories]
        if unknown:
            raise ValueError(f"map_categories {unknown} are not categories of the concepts.")
        chosen = tuple(c for c in table.categories if c in map_categories)
    if label_of and not chosen:
        raise ValueError(
            "every category is one of image-level labels, so label maps annotate none; pass "
            "map_categories=[...]."
        )

    size: tuple[int, int] | None
    if mask_size is None:
        size = None
    elif isinstance(mask_size, int):
        size = (mask_size, mask_size)
    else:
        size = (int(mask_size[0]), int(mask_size[1]))
    if size is not None and min(size) < 1:
        raise ValueError(f"mask_size must be positive; got {mask_size}.")

    paths: list[Path] = []
    label_paths: list[Path | None] = []
    whole: list[list[int]] = []
    unlabelled: list[Path] = []
    for stem, image in sorted(by_stem.items()):
        if stem not in label_of and stem not in whole_of:
            unlabelled.append(image)
            continue
        paths.append(image)
        label_paths.append(label_of.get(stem))
        whole.append(whole_of.get(stem, []))
    if not paths:
        raise ValueError(
            f"no image in {image_dir} has a label map in {label_dir} (same relative path, "
            ".png) or image-level labels."
        )
    return LabelFolder(
        paths,
        label_paths,
        whole,
        table,
        map_categories=chosen,
        encoding=encoding,
        ignore=ignore,
        mask_size=size,
        unlabelled=unlabelled,
        transform=transform,
    )
