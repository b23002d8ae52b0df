"""A Broden-format folder (Bau et al. 2017's probe set) as a concept data set:
``cv.datasets.broden(path)``.

Read as NetDissect-Lite reads it (``loader/data_loader.py``, class ``SegmentationData``);
items are ``(PIL image RGB, ConceptLabels)`` (:mod:`.concept_format`). The folder holds:

- ``index.csv``: one row per image; columns ``image`` (path under ``images/``), ``split``
  (``train`` / ``val``), ``ih``, ``iw`` (image size, pixels), ``sh``, ``sw`` (label-map size,
  pixels: 112 x 112 in Broden 224), then one column per category. A category cell is a
  ``;``-separated list of PNG file names under ``images/`` (pixel label maps, label number
  = ``R + 256 * G``) or of integers (labels of the whole image: scenes, textures); empty when
  the image is not annotated for that category.
- ``label.csv``: ``number``, ``name`` (+ ``category``, ``frequency``, ``coverage``, ``syns``,
  not needed here): the global label numbers, 0 = no label.
- ``category.csv``: ``name`` (one row per category, in display order).
- ``c_<category>.csv``: ``code``, ``number``, ``coverage`` (+ ``name``, ``frequency``): the
  labels of each category, ``coverage`` being the label's mean pixel coverage in that
  category, in units of whole images.

One category per label (Lite's rule): a label listed by several categories (``c_object.csv``
and ``c_part.csv`` both list it) takes the *primary* category that Lite's
``primary_categories_per_index`` gives: the one among the read categories whose
``c_<category>.csv`` gives it the largest coverage (ties: the later category in
``category.csv`` order, as Lite's ``max((coverage, position))``). Lite then tallies every
pixel of that label, whichever column it came from, under the primary category; here too:
a label map of column ``part`` that holds a label whose primary category is ``object``
gives that label's pixels as an extra map of ``labels.pixels["object"]`` (the ``part`` map
keeps its other labels, 0 in place of the moved ones), so the image is annotated for both.

Label indices are Broden's numbers when the read labels are exactly 1..K (Broden itself,
all categories). Otherwise (gaps in ``label.csv``, or ``categories=`` leaving out labels of
no read category) the read labels are renumbered 1..L-1 in Broden-number order;
``dataset.broden_numbers[i]`` is index i's Broden number and ``dataset.index_of_number[n]``
the index of Broden number n (0 when no read category lists it, -1 when ``label.csv`` does
not). A pixel of a label that ``label.csv`` lists but no read category does is read as 0 (no
label), as is a whole-image label of that kind; a number ``label.csv`` does not list is
an error naming the PNG.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .concept_format import Concept, ConceptLabels, ConceptTable
from .files import open_rgb

META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
"""The columns of ``index.csv`` that are not categories."""

_INT = re.compile(r"^\d+$")


@dataclass(frozen=True)
class BrodenRow:
    """One image of ``index.csv``: ``image`` (path under ``images/``), ``split``, image size
    ``(ih, iw)`` and label-map size ``(sh, sw)`` in pixels, and per read category its
    label-map PNG names (``maps``) and whole-image label numbers (``whole``)."""

    image: str
    split: str
    image_size: tuple[int, int]
    mask_size: tuple[int, int]
    maps: dict[str, tuple[str, ...]]
    whole: dict[str, tuple[int, ...]]


def _read_csv(path: Path, required: Sequence[str], fix: str) -> list[dict[str, str]]:
    """Rows of a CSV file with a header; errors name the file, the missing columns and a fix."""
    if not path.is_file():
        raise FileNotFoundError(f"Broden folder has no {path.name}: {path} is missing. {fix}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        missing = [name for name in required if name not in fields]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing} (its columns: {fields}). {fix}")
        return list(reader)


def _int(value: str, path: Path, line: int, column: str) -> int:
    text = (value or "").strip()
    if not _INT.match(text):
        raise ValueError(
            f"{path}, row {line}: column {column!r} must be a non-negative integer; got {value!r}."
        )
    return int(text)


def _float(value: str, path: Path, line: int, column: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}, row {line}: column {column!r} must be a number; got {value!r}."
        ) from None


def decode_rgb16(rgb: np.ndarray) -> np.ndarray:
    """Broden's pixel labels: (H, W, >=2) uint8 -> (H, W) int32 label numbers ``R + 256 * G``."""
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def primary_categories(
    coverage: dict[str, dict[int, float]], categories: Sequence[str]
) -> dict[int, str]:
    """Each label number's primary category, NetDissect-Lite's rule: the category (among
    ``categories``, in order) that lists it with the largest coverage; ties go to the later
    category. ``coverage[category][number]`` is the label's coverage in that category
    (``c_<category>.csv``)."""
    best: dict[int, tuple[float, int]] = {}
    for position, category in enumerate(categories):
        for number, value in coverage[category].items():
            if number not in best or (value, position) >= best[number]:
                best[number] = (value, position)
    return {number: categories[position] for number, (_, position) in best.items()}


