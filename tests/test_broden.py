"""cv.datasets.broden: a Broden-format folder, written here by the test, read as
NetDissect-Lite reads it (pixel labels R + 256 * G, whole-image labels, primary categories)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnvis_widget as cv
from cnnvis_widget.datasets.broden import decode_rgb16, primary_categories

CATEGORIES = ["color", "object", "part", "material", "scene", "texture"]
# Broden number -> (name, {category: coverage}); 256 and 300 need the green channel.
NAMED = {
    1: ("red", {"color": 0.2}),
    2: ("blue", {"color": 0.1}),
    3: ("dog", {"object": 0.2}),
    4: ("wheel", {"object": 0.3, "part": 0.1}),  # primary: object (larger coverage)
    5: ("leg", {"part": 0.1}),
    6: ("wood", {"material": 0.4}),
    7: ("kitchen", {"scene": 1.0}),
    8: ("striped", {"texture": 1.0}),
    9: ("window", {"object": 0.05, "part": 0.2}),  # primary: part
    256: ("car", {"object": 0.3}),
    300: ("sky", {"object": 0.5}),
}
LABELS = {n: NAMED.get(n, (f"filler{n}", {"color": 0.01})) for n in range(1, 301)}
MASK = (4, 6)  # sh, sw
IMAGE = (8, 12)  # ih, iw


def encode(labels: np.ndarray) -> Image.Image:
    """Label numbers (H, W) -> Broden's RGB PNG (R = n % 256, G = n // 256)."""
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return Image.fromarray(rgb, "RGB")


def label_map(*values: int) -> np.ndarray:
    """A (4, 6) map: row r holds values[r % len(values)] (0 = no label)."""
    out = np.zeros(MASK, dtype=np.int32)
    for r in range(MASK[0]):
        out[r] = values[r % len(values)]
    return out


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


# Each image: split and per category either a list of maps or a list of whole labels.
MAPS = {
    "c0": label_map(1, 2, 0, 1),
    "o0": label_map(3, 256, 300, 4),
    "p0": label_map(5, 4, 0, 0),  # wheel (4) moves to object
    "m0": label_map(6, 0),
    "o1": label_map(3, 0),
    "p1a": label_map(9, 5),
    "p1b": label_map(4, 0),  # only wheel: moves to object, the part map stays, all 0
    "o4": label_map(9, 3),  # window (9) moves to part
}
IMAGES: list[tuple[str, str, dict[str, list[object]]]] = [
    (
        "a/img0.png",
        "train",
        {
            "color": ["c0"],
            "object": ["o0"],
            "part": ["p0"],
            "material": ["m0"],
            "scene": [7],
            "texture": [8],
        },
    ),
    ("a/img1.png", "val", {"object": ["o1"], "part": ["p1a", "p1b"], "scene": [7]}),
    ("b/img2.png", "train", {"scene": [7], "texture": [8]}),  # whole-image labels only
    ("b/img3.png", "train", {}),  # no labels: left out, as Lite does
    ("b/img4.png", "val", {"object": ["o4"]}),
]


def pixels_of(name: str) -> np.ndarray:
    """The RGB content written for an image (distinct per image)."""
    seed = sum(name.encode())
    return np.random.default_rng(seed).integers(0, 256, (*IMAGE, 3), dtype=np.uint8)


