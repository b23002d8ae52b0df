"""Turn whatever a user hands us (PIL, numpy, tensor, path, bytes) into an RGB PIL image."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Image.Image | np.ndarray | torch.Tensor | str | Path | bytes

_SUPPORTED = (
    "a PIL image, a numpy array (H, W), (H, W, 3) or (H, W, 4), a tensor (3, H, W) in [0, 1], "
    "a file path or the file's bytes"
)


def to_pil_rgb(source: ImageSource, *, name: str | None = None) -> Image.Image:
    """Convert an image in any supported form to an RGB PIL image.

    Greyscale is replicated to three channels; RGBA / LA / palette images with transparency are
    composited over white. Float arrays and tensors must be in [0, 1]; uint8 is taken as 0..255.
    Raises ``ValueError`` naming the problem and the accepted forms.
    """
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(
                f"image file not found: {path}. Pass an existing path or {_SUPPORTED}."
            )
        return _decode(path.read_bytes(), name or path.name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source), name or "uploaded file")
    if isinstance(source, torch.Tensor):
        tensor = source.detach().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        return _array_to_rgb(tensor.numpy())
    if isinstance(source, np.ndarray):
        array = source
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)
        return _array_to_rgb(array)
    raise TypeError(f"cannot use a {type(source).__name__} as an image; pass {_SUPPORTED}.")


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        image.load()
        image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    except Image.DecompressionBombError as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels"
        raise ValueError(
            f"{name} is too large to open safely: {size}, over PIL's limit of "
            f"{Image.MAX_IMAGE_PIXELS:,} (a possible decompression bomb). Use a smaller image "
            "(downscale it first), or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from error
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"{name} is not an image this tool can read ({error.__class__.__name__}). "
            "Use a PNG, JPEG, GIF, BMP, TIFF or WebP file."
        ) from error
    return _pil_to_rgb(image)


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        span = float(array.max() - array.min()) or 1.0
        return _array_to_rgb(((array - array.min()) / span).astype(np.float32))
    return image.convert("RGB")


def _array_to_rgb(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            f"image array has shape {tuple(array.shape)}; expected (H, W), (H, W, 3) or (H, W, 4)."
        )
    if min(array.shape[:2]) < 1:
        raise ValueError(f"image array has an empty side: shape {tuple(array.shape)}.")
    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(
                "image array contains NaN or infinity; pass finite pixels in [0, 1] (clean "
                "them with np.nan_to_num) or uint8 in 0..255."
            )
        low, high = float(array.min()), float(array.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(
                f"float image values span [{low:.3g}, {high:.3g}]; expected [0, 1]. "
                "Divide 0..255 data by 255 or pass it as uint8."
            )
        pixels = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        if array.min() < 0 or array.max() > 255:
            raise ValueError("integer image values must lie in 0..255.")
        pixels = array.astype(np.uint8) * (255 if array.dtype == np.bool_ else 1)
    else:
        raise ValueError(f"unsupported image dtype {array.dtype}; use uint8 or float in [0, 1].")
    # fromarray infers L / RGB / RGBA from the shape of a uint8 array.
    return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(pixels)))


def image_sheet(
    images: torch.Tensor | list[torch.Tensor], columns: int = 8, padding: int = 2
) -> Image.Image:
    """[0, 1] images (K, 3, H, W), or a list of such batches of one size, side by side
    (``columns`` per row, white ``padding`` px between) as one PIL image, for a notebook."""
    batch = torch.cat(list(images)) if isinstance(images, list) else images
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected images (K, 3, H, W); got {tuple(batch.shape)}.")
    batch = batch.detach().float().clamp(0, 1).cpu()
    count, _, height, width = batch.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    sheet = torch.ones(
        3, rows * (height + padding) - padding, columns * (width + padding) - padding
    )
    for index in range(count):
        top = (index // columns) * (height + padding)
        left = (index % columns) * (width + padding)
        sheet[:, top : top + height, left : left + width] = batch[index]
    pixels = (sheet * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(pixels)