class Broden(Dataset[tuple[Any, ConceptLabels]]):
    """A Broden-format folder; items ``(PIL image RGB, ConceptLabels)``.

    Attributes: ``root`` (the folder), ``rows`` (list of :class:`BrodenRow`, in
    ``index.csv`` order), ``concepts`` (:class:`ConceptTable`), ``broden_numbers`` ((L,)
    int64: index -> Broden number, 0 -> 0), ``index_of_number`` ((N,) int64: Broden number ->
    index; 0 for a number of no read category, -1 for one label.csv does not list), ``renumbered`` (False when indices are Broden's numbers).
    ``labels(i)`` reads item i's labels without its image; ``mask_size(i)`` is its label-map
    size (sh, sw) even when it has only whole-image labels. ``transform`` (optional) is
    applied to each image.
    """

    def __init__(
        self,
        root: Path,
        rows: list[BrodenRow],
        concepts: ConceptTable,
        broden_numbers: np.ndarray,
        index_of_number: np.ndarray,
        *,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.root = root
        self.rows = rows
        self.concepts = concepts
        self.broden_numbers = broden_numbers
        self.index_of_number = index_of_number
        self.renumbered = not np.array_equal(broden_numbers, np.arange(len(broden_numbers)))
        self._category_of = concepts.category_of()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def filename(self, index: int) -> Path:
        """The image file of item index."""
        return self.root / "images" / self.rows[index].image

    def split(self, index: int) -> str:
        return self.rows[index].split

    def mask_size(self, index: int) -> tuple[int, int]:
        """(sh, sw): item index's label-map size in pixels (``index.csv``)."""
        return self.rows[index].mask_size

    def _label_map(self, name: str, size: tuple[int, int]) -> np.ndarray:
        """A label PNG as (sh, sw) int32 indices of this data set."""
        path = self.root / "images" / name
        try:
            with Image.open(path) as png:
                rgb = np.asarray(png.convert("RGB"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"label map {path} (listed in {self.root / 'index.csv'}) is missing."
            ) from None
        except OSError as error:
            raise ValueError(f"cannot read label map {path}: {error}") from error
        if rgb.shape[:2] != size:
            raise ValueError(
                f"label map {path} is {rgb.shape[0]} x {rgb.shape[1]} pixels but index.csv "
                f"gives its image sh x sw = {size[0]} x {size[1]}."
            )
        numbers = decode_rgb16(rgb)
        present = np.unique(numbers)
        listed = present < len(self.index_of_number)
        listed[listed] = self.index_of_number[present[listed]] >= 0
        if not listed.all():
            raise ValueError(
                f"label map {path} holds label number(s) {present[~listed][:5].tolist()} that "
                f"{self.root / 'label.csv'} does not list."
            )
        return self.index_of_number[numbers].astype(np.int32)

    def labels(self, index: int) -> ConceptLabels:
        """Item index's concept labels (its PNGs decoded; its image not read)."""
        row = self.rows[index]
        categories = self.concepts.categories
        out = ConceptLabels()
        for category in categories:
            if category in row.maps:
                out.pixels[category] = []
            if category in row.whole:
                out.whole[category] = []
        moved: dict[str, list[np.ndarray]] = {}
        for category, names in row.maps.items():
            own = categories.index(category)
            for name in names:
                label_map = self._label_map(name, row.mask_size)
                primary = self._category_of[label_map]  # -1 where no label
                elsewhere = (primary != own) & (label_map != 0)
                if elsewhere.any():
                    for other in np.unique(primary[elsewhere]).tolist():
                        piece = np.where(primary == other, label_map, 0).astype(np.int32)
                        moved.setdefault(categories[other], []).append(piece)
                    label_map = np.where(elsewhere, 0, label_map).astype(np.int32)
                out.pixels[category].append(label_map)
        for category, pieces in moved.items():
            out.pixels.setdefault(category, []).extend(pieces)
        for category, numbers in row.whole.items():
            for number in numbers:
                label = -1
                if number < len(self.index_of_number):
                    label = int(self.index_of_number[number])
                if label < 0:
                    raise ValueError(
                        f"{self.root / 'index.csv'}: image {row.image} has whole-image label "
                        f"{number} in column {category!r}, which label.csv does not list."
                    )
                if label == 0:
                    continue  # a label of no read category
                target = self.concepts[label].category
                out.whole.setdefault(target, [])
                if label not in out.whole[target]:
                    out.whole[target].append(label)
        return out

    def __getitem__(self, index: int) -> tuple[Any, ConceptLabels]:
        image = open_rgb(self.filename(index))[0]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels(index)

    def __repr__(self) -> str:
        return (
            f"Broden({self.root}, {len(self)} images, {self.concepts.size - 1} concepts in "
            f"{', '.join(self.concepts.categories)})"
        )


def _parse_cell(value: str) -> tuple[list[str], list[int]]:
    """A category cell: (PNG names, integer labels), empty entries dropped (Lite's
    ``decode_index_dict``)."""
    names: list[str] = []
    numbers: list[int] = []
    for item in (value or "").split(";"):
        item = item.strip()
        if not item:
            continue
        if _INT.match(item):
            numbers.append(int(item))
        else:
            names.append(item)
    return names, numbers


def broden(
    path: str | Path,
    *,
    split: str | None = None,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
    check: bool = True,
    transform: Callable[[Image.Image], Any] | None = None,
) -> Broden:
    """The Broden-format folder at ``path`` (e.g. ``broden1_224``) as a concept data set.

    ``split``: ``"train"``, ``"val"`` or None (all). ``categories``: the categories to read
    (default: all of ``category.csv``), kept in ``category.csv`` order; as in Lite, images
    with no label in any of them are left out, and each label's primary category is chosen
    among them. ``limit``: at most this many images (the first, in ``index.csv`` order,
    after the split). ``check``: make sure every image and label PNG of the kept rows exists
    (a stat per file). Labels are read lazily, per item. Errors name the missing file or
    column and what to do.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"Broden folder {root} does not exist. Download Broden (NetDissect-Lite's "
            "script/dlbroden.sh) and pass the folder holding index.csv."
        )
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder; pass the folder holding index.csv.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1; got {limit}.")
    fix = "Pass a Broden-format folder (index.csv, label.csv, category.csv, c_<category>.csv, images/)."

    known = [row["name"] for row in _read_csv(root / "category.csv", ["name"], fix)]
    if categories is None:
        chosen = known
    else:
        if isinstance(categories, str):
            raise TypeError(f"categories must be a list of names, e.g. [{categories!r}].")
        unknown = [c for c in categories if c not in known]
        if unknown:
            raise ValueError(
                f"categories {unknown} are not in {root / 'category.csv'}; known: {known}."
            )
        chosen = [c for c in known if c in categories]
    if not chosen:
        raise ValueError(f"{root / 'category.csv'} lists no categories; {fix}")

    # Labels: names by Broden number (label.csv), membership and coverage (c_<category>.csv).
    label_path = root / "label.csv"
    names: dict[int, str] = {}
    for line, row in enumerate(_read_csv(label_path, ["number", "name"], fix), start=2):
        number = _int(row["number"], label_path, line, "number")
        if number != 0:
            names[number] = row["name"]
    coverage: dict[str, dict[int, float]] = {}
    for category in chosen:
        c_path = root / f"c_{category}.csv"
        coverage[category] = {}
        for line, row in enumerate(_read_csv(c_path, ["code", "number", "coverage"], fix), start=2):
            number = _int(row["number"], c_path, line, "number")
            if number == 0:
                continue
            if number not in names:
                raise ValueError(
                    f"{c_path}, row {line}: label number {number} is not in {label_path}."
                )
            coverage[category][number] = _float(row["coverage"], c_path, line, "coverage")
    primary = primary_categories(coverage, chosen)
    kept = sorted(primary)
    broden_numbers = np.array([0, *kept], dtype=np.int64)
    index_of_number = np.full(max(names, default=0) + 1, -1, dtype=np.int64)
    index_of_number[[0, *names]] = 0
    index_of_number[broden_numbers] = np.arange(len(broden_numbers))
    table = ConceptTable(
        tuple(
            Concept(index, names[number], primary[number])
            for index, number in enumerate(kept, start=1)
        ),
        tuple(chosen),
    )

    # Images: index.csv rows with data in a chosen category, in the split, up to limit.
    index_path = root / "index.csv"
    rows: list[BrodenRow] = []
    for line, raw in enumerate(_read_csv(index_path, [*META_COLUMNS, *chosen], fix), start=2):
        maps: dict[str, tuple[str, ...]] = {}
        whole: dict[str, tuple[int, ...]] = {}
        for category in chosen:
            pngs, numbers = _parse_cell(raw[category])
            if pngs:
                maps[category] = tuple(pngs)
            if numbers:
                whole[category] = tuple(numbers)
        if not maps and not whole:
            continue  # Lite's index_has_any_data
        if split is not None and raw["split"] != split:
            continue
        rows.append(
            BrodenRow(
                image=raw["image"],
                split=raw["split"],
                image_size=(
                    _int(raw["ih"], index_path, line, "ih"),
                    _int(raw["iw"], index_path, line, "iw"),
                ),
                mask_size=(
                    _int(raw["sh"], index_path, line, "sh"),
                    _int(raw["sw"], index_path, line, "sw"),
                ),
                maps=maps,
                whole=whole,
            )
        )
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        where = f" in split {split!r}" if split is not None else ""
        raise ValueError(
            f"{index_path} has no image{where} labelled for categories {chosen}; "
            "check split= and categories=."
        )
    if check:
        images = root / "images"
        for kept_row in rows:
            listed = [n for pngs in kept_row.maps.values() for n in pngs]
            for name in (kept_row.image, *listed):
                if not (images / name).is_file():
                    raise FileNotFoundError(
                        f"{images / name} (listed in {index_path}) is missing; the images/ "
                        "folder is incomplete (re-extract Broden) or pass check=False."
                    )
    return Broden(root, rows, table, broden_numbers, index_of_number, transform=transform)