def write_broden(root: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A small Broden-format folder at root; files named in skip are not written."""
    (root / "images").mkdir(parents=True)
    files: dict[str, tuple[list[str], list[list[object]]]] = {}
    files["category.csv"] = (
        ["name", "first", "last", "count", "frequency"],
        [[c, 0, 0, 0, 1] for c in CATEGORIES],
    )
    files["label.csv"] = (
        ["number", "name", "category", "frequency", "coverage", "syns"],
        [
            [n, name, ";".join(f"{c}(1)" for c in cov), 1, max(cov.values()), ""]
            for n, (name, cov) in LABELS.items()
        ],
    )
    for category in CATEGORIES:
        members = [(n, name, cov[category]) for n, (name, cov) in LABELS.items() if category in cov]
        files[f"c_{category}.csv"] = (
            ["code", "number", "name", "frequency", "coverage"],
            [[code, n, name, 1, c] for code, (n, name, c) in enumerate(members, start=1)],
        )
    index_rows: list[list[object]] = []
    for image, split, cells in IMAGES:
        Image.fromarray(pixels_of(image), "RGB").save(root / "images" / image.replace("/", "_"))
        row: list[object] = [image.replace("/", "_"), split, *IMAGE, *MASK]
        for category in CATEGORIES:
            entries = []
            for entry in cells.get(category, []):
                if isinstance(entry, str):
                    png = f"{image.replace('/', '_')[:-4]}_{entry}.png"
                    encode(MAPS[entry]).save(root / "images" / png)
                    entries.append(png)
                else:
                    entries.append(str(entry))
            row.append(";".join(entries))
        index_rows.append(row)
    files["index.csv"] = (["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], index_rows)
    for name, (header, rows) in files.items():
        if name not in skip:
            write_csv(root / name, header, rows)
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_broden(tmp_path / "broden")


def only(label_map: np.ndarray, *keep: int) -> np.ndarray:
    return np.where(np.isin(label_map, keep), label_map, 0)


def test_decode_rgb16_and_primary_category_rule() -> None:
    rgb = np.array([[[44, 1, 0], [255, 0, 9], [0, 2, 0]]], dtype=np.uint8)
    assert decode_rgb16(rgb).tolist() == [[300, 255, 512]]
    coverage = {"object": {4: 0.3, 9: 0.05, 10: 0.2}, "part": {4: 0.1, 9: 0.2, 10: 0.2}}
    # Largest coverage wins; a tie goes to the later category (Lite's max((coverage, position))).
    assert primary_categories(coverage, ["object", "part"]) == {4: "object", 9: "part", 10: "part"}


def test_reads_every_written_label_with_broden_numbers(folder: Path) -> None:
    ds = cv.datasets.broden(folder)
    table = ds.concepts
    assert table.categories == tuple(CATEGORIES)
    assert not ds.renumbered
    assert table.size == 301
    for number, (name, _) in LABELS.items():
        assert table[number].name == name
    assert table[4].category == "object"  # wheel: object (0.3) over part (0.1)
    assert table[9].category == "part"  # window: part (0.2) over object (0.05)
    assert table[256].category == "object"
    assert table.index_of("sky") == 300
    assert len(ds) == 4  # img3 has no labels
    assert [r.image for r in ds.rows] == ["a_img0.png", "a_img1.png", "b_img2.png", "b_img4.png"]

    image, labels = ds[0]
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), pixels_of("a/img0.png"))
    labels.check(table)
    assert labels.categories == set(CATEGORIES)
    assert labels.mask_size() == MASK
    assert [m.tolist() for m in labels.pixels["color"]] == [MAPS["c0"].tolist()]
    assert [m.tolist() for m in labels.pixels["material"]] == [MAPS["m0"].tolist()]
    # The part map's wheel pixels are tallied under object (wheel's primary category).
    assert [m.tolist() for m in labels.pixels["object"]] == [
        MAPS["o0"].tolist(),
        only(MAPS["p0"], 4).tolist(),
    ]
    assert [m.tolist() for m in labels.pixels["part"]] == [only(MAPS["p0"], 5).tolist()]
    assert labels.pixels["object"][0].dtype == np.int32
    assert labels.whole == {"scene": [7], "texture": [8]}

    _, labels = ds[1]  # partially labelled: no color, material, texture
    labels.check(table)
    assert labels.categories == {"object", "part", "scene"}
    assert [m.tolist() for m in labels.pixels["part"]] == [
        MAPS["p1a"].tolist(),
        np.zeros(MASK, dtype=int).tolist(),  # still annotated for part, wheel moved out
    ]
    assert [m.tolist() for m in labels.pixels["object"]] == [
        MAPS["o1"].tolist(),
        MAPS["p1b"].tolist(),
    ]
    assert labels.whole == {"scene": [7]}

    _, labels = ds[2]  # whole-image labels only
    assert labels.pixels == {}
    assert labels.whole == {"scene": [7], "texture": [8]}
    assert labels.mask_size() is None
    assert ds.mask_size(2) == MASK

    _, labels = ds[3]  # window (part) in an object map: the image is annotated for both
    labels.check(table)
    assert [m.tolist() for m in labels.pixels["object"]] == [only(MAPS["o4"], 3).tolist()]
    assert [m.tolist() for m in labels.pixels["part"]] == [only(MAPS["o4"], 9).tolist()]
    assert labels.whole == {}


def test_split_limit_and_transform(folder: Path) -> None:
    val = cv.datasets.broden(folder, split="val")
    assert [r.image for r in val.rows] == ["a_img1.png", "b_img4.png"]
    assert {val.split(i) for i in range(len(val))} == {"val"}
    train = cv.datasets.broden(folder, split="train", limit=1)
    assert [r.image for r in train.rows] == ["a_img0.png"]
    sized = cv.datasets.broden(folder, limit=2, transform=lambda im: im.size)
    assert sized[1][0] == (IMAGE[1], IMAGE[0])


def test_category_subset_renumbers_and_maps_back(folder: Path) -> None:
    ds = cv.datasets.broden(folder, categories=["part", "scene"])
    table = ds.concepts
    assert table.categories == ("part", "scene")  # category.csv order, whatever the order given
    assert cv.datasets.broden(folder, categories=["scene", "part"]).concepts == table
    assert ds.renumbered
    # Only labels of part or scene; wheel is part here (object is not read).
    assert ds.broden_numbers.tolist() == [0, 4, 5, 7, 9]
    assert [(c.name, c.category) for c in table.concepts] == [
        ("wheel", "part"),
        ("leg", "part"),
        ("kitchen", "scene"),
        ("window", "part"),
    ]
    assert ds.index_of_number[[4, 5, 7, 9, 3, 0]].tolist() == [1, 2, 3, 4, 0, 0]
    assert [r.image for r in ds.rows] == ["a_img0.png", "a_img1.png", "b_img2.png"]
    _, labels = ds[0]
    labels.check(table)
    assert labels.categories == {"part", "scene"}
    assert [m.tolist() for m in labels.pixels["part"]] == [ds.index_of_number[MAPS["p0"]].tolist()]
    assert labels.whole == {"scene": [3]}
    _, labels = ds[1]
    assert [ds.broden_numbers[m].tolist() for m in labels.pixels["part"]] == [
        MAPS["p1a"].tolist(),
        MAPS["p1b"].tolist(),
    ]


def test_label_numbers_not_in_read_categories_read_as_no_label(folder: Path) -> None:
    # c_part lists only wheel, leg, window: an unexpected label in a part map reads as 0.
    encode(label_map(5, 3)).save(folder / "images" / "a_img0_p0.png")
    ds = cv.datasets.broden(folder, categories=["part"])
    _, labels = ds[0]
    assert ds.broden_numbers[labels.pixels["part"][0]].tolist() == label_map(5, 0).tolist()


@pytest.mark.parametrize(
    ("skip", "message"),
    [
        ("index.csv", "index.csv"),
        ("label.csv", "label.csv"),
        ("category.csv", "category.csv"),
        ("c_part.csv", "c_part.csv"),
    ],
)
def test_missing_files_are_named(tmp_path: Path, skip: str, message: str) -> None:
    root = write_broden(tmp_path / "broden", skip=(skip,))
    with pytest.raises(FileNotFoundError, match=message):
        cv.datasets.broden(root)


def test_bad_folders_give_clear_errors(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cv.datasets.broden(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"'plant'.*not in .*category.csv"):
        cv.datasets.broden(folder, categories=["object", "plant"])
    with pytest.raises(ValueError, match="no image in split 'test'"):
        cv.datasets.broden(folder, split="test")
    with pytest.raises(ValueError, match="limit"):
        cv.datasets.broden(folder, limit=0)

    # A column missing from index.csv.
    text = (folder / "index.csv").read_text().splitlines()
    header = text[0].split(",")
    drop = header.index("sh")
    lines = [",".join(v for k, v in enumerate(line.split(",")) if k != drop) for line in text]
    (folder / "index.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"index.csv lacks column\(s\) \['sh'\]"):
        cv.datasets.broden(folder)


def test_missing_images_and_unknown_label_numbers(folder: Path) -> None:
    (folder / "images" / "a_img1_p1b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"a_img1_p1b\.png"):
        cv.datasets.broden(folder)
    ds = cv.datasets.broden(folder, check=False)
    with pytest.raises(FileNotFoundError, match=r"a_img1_p1b\.png"):
        ds.labels(1)
    encode(label_map(3, 301)).save(folder / "images" / "a_img0_o0.png")
    with pytest.raises(ValueError, match=r"a_img0_o0.png holds label number\(s\) \[301\]"):
        ds.labels(0)
    encode(np.zeros((3, 3), dtype=np.int32)).save(folder / "images" / "a_img0_o0.png")
    with pytest.raises(ValueError, match=r"3 x 3 pixels but index\.csv"):
        ds.labels(0)
