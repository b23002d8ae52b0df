"""cv.datasets: real image data read offline (Debian packages installed by `make data`)."""

from __future__ import annotations

import ast
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnvis_widget as cv
from cnnvis_widget.datasets import fashion as fashion_module
from cnnvis_widget.datasets import photo_sources as photos_module

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@pytest.fixture(scope="module")
def fashion_test() -> cv.datasets.FashionMNIST:
    return cv.datasets.fashion_mnist("test")


@pytest.fixture(scope="module")
def photo_set() -> cv.datasets.Photos:
    return cv.datasets.photos()


def _raw_idx(name: str, header: int) -> np.ndarray:
    """The payload of one of Debian's idx files, read without the package's parser."""
    with gzip.open(FASHION_DIR / f"{name}.gz", "rb") as file:
        return np.frombuffer(file.read()[header:], dtype=np.uint8)


# Fashion-MNIST


def test_fashion_test_split(fashion_test: cv.datasets.FashionMNIST) -> None:
    assert len(fashion_test) == 10_000
    assert fashion_test.classes == FASHION_CLASSES
    assert fashion_test.data.shape == (10_000, 28, 28)
    assert fashion_test.data.dtype == torch.uint8
    assert torch.bincount(fashion_test.targets).tolist() == [1000] * 10
    image, label = fashion_test[0]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (28, 28)
    assert isinstance(label, int) and label == 9  # the first test image is an ankle boot


def test_fashion_pixels_match_raw_bytes(fashion_test: cv.datasets.FashionMNIST) -> None:
    pixels = _raw_idx("t10k-images-idx3-ubyte", 16)  # header: magic + 3 sizes
    labels = _raw_idx("t10k-labels-idx1-ubyte", 8)
    assert pixels.size == 10_000 * 28 * 28
    # Fashion-MNIST's test set: mean pixel 0.2868 of 255 (the published normalization value)
    assert pixels.mean() == pytest.approx(73.1466, abs=1e-4)
    assert fashion_test.data.double().mean().item() == pytest.approx(pixels.mean(), abs=1e-9)
    assert np.array_equal(fashion_test.targets.numpy(), labels)
    last = np.asarray(fashion_test[9999][0])
    assert np.array_equal(last, pixels[-784:].reshape(28, 28))


def test_fashion_train_split() -> None:
    train = cv.datasets.fashion_mnist(split="train")
    assert len(train) == 60_000
    assert torch.bincount(train.targets).tolist() == [6000] * 10
    assert train.data.double().mean().item() / 255 == pytest.approx(0.2860, abs=1e-4)


