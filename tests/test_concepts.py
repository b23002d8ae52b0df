"""cv.datasets.concepts(): the offline concept set (colour, object, texture), masks exact by
construction. Small builds (size 96, one image per concept) keep these fast."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnvis_widget as cv
from cnnvis_widget.datasets import concept_colors, concept_textures
from cnnvis_widget.datasets import concept_set as concepts_module
from cnnvis_widget.datasets.concept_format import ConceptLabels

SIZE = 96
MASK = 48
SMALL = {"per_concept": 1, "whole_per_concept": 1, "size": SIZE, "progress": False}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("concepts")


@pytest.fixture(scope="module")
def small(small_root: Path) -> concepts_module.ConceptSet:
    return cv.datasets.concepts(cache_dir=small_root, **SMALL)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_items_conform(small: concepts_module.ConceptSet) -> None:
    table = small.concepts
    assert table.categories == ("color", "object", "texture")
    objects = len(concepts_module.object_cutouts())
    textures = len(concepts_module.TEXTURE_CONCEPTS)
    assert len(small) == objects + 2 * textures
    assert table.size == 1 + 11 + objects + textures
    for index in range(len(small)):
        image, labels = small[index]
        assert isinstance(labels, ConceptLabels)
        labels.check(table)
        assert image.mode == "RGB" and image.size == (SIZE, SIZE)
        assert labels.mask_size() == (MASK, MASK)
        spec = small.specs[index]
        colour = labels.pixels["color"][0]
        assert colour.dtype == np.int32 and (colour > 0).all()  # every pixel named
        assert {table[i].category for i in np.unique(colour).tolist()} == {"color"}
        concept = table.index_of(spec["concept"])
        if spec["kind"] == "whole texture":
            assert labels.whole == {"texture": [concept]} and set(labels.pixels) == {"color"}
        else:
            category = "object" if spec["kind"] == "object" else "texture"
            assert labels.categories == {"color", category} and not labels.whole
            assert set(np.unique(labels.pixels[category][0]).tolist()) == {0, concept}


def test_object_mask_is_the_pasted_alpha(small: concepts_module.ConceptSet) -> None:
    """Rebuild an object image independently: the mask is exactly where the pasted cut-out's
    alpha is > 0.5, and the object's opaque pixels are the cut-out's own."""
    index = next(i for i, kind in enumerate(small.kinds) if kind == "object")
    spec = small.specs[index]
    x, y, width, height = concepts_module.cutout_geometry(spec, SIZE)
    with Image.open(concepts_module.STAMPS_DIR / spec["cutout"]) as stamp:
        rgba = stamp.convert("RGBA")
    if spec["flip"]:
        rgba = rgba.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    alpha = np.asarray(rgba.getchannel("A").resize((width, height), Image.Resampling.LANCZOS))
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[y : y + height, x : x + width] = alpha / 255.0 > 0.5
    assert 0 < expected.sum() < SIZE * SIZE

    image, mask = concepts_module.render(spec, SIZE)
    assert mask is not None
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(image, np.asarray(small.image(index)))  # stored = rebuilt
    rgb = np.asarray(rgba.resize((width, height), Image.Resampling.LANCZOS))[..., :3]
    opaque = alpha == 255
    np.testing.assert_array_equal(image[y : y + height, x : x + width][opaque], rgb[opaque])

    stored = small.labels(index).pixels["object"][0]
    pick = np.floor((np.arange(MASK) + 0.5) * SIZE / MASK).astype(int)
    concept = small.concepts.index_of(spec["concept"], "object")
    np.testing.assert_array_equal(stored, np.where(expected[np.ix_(pick, pick)], concept, 0))


def test_texture_region_is_the_tiled_texture(small: concepts_module.ConceptSet) -> None:
    for kind in ("texture", "whole texture"):
        for index in [i for i, k in enumerate(small.kinds) if k == kind][:6]:
            spec = small.specs[index]
            image, mask = concepts_module.render(spec, SIZE)
            texture = concepts_module._texture(spec["texture"], SIZE)
            if mask is None:
                np.testing.assert_array_equal(image, texture)
                continue
            assert 0 < mask.sum() < SIZE * SIZE
            np.testing.assert_array_equal(image[mask], texture[mask])
            background = concepts_module._background(spec, SIZE)
            np.testing.assert_array_equal(image[~mask], background[~mask])


def test_pure_colours_are_named() -> None:
    terms = concept_colors.COLOR_TERMS
    image = np.zeros((8, 12, 3), dtype=np.uint8)
    image[:, :4] = (255, 0, 0)
    image[:, 4:8] = (0, 0, 255)
    image[:, 8:] = (255, 255, 255)
    names = concept_colors.name_colors(image)
    assert names.shape == (8, 12)
    assert {terms[i] for i in names[:, :4].ravel()} == {"red"}
    assert {terms[i] for i in names[:, 4:8].ravel()} == {"blue"}
    assert {terms[i] for i in names[:, 8:].ravel()} == {"white"}
    samples = {
        (0, 0, 0): "black",
        (128, 128, 128): "grey",
        (30, 160, 40): "green",
        (250, 220, 0): "yellow",
        (255, 128, 0): "orange",
        (128, 0, 128): "purple",
        (255, 182, 193): "pink",
        (120, 70, 30): "brown",
    }
    for rgb, term in samples.items():
        assert terms[concept_colors.name_colors(np.array([[rgb]], np.uint8))[0, 0]] == term, rgb


def test_colour_labels_of_a_red_and_blue_patch(small: concepts_module.ConceptSet) -> None:
    image = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
    image[:, : SIZE // 2] = (255, 0, 0)
    image[:, SIZE // 2 :] = (0, 0, 255)
    spec = {"kind": "whole texture", "concept": "striped"}
    labels = concepts_module.labels_for(spec, image, None, small.concepts, MASK)
    colour = labels.pixels["color"][0]
    assert (colour[:, : MASK // 2] == small.concepts.index_of("red")).all()
    assert (colour[:, MASK // 2 :] == small.concepts.index_of("blue")).all()


def test_lab_conversion_matches_reference_values() -> None:
    # CIELab (D65) of sRGB white, red and blue, as colour-science and skimage give them
    lab = concept_colors.srgb_to_lab(
        np.array([[255, 255, 255], [255, 0, 0], [0, 0, 255]], np.uint8)
    )
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[1], [53.24, 80.09, 67.20], atol=0.02)
    np.testing.assert_allclose(lab[2], [32.30, 79.19, -107.86], atol=0.02)


def test_pixel_and_image_counts(small: concepts_module.ConceptSet) -> None:
    pixels = np.zeros(small.concepts.size, dtype=np.int64)
    images = np.zeros(small.concepts.size, dtype=np.int64)
    for index in range(len(small)):
        labels = small.labels(index)
        present = np.zeros(small.concepts.size, dtype=bool)
        for maps in labels.pixels.values():
            counts = np.bincount(maps[0].ravel(), minlength=small.concepts.size)
            pixels += counts
            present |= counts > 0
        for indices in labels.whole.values():
            pixels[indices] += MASK * MASK
            present[indices] = True
        present[0] = False
        images += present
    np.testing.assert_array_equal(small.pixel_counts(), pixels)
    np.testing.assert_array_equal(small.image_counts(), images)
    rows = small.summary()
    assert [r["index"] for r in rows] == list(range(1, small.concepts.size))
    assert all(r["images"] >= 1 and r["pixels"] > 0 for r in rows if r["category"] != "color")


def test_default_configuration_has_50_images_per_concept() -> None:
    """From the recipes alone (no drawing): >= 50 images per object and texture concept, each
    object concept from >= MIN_CUTOUTS distinct cut-outs, images 224 px and masks 112 px."""
    table, specs = concepts_module.plan()
    counts: dict[str, int] = {}
    cutouts: dict[str, set[str]] = {}
    for spec in specs:
        counts[spec["concept"]] = counts.get(spec["concept"], 0) + 1
        if spec["kind"] == "object":
            cutouts.setdefault(spec["concept"], set()).add(spec["cutout"])
    named = [c.name for c in table.concepts if c.category != "color"]
    assert sorted(counts) == sorted(named)
    assert min(counts.values()) >= 50
    assert len(cutouts) >= 20
    assert min(len(files) for files in cutouts.values()) >= concepts_module.MIN_CUTOUTS
    assert {"bird", "flower", "fruit", "car", "striped", "checkered", "dotted", "wood"} <= set(
        named
    )
    assert concepts_module.DEFAULT_SIZE == 224 and concepts_module.DEFAULT_MASK_SIZE == 112


@pytest.mark.slow
def test_default_set_has_50_images_per_concept() -> None:
    """The default set (built once into the user cache, a few minutes): every concept, colour
    included, is in >= 50 images."""
    data = cv.datasets.concepts(progress=False)
    assert len(data) >= 2000 and data.size == 224 and data.mask_size == 112
    low = {r["name"]: r["images"] for r in data.summary() if r["images"] < 50}
    assert not low, low


def test_second_call_reuses_the_cache(
    small: concepts_module.ConceptSet, small_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = small.root / "manifest.json"
    assert manifest.is_file() and small.root.parent.parent == small_root
    before = {p: p.stat().st_mtime_ns for p in small.root.rglob("*")}

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt")

    monkeypatch.setattr(concepts_module, "render", no_build)
    start = time.perf_counter()
    again = cv.datasets.concepts(cache_dir=small_root, **SMALL)
    assert time.perf_counter() - start < 2.0
    assert {p: p.stat().st_mtime_ns for p in small.root.rglob("*")} == before
    assert again.root == small.root and len(again) == len(small)
    assert again.specs == small.specs
    np.testing.assert_array_equal(
        again.labels(3).pixels["color"][0], small.labels(3).pixels["color"][0]
    )


def test_same_seed_same_bytes(small: concepts_module.ConceptSet, tmp_path: Path) -> None:
    rebuilt = cv.datasets.concepts(cache_dir=tmp_path / "a", **SMALL)
    assert _files(rebuilt.root) == _files(small.root)
    other = cv.datasets.concepts(cache_dir=tmp_path / "b", seed=1, **SMALL)
    assert other.root.name != small.root.name
    assert (
        json.loads((other.root / "manifest.json").read_text())["items"]
        != json.loads((small.root / "manifest.json").read_text())["items"]
    )


def test_transform_and_index(small: concepts_module.ConceptSet, small_root: Path) -> None:
    data = cv.datasets.concepts(cache_dir=small_root, transform=np.asarray, **SMALL)
    image, labels = data[-1]
    assert isinstance(image, np.ndarray) and image.shape == (SIZE, SIZE, 3)
    assert labels.whole  # the last item is a whole-image texture
    with pytest.raises(IndexError, match="out of range"):
        data[len(data)]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"per_concept": 0}, ValueError, "per_concept must be an int >= 1"),
        ({"per_concept": 2.5}, TypeError, "per_concept must be an int"),
        ({"whole_per_concept": -1}, ValueError, "whole_per_concept must be an int >= 0"),
        ({"size": 16}, ValueError, "size must be an int >= 32"),
        ({"mask_size": 200, "size": 96}, ValueError, r"mask_size \(200\) must be at most size"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"progress": "no"}, TypeError, "progress must be True or False"),
        ({"transform": "resize"}, TypeError, "transform"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        cv.datasets.concepts(**kwargs)  # type: ignore[arg-type]


def test_missing_gimp_patterns_name_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(concepts_module, "GIMP_PATTERNS_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="apt-get install gimp-data"):
        cv.datasets.concepts(cache_dir=tmp_path, **SMALL)


def _pat(width: int, height: int, depth: int, name: bytes, pixels: bytes) -> bytes:
    header = struct.pack(">5I", 24 + len(name) + 1, 1, width, height, depth) + b"GPAT"
    return header + name + b"\0" + pixels


def test_gimp_pattern_reader(tmp_path: Path) -> None:
    name, pixels = concept_textures.read_gimp_pattern(
        concept_textures.GIMP_PATTERNS_DIR / "Animal/leather.pat"
    )
    assert name == "Leather" and pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    path = tmp_path / "tiny.pat"
    path.write_bytes(_pat(3, 2, 1, b"Tiny", bytes(range(6))))
    name, pixels = concept_textures.read_gimp_pattern(path)
    assert name == "Tiny"
    np.testing.assert_array_equal(pixels[..., 0], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(concept_textures.pattern_rgb(pixels)[1, 2], [5, 5, 5])
    path.write_bytes(_pat(3, 2, 1, b"Tiny", bytes(5)))
    with pytest.raises(ValueError, match="truncated"):
        concept_textures.read_gimp_pattern(path)
    path.write_bytes(b"\0" * 40)
    with pytest.raises(ValueError, match="not a GIMP pattern"):
        concept_textures.read_gimp_pattern(path)
    for concept, files in concept_textures.GIMP_TEXTURES.items():
        for file in files:
            assert (concept_textures.GIMP_PATTERNS_DIR / file).is_file(), (concept, file)


def test_procedural_textures() -> None:
    colours = ((255, 0, 0), (0, 0, 255))
    for kind in concept_textures.PROCEDURAL_TEXTURES:
        texture = concept_textures.procedural_texture(
            kind, (64, 64), period=16.0, angle=0.0, phase=(0.0, 0.0), colors=colours
        )
        assert texture.shape == (64, 64, 3)
        assert {tuple(c) for c in texture.reshape(-1, 3).tolist()} == set(colours)
    stripes = concept_textures.procedural_texture(
        "striped", (4, 16), period=8.0, angle=0.0, phase=(0.0, 0.0), colors=colours
    )
    np.testing.assert_array_equal(stripes[0, :, 0], [255] * 4 + [0] * 4 + [255] * 4 + [0] * 4)
    with pytest.raises(ValueError, match="unknown procedural texture"):
        concept_textures.procedural_texture(
            "wavy", (8, 8), period=4.0, angle=0.0, phase=(0.0, 0.0), colors=colours
        )
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        concept_colors.name_colors(np.zeros((4, 4), np.uint8))
