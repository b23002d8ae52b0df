"""Images in every accepted form become the same RGB picture; bad input says what is wrong."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import cnnvis_widget as cv
from cnnvis_widget.images import to_pil_rgb


def test_sample_images_are_listed_and_load() -> None:
    names = cv.sample_images()
    assert {"cat", "coffee"} <= set(names)
    for name in names:
        image = cv.sample_image(name)
        assert isinstance(image, Image.Image) and min(image.size) > 100
    assert cv.sample_image("camera").mode == "L"


def test_unknown_sample_lists_names() -> None:
    with pytest.raises(ValueError, match="coffee"):
        cv.sample_image("dog")


def test_all_forms_give_the_same_pixels(tmp_path) -> None:
    rgb = np.asarray(cv.sample_image("coffee").resize((40, 30)))
    path = tmp_path / "coffee.png"
    Image.fromarray(rgb).save(path)
    forms = [
        Image.fromarray(rgb),
        rgb,
        rgb.astype(np.float32) / 255,
        torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255,
        str(path),
        path,
        path.read_bytes(),
    ]
    for form in forms:
        assert np.array_equal(np.asarray(to_pil_rgb(form)), rgb), type(form)


def test_greyscale_and_rgba() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = np.asarray(to_pil_rgb(grey))
    assert (
        out.shape == (3, 4, 3)
        and np.array_equal(out[..., 0], grey)
        and np.array_equal(out[..., 2], grey)
    )
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque pixel keeps its colour; transparent ones become white
    out = np.asarray(to_pil_rgb(rgba))
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[1, 1]) == (255, 255, 255)


def test_preprocess_accepts_any_size_and_mode(lite0) -> None:
    for image in [
        Image.new("RGB", (31, 500)),
        Image.new("L", (1000, 40)),
        Image.new("RGBA", (224, 224)),
        np.zeros((7, 9), dtype=np.uint8),
    ]:
        assert lite0.preprocess(image).shape == (1, 3, 224, 224)


def test_preprocess_normalizes_unit_tensors(lite0) -> None:
    unit = torch.rand(2, 3, 50, 60)
    x = lite0.preprocess(unit)
    assert x.shape == unit.shape
    assert torch.allclose(lite0.preprocess.denormalize(x), unit, atol=1e-6)
    assert torch.allclose(lite0.preprocess(unit[0]), x[:1])


def test_bad_inputs_name_the_problem(tmp_path) -> None:
    with pytest.raises(ValueError, match="not an image"):
        to_pil_rgb(b"this is a text file, not a picture", name="notes.txt")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_pil_rgb(np.full((4, 4, 3), 3.0))
    with pytest.raises(ValueError, match="shape"):
        to_pil_rgb(np.zeros((5, 5, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="not found"):
        to_pil_rgb(tmp_path / "missing.png")
    with pytest.raises(TypeError, match="cannot use"):
        to_pil_rgb(42)  # type: ignore[arg-type]


def test_truncated_file_is_rejected() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    with pytest.raises(ValueError, match="not an image"):
        to_pil_rgb(buffer.getvalue()[:60], name="broken.png")


def test_exif_rotation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert to_pil_rgb(buffer.getvalue()).size == (20, 40)


def test_extreme_aspect_ratio_is_cropped_not_blown_up(lite0) -> None:
    strip = Image.new("RGB", (20000, 2), "white")
    crop = lite0.preprocess.crop(strip)
    assert crop.size == (224, 224)


def test_preprocess_rejects_0_255_tensors(lite0) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lite0.preprocess(torch.rand(3, 8, 8) * 255)
