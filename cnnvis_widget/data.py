"""Sample photos shipped with scikit-image (offline), under short names."""

from __future__ import annotations

from PIL import Image

SAMPLE_KEY = "cnnvis_sample"

# name -> scikit-image loader name. "camera" is greyscale on purpose.
_SAMPLES: dict[str, str] = {
    "cat": "chelsea",
    "coffee": "coffee",
    "astronaut": "astronaut",
    "rocket": "rocket",
    "camera": "camera",
}


def sample_images() -> list[str]:
    """Names accepted by :func:`sample_image`."""
    return list(_SAMPLES)


def sample_image(name: str = "cat") -> Image.Image:
    """One of scikit-image's photos as a PIL image (RGB, or mode "L" for greyscale ones)."""
    if name not in _SAMPLES:
        raise ValueError(f"unknown sample image {name!r}; choose one of {sample_images()}.")
    import skimage.data

    pixels = getattr(skimage.data, _SAMPLES[name])()
    image = Image.fromarray(pixels)
    image.info[SAMPLE_KEY] = name  # lets the widget's picker show which sample this is
    return image
