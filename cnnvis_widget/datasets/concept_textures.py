"""Textures for the concept set's ``texture`` category: real swatches from GIMP's patterns
(Debian ``gimp-data``) and procedural stripes, checkers and dots.

- :func:`read_gimp_pattern` reads a GIMP ``.pat`` file (format version 1): a big-endian
  header (header size, version, width, height, bytes per pixel, magic ``GPAT``, then the
  pattern's UTF-8 name, NUL-terminated), followed by ``height * width * bytes`` pixel bytes
  (1 = grey, 2 = grey + alpha, 3 = RGB, 4 = RGBA), row by row.
- :data:`GIMP_TEXTURES`: texture concept -> the pattern files that show it (by looking at every
  pattern of gimp-data 2.10.34; files relative to :data:`GIMP_PATTERNS_DIR`).
- :data:`PROCEDURAL_TEXTURES` ("striped", "checkered", "dotted"): drawn by
  :func:`procedural_texture` at several periods and orientations, in two random colours.
- :func:`tile` repeats a swatch over an (H, W) canvas from an offset, optionally rescaled.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GIMP_PATTERNS_DIR = Path("/usr/share/gimp/2.0/patterns")
GIMP_PACKAGE = "gimp-data"

# concept -> GIMP pattern files (relative to GIMP_PATTERNS_DIR); names after the Describable
# Textures Dataset's terms where one fits (spotted, woven, crinkled, marbled, cracked, swirly).
GIMP_TEXTURES: dict[str, tuple[str, ...]] = {
    "wood": (
        "Wood/wood1.pat",
        "Wood/wood3.pat",
        "Wood/wood4.pat",
        "Wood/wood5.pat",
        "Wood/walnut.pat",
        "Wood/burlwood.pat",
    ),
    "parquet": ("Wood/parque1.pat", "Wood/parque2.pat", "Wood/parque3.pat"),
    "bark": ("Wood/bark.pat",),
    "cork": ("Wood/corkboard.pat",),
    "marbled": (
        "Stone/marble1.pat",
        "Stone/marble2.pat",
        "Stone/marble3.pat",
        "Stone/pink_marble.pat",
        "Stone/granite1.pat",
    ),
    "brick": ("Stone/brick.pat",),
    "stone wall": ("Stone/rock.pat", "Stone/stone33.pat"),
    "cracked": ("Stone/ground1.pat", "Stone/cracked.pat"),
    "leather": ("Animal/leather.pat",),
    "spotted": ("Animal/leopard.pat",),
    "woven": ("Fabric/burlap.pat",),
    "crinkled": ("Paper/crinklepaper.pat",),
    "foliage": ("Plant/leaves.pat",),
    "cloudy sky": ("Sky/sky.pat",),
    "water": ("Water/pool.pat", "Water/electric.pat"),
    "swirly": ("Food/choc_swirl.pat", "Legacy/pastel.pat"),
}

PROCEDURAL_TEXTURES = ("striped", "checkered", "dotted")
PERIODS = (6, 10, 16, 24, 36)  # px at 224 x 224: stripes' and checks' period, dots' spacing
ANGLES = (0.0, 30.0, 45.0, 60.0, 90.0, 120.0, 135.0, 150.0)  # degrees


def read_gimp_pattern(path: str | Path) -> tuple[str, np.ndarray]:
    """A GIMP ``.pat`` file's name and pixels: (H, W, C) uint8, C = 1 (grey), 2 (grey + alpha),
    3 (RGB) or 4 (RGBA). A file that is not a GIMP pattern raises ValueError naming it."""
    file = Path(path)
    data = file.read_bytes()
    if len(data) < 24:
        raise ValueError(f"{file} is not a GIMP pattern: only {len(data)} bytes.")
    header_size, version, width, height, depth = struct.unpack(">5I", data[:20])
    if data[20:24] != b"GPAT" or version != 1 or header_size < 24 or header_size > len(data):
        raise ValueError(
            f"{file} is not a GIMP pattern (version 1, magic 'GPAT'): magic {data[20:24]!r}, "
            f"version {version}, header size {header_size}."
        )
    if not 1 <= depth <= 4 or width < 1 or height < 1:
        raise ValueError(f"{file}: bad GIMP pattern size {width} x {height} x {depth}.")
    size = width * height * depth
    if len(data) < header_size + size:
        raise ValueError(
            f"{file} is truncated: {len(data) - header_size} pixel bytes, {size} expected."
        )
    name = data[24:header_size].split(b"\0", 1)[0].decode("utf-8", errors="replace")
    pixels = np.frombuffer(data, np.uint8, size, header_size).reshape(height, width, depth)
    return name, pixels.copy()


def pattern_rgb(pixels: np.ndarray) -> np.ndarray:
    """A pattern's pixels (H, W, C) as (H, W, 3) uint8 RGB (grey repeated; alpha composited on
    white)."""
    depth = pixels.shape[2]
    colour = pixels[..., :1].repeat(3, axis=2) if depth <= 2 else pixels[..., :3]
    if depth in (2, 4):
        alpha = pixels[..., -1:].astype(np.float64) / 255.0
        blended = colour * alpha + 255.0 * (1.0 - alpha)
        return np.rint(blended).astype(np.uint8)
    return np.ascontiguousarray(colour)


def tile(
    swatch: np.ndarray, size: tuple[int, int], offset: tuple[int, int], scale: float
) -> np.ndarray:
    """``swatch`` (h, w, 3) uint8, resized by ``scale`` (bicubic) and repeated to fill (H, W)
    = ``size`` starting ``offset`` = (dy, dx) px into it -> (H, W, 3) uint8."""
    if scale != 1.0:
        height, width = swatch.shape[:2]
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        swatch = np.asarray(Image.fromarray(swatch).resize(new, Image.Resampling.BICUBIC))
    h, w = swatch.shape[:2]
    rows = np.arange(size[0]) + offset[0]
    cols = np.arange(size[1]) + offset[1]
    return swatch[(rows % h)[:, None], (cols % w)[None, :]]


def procedural_texture(
    kind: str,
    size: tuple[int, int],
    *,
    period: float,
    angle: float,
    phase: tuple[float, float],
    colors: tuple[tuple[int, int, int], tuple[int, int, int]] | list[list[int]],
) -> np.ndarray:
    """A two-colour texture (H, W, 3) uint8 over ``size`` = (H, W): ``"striped"`` (bands of width
    period / 2), ``"checkered"`` (squares of side period / 2) or ``"dotted"`` (discs of radius
    0.3 x period on a square grid of spacing period); rotated by ``angle`` degrees, shifted by
    ``phase`` (fractions of a period). Pixels are either colour, no anti-aliasing."""
    if kind not in PROCEDURAL_TEXTURES:
        raise ValueError(
            f"unknown procedural texture {kind!r}; choose among {PROCEDURAL_TEXTURES}."
        )
    ys, xs = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float64)
    theta = np.deg2rad(angle)
    u = (xs * np.cos(theta) + ys * np.sin(theta)) / period + phase[0]
    v = (-xs * np.sin(theta) + ys * np.cos(theta)) / period + phase[1]
    if kind == "striped":
        on = np.floor(2.0 * u) % 2 == 0
    elif kind == "checkered":
        on = (np.floor(2.0 * u) + np.floor(2.0 * v)) % 2 == 0
    else:
        du = u - np.floor(u) - 0.5
        dv = v - np.floor(v) - 0.5
        on = du**2 + dv**2 < 0.3**2
    first, second = (np.array(c, dtype=np.uint8) for c in colors)
    return np.where(on[..., None], first, second)


def contrasting_colors(rng: np.random.Generator) -> list[list[int]]:
    """Two random sRGB colours [[r, g, b], [r, g, b]] whose mean channel values differ by
    >= 80 (of 255)."""
    while True:
        pair = rng.integers(0, 256, size=(2, 3))
        if abs(int(pair[0].sum()) - int(pair[1].sum())) >= 240:
            return [[int(c) for c in colour] for colour in pair]


def procedural_params(rng: np.random.Generator) -> dict[str, Any]:
    """Random parameters of :func:`procedural_texture` (JSON-serialisable)."""
    colors = contrasting_colors(rng)
    return {
        "period": float(PERIODS[int(rng.integers(len(PERIODS)))]),
        "angle": float(ANGLES[int(rng.integers(len(ANGLES)))]),
        "phase": [float(rng.random()), float(rng.random())],
        "colors": colors,
    }