def test_fashion_from_torchvision_root(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    # one file gzip-compressed (a link to Debian's), one plain, as torchvision leaves them
    (raw / "t10k-images-idx3-ubyte.gz").symlink_to(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    labels = gzip.decompress((FASHION_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(labels)
    data = cv.datasets.fashion_mnist("test", root=tmp_path, transform=np.asarray)
    assert len(data) == 10_000
    image, label = data[3]
    assert image.shape == (28, 28) and label == int(labels[8 + 3])


def test_fashion_missing_files_name_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match="root=") as error:
        cv.datasets.fashion_mnist("test", root=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(error.value)
    assert "make data" in str(error.value)
    monkeypatch.setattr(fashion_module, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        cv.datasets.fashion_mnist("train")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        cv.datasets.fashion_mnist("validation")


def test_read_idx_refuses_bad_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an idx file")
    with pytest.raises(ValueError, match="not an idx file"):
        cv.datasets.read_idx(text)
    truncated = tmp_path / "labels-idx1-ubyte"
    truncated.write_bytes(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + bytes(5))
    with pytest.raises(ValueError, match="truncated"):
        cv.datasets.read_idx(truncated)
    good = tmp_path / "good-idx2-ubyte"
    good.write_bytes(
        b"\x00\x00\x0b\x02" + (2).to_bytes(4, "big") * 2 + bytes([0, 1, 0, 2, 1, 0, 255, 255])
    )
    assert cv.datasets.read_idx(good).tolist() == [[1, 2], [256, -1]]  # big-endian int16


# Photos


def test_photos_are_real_labelled_rgb_images(photo_set: cv.datasets.Photos) -> None:
    assert len(photo_set) >= 200
    assert len(photo_set.paths) == len(photo_set.targets) == len(photo_set.names) == len(photo_set)
    assert set(photo_set.sources) == {"tuxpaint", "opencv", "mate", "skimage"}
    assert {"animal/bird", "animal/mammal", "food/fruit", "plant/flower", "vehicle/land"} <= set(
        photo_set.classes
    )
    assert sorted(set(photo_set.targets)) == list(range(len(photo_set.classes)))  # all used
    for index in range(len(photo_set)):
        image, label = photo_set[index]
        assert isinstance(image, Image.Image) and image.mode == "RGB", photo_set.paths[index]
        assert min(image.size) >= 32, photo_set.paths[index]
        assert 0 <= label < len(photo_set.classes)
        assert photo_set.paths[index].is_file()


def test_photo_cutouts_have_masks(photo_set: cv.datasets.Photos) -> None:
    tiger = photo_set.names.index("tiger")
    assert photo_set.classes[photo_set.targets[tiger]] == "animal/mammal"
    assert photo_set.has_mask[tiger]
    image, mask = photo_set.load(tiger)
    assert mask is not None and mask.mode == "L" and mask.size == image.size
    assert image.size[0] == image.size[1]  # padded to a square
    alpha, pixels = np.asarray(mask), np.asarray(image)
    assert 0.05 < (alpha > 127).mean() < 0.95
    assert (pixels[alpha == 0] == 255).all()  # composited on white
    photo = photo_set.names.index("chelsea")
    assert photo_set.mask(photo) is None and not photo_set.has_mask[photo]
    assert photo_set.classes[photo_set.targets[photo]] == "animal/mammal"
    assert sum(photo_set.has_mask) == photo_set.sources.count("tuxpaint") >= 200


def test_photos_bad_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown photo sources"):
        cv.datasets.photos(sources=["imagenet"])
    assert len(cv.datasets.photos(sources=["skimage"])) == 4
    with pytest.raises(ValueError, match="no photo source"):
        cv.datasets.photos(sources=[])
    monkeypatch.setitem(photos_module.SKIMAGE_PHOTOS, "missing.png", "person")
    with pytest.raises(FileNotFoundError, match=r"missing\.png.*pip install --force-reinstall"):
        cv.datasets.photos(sources="skimage")
    monkeypatch.delitem(photos_module.SKIMAGE_PHOTOS, "missing.png")
    # every hand-picked exclusion and listed photo names a file the packages install
    assert all((photos_module.STAMPS_DIR / name).is_file() for name in photos_module.STAMP_EXCLUDED)
    assert set(photos_module.STAMP_OVERRIDES) <= {
        p.relative_to(photos_module.STAMPS_DIR).as_posix()
        for p in cv.datasets.photos("tuxpaint").paths
    }
    monkeypatch.setattr(photos_module, "STAMPS_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="apt-get install tuxpaint-stamps-default"):
        cv.datasets.photos()


# Your own image files


def _save(
    path: Path, colour: tuple[int, ...], mode: str = "RGB", size: tuple[int, int] = (20, 12)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    _save(tmp_path / "dogs" / "b.jpg", (200, 10, 10))
    _save(tmp_path / "dogs" / "more" / "c.png", (10,), mode="L")
    _save(tmp_path / "cats" / "a.png", (0, 0, 0, 0), mode="RGBA")  # fully transparent
    (tmp_path / "cats" / "README.txt").write_text("ignored: not an image extension")
    _save(tmp_path / ".ipynb_checkpoints" / "x.png", (0, 0, 0))  # hidden: ignored
    data = cv.datasets.image_folder(tmp_path)
    assert data.classes == ["cats", "dogs"]
    assert [p.name for p in data.paths] == ["a.png", "b.jpg", "c.png"]
    assert data.targets == [0, 1, 1]
    image, label = data[0]
    assert image.mode == "RGB" and label == 0
    assert np.asarray(image).min() == 255  # transparent -> white
    mask = data.mask(0)
    assert mask is not None and np.asarray(mask).max() == 0
    assert data.mask(1) is None and data[2][0].mode == "RGB"
    loader = torch.utils.data.DataLoader(
        cv.datasets.image_folder(
            tmp_path, transform=lambda im: torch.tensor(np.asarray(im.resize((8, 8))))
        ),
        batch_size=3,
    )
    images, labels = next(iter(loader))
    assert images.shape == (3, 8, 8, 3) and labels.tolist() == [0, 1, 1]


def test_flat_image_folder_is_unlabelled(tmp_path: Path) -> None:
    _save(tmp_path / "one.png", (1, 2, 3))
    _save(tmp_path / "two.PNG", (4, 5, 6))
    data = cv.datasets.image_folder(tmp_path)
    assert data.classes == [] and data.targets == [-1, -1]
    assert data[1][1] == -1


def test_image_folder_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cv.datasets.image_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no images"):
        cv.datasets.image_folder(empty)
    (empty / "cats").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*cats has no images"):
        cv.datasets.image_folder(empty)
    mixed = tmp_path / "mixed"
    _save(mixed / "cats" / "a.png", (0, 0, 0))
    _save(mixed / "loose.png", (0, 0, 0))
    with pytest.raises(ValueError, match="both class sub-folders"):
        cv.datasets.image_folder(mixed)
    fake = tmp_path / "fake"
    _save(fake / "cats" / "a.png", (0, 0, 0))
    (fake / "cats" / "notes.jpg").write_text("a text file with an image extension")
    with pytest.raises(ValueError, match=r"notes\.jpg is not an image"):
        cv.datasets.image_folder(fake)
    with pytest.raises(NotADirectoryError, match="image_files"):
        cv.datasets.image_folder(fake / "cats" / "a.png")


def test_image_files(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.png", (255, 0, 0))
    b = _save(tmp_path / "b.jpg", (0, 255, 0), size=(7, 9))
    data = cv.datasets.image_files([a, str(b)], labels=[1, 0])
    assert data.classes == ["0", "1"] and data.targets == [1, 0]
    assert data[1][0].size == (7, 9)
    named = cv.datasets.image_files([a, b], labels=[0, 1], classes=["red", "green"])
    assert named.classes[named[0][1]] == "red"
    assert cv.datasets.image_files([a]).targets == [-1]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt is not an image"):
        cv.datasets.image_files([a, text])
    with pytest.raises(FileNotFoundError, match=r"gone\.png does not exist"):
        cv.datasets.image_files([tmp_path / "gone.png"])
    with pytest.raises(TypeError, match="image_folder"):
        cv.datasets.image_files(str(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one each"):
        cv.datasets.image_files([a, b], labels=[0])
    with pytest.raises(TypeError, match="integers"):
        cv.datasets.image_files([a], labels=[0.5])  # type: ignore[list-item]
    assert cv.datasets.image_files([a, b], labels=torch.tensor([1, 0])).targets == [1, 0]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        cv.datasets.image_files([a], labels=[2], classes=["x", "y"])
    with pytest.raises(ValueError, match="empty"):
        cv.datasets.image_files([])


def test_truncated_image_names_the_file_when_read(tmp_path: Path) -> None:
    good = _save(tmp_path / "big.png", (9, 9, 9), size=(300, 300))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:80])  # the header survives, the pixels do not
    data = cv.datasets.image_files([cut])
    with pytest.raises(ValueError, match=r"cannot read image .*cut\.png"):
        data[0]


def test_datasets_not_imported_with_the_package() -> None:
    # Statically (a fresh interpreter costs seconds): no module outside cnnvis_widget/datasets
    # imports it at module level, so `import cnnvis_widget` leaves it out until cv.datasets is
    # first used (an import inside a function, as the command line's, runs only when called).
    package = Path(cv.__file__).parent
    for module in package.rglob("*.py"):
        if "datasets" in module.relative_to(package).parts:
            continue
        tree = ast.parse(module.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(alias.name for alias in node.names)]
                assert not any(name.endswith("datasets") for name in names), module
    assert cv.datasets.fashion_mnist is not None  # the lazy attribute
