"""Image files on disk as a torch Dataset: a list of paths, or a folder (sub-folders = labels).

Like torchvision's ``ImageFolder`` without needing torchvision. Items are
``(PIL image RGB, label int)``; images with transparency are composited on white and their alpha
channel is kept as a mask (``dataset.mask(i)``).

Unreadable files are errors, never skipped: every file is opened (its header read) when the
dataset is built, and a file that is not an image raises ``ValueError`` naming it; a file
whose pixels fail to decode later names it too. In a folder, only files with an image
extension (:data:`IMAGE_EXTENSIONS`) are taken; other files (notes, label files) and hidden
files and folders (".name") are ignored.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pbm",
    ".pgm",
    ".png",
    ".pnm",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)

_BACKGROUND = (255, 255, 255)


def check_image_file(path: Path) -> None:
    """Raise a clear error unless path is a file PIL recognizes as an image (header only)."""
    if not path.exists():
        raise FileNotFoundError(f"image file {path} does not exist.")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; pass image files (or use image_folder).")
    try:
        with Image.open(path):  # reads the header only
            pass
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"{path} is not an image PIL can read ({error}). Remove it or convert it to PNG/JPEG."
        ) from error


def open_rgb(path: Path) -> tuple[Image.Image, Image.Image | None]:
    """The image at path as RGB (transparency composited on white) and its alpha ("L") or None.

    Decoding errors name the file.
    """
    try:
        with Image.open(path) as image:
            image.load()
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            if not has_alpha:
                return image.convert("RGB"), None
            rgba = image.convert("RGBA")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    alpha = rgba.getchannel("A")
    canvas = Image.new("RGB", rgba.size, _BACKGROUND)
    canvas.paste(rgba, mask=alpha)
    return canvas, alpha


def _label(value: object) -> int:
    """A label as an int (numpy and 0-d torch integers too); bools and floats are refused."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"labels must be integers (class indices, -1 for none); got {value!r}."
        ) from None


def transformed(dataset: Any, image: Any, label: int) -> tuple[Any, Any]:
    """(image, label) through the dataset's ``transform`` / ``target_transform`` when set."""
    if dataset.transform is not None:
        image = dataset.transform(image)
    if dataset.target_transform is not None:
        return image, dataset.target_transform(label)
    return image, label


class ImageFiles(Dataset[tuple[Any, Any]]):
    """Image files with integer labels; items are ``(PIL image RGB, label int)``.

    Attributes: ``paths`` (list of Path), ``targets`` (list of int; -1 = no label),
    ``classes`` (label names, ``classes[label]``; empty when unlabelled), ``class_to_idx``.
    ``mask(i)`` gives the alpha channel of a transparent image as a PIL "L" image
    (255 = object), or None. ``transform`` / ``target_transform`` (optional) are applied to
    each item's image / label. Images keep their own size.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        targets: Sequence[int],
        classes: Sequence[str],
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        check: bool = True,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"got {len(paths)} paths but {len(targets)} labels; give one each.")
        self.paths = [Path(p) for p in paths]
        self.targets = [_label(t) for t in targets]
        self.classes = list(classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        for label in self.targets:
            if label != -1 and not 0 <= label < len(self.classes):
                raise ValueError(
                    f"label {label} is out of range: there are {len(self.classes)} classes "
                    "(use -1 for no label)."
                )
        if check:
            for path in self.paths:
                check_image_file(path)
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        """Item index's image (RGB) and its alpha mask ("L", same size) or None."""
        return open_rgb(self.paths[index])

    def mask(self, index: int) -> Image.Image | None:
        """The alpha mask ("L", 255 = object) of item index, aligned with its image, or None."""
        return self.load(index)[1]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return transformed(self, self.load(index)[0], self.targets[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes)"


def image_files(
    paths: Sequence[str | Path],
    labels: Sequence[int] | None = None,
    *,
    classes: Sequence[str] | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
    target_transform: Callable[[int], Any] | None = None,
) -> ImageFiles:
    """A dataset of the given image files, in that order, with labels (default: -1, none).

    ``classes`` names the labels (default: "0", "1", ... up to the largest label). Every file
    must exist and be an image: otherwise FileNotFoundError / ValueError naming it.
    """
    if isinstance(paths, (str, Path)):
        raise TypeError("paths must be a list of image files; for a folder use image_folder(path).")
    if len(paths) == 0:
        raise ValueError("paths is empty; pass at least one image file.")
    targets = [-1] * len(paths) if labels is None else [_label(t) for t in labels]
    if classes is None:
        top = max(targets, default=-1)
        classes = [str(i) for i in range(top + 1)]
    return ImageFiles(
        paths, targets, classes, transform=transform, target_transform=target_transform
    )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _images_under(folder: Path, recursive: bool) -> list[Path]:
    """Image files (by extension) in folder, sorted; hidden files and folders left out."""
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in entries
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def image_folder(
    path: str | Path,
    *,
    transform: Callable[[Image.Image], Any] | None = None,
    target_transform: Callable[[int], Any] | None = None,
) -> ImageFiles:
    """The images in a folder; its sub-folders, if any, are the labels.

    ``root/cat/1.jpg, root/dog/a/2.png`` -> classes ``["cat", "dog"]`` (sub-folder names,
    sorted), each sub-folder's images searched recursively. A flat folder (images, no
    sub-folders) gives unlabelled items (label -1, no classes). Errors name the folder or file:
    a missing folder, a folder (or class sub-folder) without images, images beside class
    sub-folders (ambiguous), a file with an image extension that is not an image.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist.")
    if not root.is_dir():
        raise NotADirectoryError(
            f"{root} is not a folder; for single files use image_files([path])."
        )
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    top_images = _images_under(root, recursive=False)
    if not subfolders:
        if not top_images:
            raise ValueError(
                f"image folder {root} has no images (looked for {', '.join(IMAGE_EXTENSIONS)})."
            )
        return ImageFiles(
            top_images,
            [-1] * len(top_images),
            [],
            transform=transform,
            target_transform=target_transform,
        )
    if top_images:
        raise ValueError(
            f"image folder {root} has both class sub-folders ({', '.join(p.name for p in subfolders[:5])}) "
            f"and images directly in it ({top_images[0].name}, ...). Move the images into a "
            "sub-folder (their class), or pass the files with image_files(paths)."
        )
    paths: list[Path] = []
    targets: list[int] = []
    for label, folder in enumerate(subfolders):
        found = _images_under(folder, recursive=True)
        if not found:
            raise ValueError(
                f"class folder {folder} has no images; remove it or add its images "
                f"(extensions {', '.join(IMAGE_EXTENSIONS)})."
            )
        paths += found
        targets += [label] * len(found)
    return ImageFiles(
        paths,
        targets,
        [p.name for p in subfolders],
        transform=transform,
        target_transform=target_transform,
    )
