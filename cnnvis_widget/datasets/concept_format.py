"""The one format every concept data set gives (Network Dissection's probe data): the offline
concept set, a Broden-format folder, a user's label-map folder.

A concept data set is a map-style torch Dataset whose item ``i`` is ``(image, labels)``:
``image`` a PIL image (RGB) and ``labels`` a :class:`ConceptLabels`. It also has
``concepts``: a :class:`ConceptTable` naming every label index.

Label indices are global over the data set (as Broden's ``label.csv``): 0 means "no label",
1..L-1 are concepts, each in one category (``color``, ``object``, ``part``, ``material``,
``scene``, ``texture``, ...). An image is *annotated* for a category when its labels hold that
category (even with no concept present): Network Dissection's union counts a unit's mask only
on the images annotated for the concept's category (NetDissect-Lite's rule for partially
labelled data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Concept:
    """Label ``index`` (>= 1) named ``name`` in ``category``."""

    index: int
    name: str
    category: str


@dataclass(frozen=True)
class ConceptTable:
    """Every concept of a data set, by global label index: ``concepts[i].index == i + 1``
    (index 0 is "no label"). ``categories`` in display order."""

    concepts: tuple[Concept, ...]
    categories: tuple[str, ...]

    def __post_init__(self) -> None:
        for position, concept in enumerate(self.concepts, start=1):
            if concept.index != position:
                raise ValueError(
                    f"concept {concept.name!r} has index {concept.index}; concepts must be "
                    f"numbered 1, 2, ... in order (expected {position})."
                )
            if concept.category not in self.categories:
                raise ValueError(
                    f"concept {concept.name!r} is in category {concept.category!r}, which is "
                    f"not one of {list(self.categories)}."
                )

    @property
    def size(self) -> int:
        """Number of label indices, including 0 ("no label"): L."""
        return len(self.concepts) + 1

    def __getitem__(self, index: int) -> Concept:
        if not 1 <= index < self.size:
            raise IndexError(f"label index {index} is out of range 1..{self.size - 1}.")
        return self.concepts[index - 1]

    def index_of(self, name: str, category: str | None = None) -> int:
        """The label index of concept ``name`` (in ``category`` when given)."""
        for concept in self.concepts:
            if concept.name == name and (category is None or concept.category == category):
                return concept.index
        raise KeyError(f"no concept {name!r}" + (f" in {category!r}" if category else "") + ".")

    def category_of(self) -> np.ndarray:
        """(L,) int64: each label index's category number (position in ``categories``); -1
        for index 0."""
        out = np.full(self.size, -1, dtype=np.int64)
        for concept in self.concepts:
            out[concept.index] = self.categories.index(concept.category)
        return out


@dataclass
class ConceptLabels:
    """One image's concept labels.

    ``pixels``: per category, label maps (H', W') of global label indices (int32; 0 = no
    label). Several maps for one category (Broden's parts: a pixel may carry more than one
    label). All maps of an image have the same size, usually smaller than the image (Broden:
    112 x 112); the unit's map is resized to it.
    ``whole``: per category, label indices that hold for the whole image (scenes, whole-image
    textures): each counts as a mask covering every pixel.
    An image is annotated for exactly the categories that appear as keys of either.
    """

    pixels: dict[str, list[np.ndarray]] = field(default_factory=dict)
    whole: dict[str, list[int]] = field(default_factory=dict)

    @property
    def categories(self) -> set[str]:
        return set(self.pixels) | set(self.whole)

    def mask_size(self) -> tuple[int, int] | None:
        """(H', W') of the label maps; None when the image has only whole-image labels."""
        for maps in self.pixels.values():
            for label_map in maps:
                return (int(label_map.shape[0]), int(label_map.shape[1]))
        return None

    def check(self, table: ConceptTable) -> None:
        """Refuse labels the table does not know, or maps of different sizes."""
        sizes = {tuple(label_map.shape) for maps in self.pixels.values() for label_map in maps}
        if len(sizes) > 1:
            raise ValueError(f"an image's label maps have different sizes {sorted(sizes)}.")
        for category in self.categories:
            if category not in table.categories:
                raise ValueError(f"unknown category {category!r}; known: {list(table.categories)}.")
        for category, maps in self.pixels.items():
            for label_map in maps:
                _check_indices(np.unique(label_map), table, category, allow_zero=True)
        for category, indices in self.whole.items():
            _check_indices(np.asarray(indices), table, category, allow_zero=False)


def _check_indices(
    indices: np.ndarray, table: ConceptTable, category: str, *, allow_zero: bool
) -> None:
    for index in indices.tolist():
        if index == 0 and allow_zero:
            continue
        if not 1 <= index < table.size or table[index].category != category:
            raise ValueError(
                f"label {index} is not a concept of category {category!r} in this data set."
            )


def concept_table(names_by_category: Mapping[str, Sequence[str]]) -> ConceptTable:
    """A table numbering the concepts category by category, in the order given."""
    concepts: list[Concept] = []
    for category, names in names_by_category.items():
        for name in names:
            concepts.append(Concept(len(concepts) + 1, name, category))
    return ConceptTable(tuple(concepts), tuple(names_by_category))
