"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70,000 real 28 x 28 greyscale photos of clothes.

Read from its four idx files, gzip-compressed or not, with numpy only: no download and no
torchvision. Debian's package ``dataset-fashion-mnist`` installs them in
``/usr/share/datasets/fashion-mnist`` (``make data`` installs it); a torchvision
``FashionMNIST`` folder (``root/FashionMNIST/raw/*-idx*-ubyte[.gz]``) works too.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .files import transformed

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

CLASSES = [
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

# split -> (images file, labels file), without the optional ".gz"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# idx type byte -> numpy dtype (big-endian, as the format stores it)
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """One idx file (LeCun's MNIST format) as an array, e.g. images (N, 28, 28) uint8.

    The file may be gzip-compressed (told by its first bytes, not its name). Header: two zero
    bytes, a type byte, the number of dimensions, then each size as a big-endian uint32.
    Multi-byte values come back in native byte order. A malformed file raises ValueError.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (its header is {raw[:4]!r}).")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    start = 4 + 4 * ndim
    shape = tuple(int(n) for n in np.frombuffer(raw[4:start], dtype=">u4"))
    count = int(np.prod(shape))
    if len(raw) != start + count * dtype.itemsize:
        raise ValueError(
            f"{path} is truncated or corrupt: its header says shape {shape} "
            f"({start + count * dtype.itemsize} bytes) but it has {len(raw)} bytes."
        )
    values = np.frombuffer(raw, dtype=dtype, offset=start, count=count).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a writable copy in native order


def find_files(split: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """The (images, labels) idx files of a split, found in root or in Debian's folder."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    if root is None:
        folders = [DEBIAN_DIR]
    else:
        base = Path(root).expanduser()
        folders = [base / "FashionMNIST" / "raw", base]
    found: list[Path] = []
    for name in FILES[split]:
        candidates = [folder / (name + ext) for folder in folders for ext in ("", ".gz")]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            looked = ", ".join(str(folder) for folder in folders)
            raise FileNotFoundError(
                f"Fashion-MNIST's {split} file {name}[.gz] was not found (looked in {looked}). "
                "Install the data with `sudo apt-get install dataset-fashion-mnist` (or `make "
                "data` in the cnnvis-widget repository), or pass root= a torchvision "
                "FashionMNIST folder (the one holding FashionMNIST/raw/)."
            )
        found.append(match)
    return found[0], found[1]


class FashionMNIST(Dataset[tuple[Any, Any]]):
    """Fashion-MNIST as a torch Dataset; items are ``(PIL image "L" 28 x 28, label int)``.

    Attributes, as torchvision's ``FashionMNIST`` names them: ``data`` uint8 tensor
    (N, 28, 28) of pixel values 0-255 (0 = black background), ``targets`` int64 tensor (N,),
    ``classes`` the 10 class names, ``class_to_idx``. ``transform`` / ``target_transform``
    (optional) are applied to the image / label of each item.
    """

    classes = CLASSES

    def __init__(
        self,
        split: str = "test",
        root: str | Path | None = None,
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        images_file, labels_file = find_files(split, root)
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{images_file} and {labels_file} do not match: images {images.shape}, "
                f"labels {labels.shape}; expected (N, H, W) and (N,)."
            )
        self.split = split
        self.files = (images_file, labels_file)
        self.data = torch.from_numpy(images.astype(np.uint8, copy=False))
        self.targets = torch.from_numpy(labels.astype(np.int64))
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image = Image.fromarray(self.data[index].numpy())  # uint8 (28, 28): mode "L"
        return transformed(self, image, int(self.targets[index]))

    def __repr__(self) -> str:
        return (
            f"FashionMNIST(split={self.split!r}, {len(self)} images, from {self.files[0].parent})"
        )


def fashion_mnist(
    split: str = "test",
    root: str | Path | None = None,
    *,
    transform: Callable[[Image.Image], Any] | None = None,
    target_transform: Callable[[int], Any] | None = None,
) -> FashionMNIST:
    """Fashion-MNIST's test (10,000 images) or train (60,000) split, offline.

    Items are ``(PIL image "L" 28 x 28, label 0-9)``; ``.classes`` names the labels
    ("T-shirt/top", ..., "Ankle boot") and ``.targets`` holds them all. Without ``root`` the
    files come from Debian's ``dataset-fashion-mnist``; with it, from a torchvision
    ``FashionMNIST`` root (``root/FashionMNIST/raw/``) or a folder holding the idx files.
    """
    return FashionMNIST(split, root, transform=transform, target_transform=target_transform)
