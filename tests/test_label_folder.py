"""cv.datasets.label_folder: images + label-map PNGs (VOC palette, greyscale, ADE colours),
image-level labels, nearest resizing; fixtures written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnvis_widget as cv
from cnnvis_widget.datasets.label_maps import resize_nearest

VOC_NAMES = ["background", "cat", "dog", "grass"]
SIZE = (8, 12)  # image and label-map height, width


def picture(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def blocks(values: list[list[int]], size: tuple[int, int] = SIZE) -> np.ndarray:
    """A label map of (len(values), len(values[0])) constant blocks."""
    grid = np.asarray(values, dtype=np.int64)
    return np.kron(grid, np.ones((size[0] // grid.shape[0], size[1] // grid.shape[1]), int))


def palette_png(ids: np.ndarray) -> Image.Image:
    image = Image.fromarray(ids.astype(np.uint8), "P")
    image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    return image


def save_image(path: Path, seed: int, size: tuple[int, int] = SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture(seed, size), "RGB").save(path)


def save_label(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


MAP_A = blocks([[1, 2, 0], [255, 3, 1]])  # 255: VOC void, read as 0
MAP_B = blocks([[2, 2], [0, 3]])


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """images/a.png, images/sub/b.png with palette label maps; images/c.png without."""
    root = tmp_path / "voc"
    save_image(root / "images" / "a.png", 1)
    save_image(root / "images" / "sub" / "b.png", 2)
    save_image(root / "images" / "c.png", 3)
    save_label(root / "labels" / "a.png", palette_png(MAP_A))
    save_label(root / "labels" / "sub" / "b.png", palette_png(MAP_B))
    (root / "images" / "notes.txt").write_text("not an image")
    return root


def test_voc_palette_maps(voc: Path) -> None:
    ds = cv.datasets.label_folder(voc, VOC_NAMES)
    table = ds.concepts
    assert table.categories == ("object",)
    assert [(c.index, c.name) for c in table.concepts] == [(1, "cat"), (2, "dog"), (3, "grass")]
    assert len(ds) == 2
    assert [p.relative_to(voc).as_posix() for p in ds.paths] == ["images/a.png", "images/sub/b.png"]
    assert [p.relative_to(voc).as_posix() for p in ds.unlabelled] == ["images/c.png"]

    image, labels = ds[0]
    assert np.array_equal(np.asarray(image), picture(1))
    labels.check(table)
    assert labels.categories == {"object"}
    assert labels.whole == {}
    expected = np.where(MAP_A == 255, 0, MAP_A)
    assert [m.tolist() for m in labels.pixels["object"]] == [expected.tolist()]
    assert labels.pixels["object"][0].dtype == np.int32
    _, labels = ds[1]
    assert [m.tolist() for m in labels.pixels["object"]] == [MAP_B.tolist()]

    kept = cv.datasets.label_folder(voc, [*VOC_NAMES, *(f"c{i}" for i in range(4, 256))], ignore=[])
    assert kept.labels(0).pixels["object"][0].max() == 255


def test_mask_size_nearest(voc: Path) -> None:
    ds = cv.datasets.label_folder(voc, VOC_NAMES, mask_size=(2, 3))
    _, labels = ds[0]
    assert labels.mask_size() == (2, 3)
    assert labels.pixels["object"][0].tolist() == [[1, 2, 0], [0, 3, 1]]
    assert cv.datasets.label_folder(voc, VOC_NAMES, mask_size=4).labels(1).mask_size() == (4, 4)
    # Upsampling repeats, downsampling takes the pixel under each output centre.
    assert resize_nearest(np.array([[1, 2], [3, 4]]), (4, 4)).tolist() == [
        [1, 1, 2, 2],
        [1, 1, 2, 2],
        [3, 3, 4, 4],
        [3, 3, 4, 4],
    ]
    assert resize_nearest(np.arange(9).reshape(3, 3), (1, 1)).tolist() == [[4]]


@pytest.mark.parametrize("encoding", ["grey16", "ade", "rgb16"])
def test_encodings_beyond_255(tmp_path: Path, encoding: str) -> None:
    ids = blocks([[0, 1, 300], [257, 255, 0]])
    if encoding == "grey16":
        png = Image.fromarray(ids.astype(np.uint16))  # "I;16"
    else:
        rgb = np.zeros((*SIZE, 3), dtype=np.uint8)
        rgb[..., 0] = ids // 256 * 10 if encoding == "ade" else ids % 256
        rgb[..., 1] = ids % 256 if encoding == "ade" else ids // 256
        rgb[..., 2] = 77  # ADE's blue channel holds instances: ignored
        png = Image.fromarray(rgb, "RGB")
    save_image(tmp_path / "images" / "x.jpg", 4, (16, 24))  # labels at half resolution
    save_label(tmp_path / "labels" / "x.png", png)
    names = ["-", *(f"thing{i}" for i in range(1, 301))]
    ds = cv.datasets.label_folder(
        tmp_path, names, encoding="index" if encoding == "grey16" else encoding
    )
    labels = ds.labels(0)
    labels.check(ds.concepts)
    # 255 is VOC's void for index PNGs only; ADE and R + 256 * G maps keep it as a class.
    expected = np.where(ids == 255, 0, ids) if encoding == "grey16" else ids
    assert labels.pixels["object"][0].tolist() == expected.tolist()
    assert ds[0][0].size == (24, 16)


def test_categories_and_image_level_labels(tmp_path: Path) -> None:
    names = ["unlabelled", "cat", "dog", "grass", "kitchen", "beach"]
    category = {
        "cat": "object",
        "dog": "object",
        "grass": "material",
        "kitchen": "scene",
        "beach": "scene",
    }
    for stem, seed in (("a", 1), ("b", 2), ("c", 3)):
        save_image(tmp_path / "images" / f"{stem}.jpg", seed)
    label = blocks([[1, 3], [2, 0]])
    save_label(tmp_path / "labels" / "a.png", Image.fromarray(label.astype(np.uint8), "L"))
    csv = tmp_path / "scenes.csv"
    csv.write_text("image,labels\na.jpg,kitchen\nc,beach;5\n")
    for image_labels in ({"a.jpg": ["kitchen"], "c": ["beach", 5]}, csv, str(csv)):
        ds = cv.datasets.label_folder(tmp_path, names, category=category, image_labels=image_labels)
        table = ds.concepts
        assert table.categories == ("object", "material", "scene")
        assert [c.category for c in table.concepts] == [*(category[n] for n in names[1:])]
        assert ds.map_categories == ("object", "material")
        assert [p.name for p in ds.paths] == ["a.jpg", "c.jpg"]
        assert [p.name for p in ds.unlabelled] == ["b.jpg"]
        labels = ds.labels(0)
        labels.check(table)
        assert labels.categories == {"object", "material", "scene"}
        assert labels.pixels["object"][0].tolist() == blocks([[1, 0], [2, 0]]).tolist()
        assert labels.pixels["material"][0].tolist() == blocks([[0, 3], [0, 0]]).tolist()
        assert labels.whole == {"scene": [4]}
        labels = ds.labels(1)  # image-level labels only
        labels.check(table)
        assert labels.pixels == {}
        assert labels.whole == {"scene": [5]}
        assert labels.mask_size() is None

    # Labels maps annotating only "object": grass in a map is then an error naming it.
    strict = cv.datasets.label_folder(tmp_path, names, category=category, map_categories=["object"])
    with pytest.raises(ValueError, match=r"\['grass'\] of category 'material'"):
        strict.labels(0)


def test_bad_folders_give_clear_errors(voc: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pass labels="):
        cv.datasets.label_folder(voc, VOC_NAMES, labels="SegmentationClass")
    with pytest.raises(ValueError, match="concepts must list"):
        cv.datasets.label_folder(voc, "cat")
    with pytest.raises(ValueError, match=r"no category for \['grass'\]"):
        cv.datasets.label_folder(voc, VOC_NAMES, category={"cat": "object", "dog": "object"})
    with pytest.raises(ValueError, match="encoding must be one of"):
        cv.datasets.label_folder(voc, VOC_NAMES, encoding="voc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'zebra', which is not one of the concepts"):
        cv.datasets.label_folder(voc, VOC_NAMES, image_labels={"c.png": ["zebra"]})
    with pytest.raises(ValueError, match=r"image 'd\.png'"):
        cv.datasets.label_folder(voc, VOC_NAMES, image_labels={"d.png": ["cat"]})

    # An id beyond the names given.
    ds = cv.datasets.label_folder(voc, VOC_NAMES[:3])
    with pytest.raises(ValueError, match=r"a\.png holds class id\(s\) \[3\]"):
        ds.labels(0)
    # A colour map read as indices.
    save_label(voc / "labels" / "a.png", Image.fromarray(picture(5), "RGB"))
    with pytest.raises(ValueError, match="encoding='ade'"):
        cv.datasets.label_folder(voc, VOC_NAMES).labels(0)
    # A label map of another shape than its image.
    save_label(voc / "labels" / "a.png", palette_png(np.ones((8, 8))))
    with pytest.raises(ValueError, match="not the same shape"):
        cv.datasets.label_folder(voc, VOC_NAMES).labels(0)
    # A label map without an image, and two images with one name.
    save_label(voc / "labels" / "z.png", palette_png(MAP_B))
    with pytest.raises(ValueError, match=r"label map .*z\.png has no image"):
        cv.datasets.label_folder(voc, VOC_NAMES)
    (voc / "labels" / "z.png").unlink()
    save_image(voc / "images" / "a.jpg", 6)
    with pytest.raises(ValueError, match="share the name 'a'"):
        cv.datasets.label_folder(voc, VOC_NAMES)
    # Nothing labelled at all.
    save_image(tmp_path / "empty" / "images" / "q.png", 7)
    (tmp_path / "empty" / "labels").mkdir()
    with pytest.raises(ValueError, match="no image in"):
        cv.datasets.label_folder(tmp_path / "empty", VOC_NAMES)
