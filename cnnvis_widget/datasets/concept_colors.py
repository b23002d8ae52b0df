"""Colour naming for the concept set's ``color`` category: every pixel gets one of the 11 basic
colour terms of English (Berlin & Kay 1969) by its nearest prototype in CIELab.

Prototypes (:data:`PROTOTYPES`, 202 of them, several per term):

- 193 ISCC-NBS centroid colours (Kelly & Judd, "Color: Universal Language and Dictionary of
  Names", NBS Special Publication 440, 1976), as sRGB by A. Jaffer's "NBS/ISCC Centroids"
  dictionary (the values CPAN's Color::Library ships). A centroid is given the basic term of
  its ISCC-NBS hue noun (the last word: "Strong Purplish Blue" -> blue; violet -> purple,
  gray -> grey); kept: the neutrals (every "... White", "... Gray", "... Black") and the
  chromatic centroids whose modifier is vivid, brilliant, strong, deep, very deep, moderate,
  light, very light, dark or very dark. Left out: olive hues (no basic term), the grayish and
  pale ones (between a hue and grey, so they would pull greys to a hue) and "Deep Yellowish
  Pink" (its centroid, #e66721, is an orange to the eye).
- 9 display anchors, the saturated corners of the sRGB gamut, named as CSS Color 4 names them:
  red #ff0000, green #00ff00 ("lime"), blue #0000ff, yellow #ffff00, and cyan #00ffff as blue;
  and the first four at 3/4 intensity (#bf0000, #00bf00, #0000bf, #bfbf00).
  The ISCC-NBS centroids lie inside the gamut of surface colours, so without them a display's
  pure red (CIELab hue 40 degrees) is nearer "vivid reddish orange" than "vivid red" and pure
  blue nearer "vivid violet".

sRGB -> CIELab: IEC 61966-2-1 sRGB transfer function, the sRGB -> XYZ matrix, D65 white
(0.95047, 1, 1.08883), CIE 1976 L*a*b*. Distance: Euclidean in CIELab (CIE76).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

COLOR_TERMS = (
    "black",
    "blue",
    "brown",
    "grey",
    "green",
    "orange",
    "pink",
    "purple",
    "red",
    "white",
    "yellow",
)

# (name, sRGB hex, basic term)
PROTOTYPES: tuple[tuple[str, str, str], ...] = (
    ("Black", "#222222", "black"),
    ("Bluish Black", "#202428", "black"),
    ("Bluish Gray", "#81878b", "grey"),
    ("Bluish White", "#e9e9ed", "white"),
    ("Brilliant Blue", "#4997d0", "blue"),
    ("Brilliant Bluish Green", "#00a693", "green"),
    ("Brilliant Greenish Blue", "#239eba", "blue"),
    ("Brilliant Greenish Yellow", "#e9e450", "yellow"),
    ("Brilliant Green", "#3eb489", "green"),
    ("Brilliant Orange Yellow", "#ffc14f", "yellow"),
    ("Brilliant Orange", "#fd943f", "orange"),
    ("Brilliant Purple", "#d399e6", "purple"),
    ("Brilliant Purplish Blue", "#6c79b8", "blue"),
    ("Brilliant Purplish Pink", "#ffc8d6", "pink"),
    ("Brilliant Violet", "#7e73b8", "purple"),
    ("Brilliant Yellow Green", "#bdda57", "green"),
    ("Brilliant Yellowish Green", "#83d37d", "green"),
    ("Brilliant Yellow", "#fada5e", "yellow"),
    ("Brownish Black", "#28201c", "black"),
    ("Brownish Gray", "#5b504f", "grey"),
    ("Dark Blue", "#00304e", "blue"),
    ("Dark Bluish Gray", "#51585e", "grey"),
    ("Dark Bluish Green", "#004b49", "green"),
    ("Dark Brown", "#422518", "brown"),
    ("Dark Gray", "#555555", "grey"),
    ("Dark Greenish Blue", "#004958", "blue"),
    ("Dark Greenish Gray", "#4e5755", "grey"),
    ("Dark Greenish Yellow", "#98943e", "yellow"),
    ("Dark Green", "#1b4d3e", "green"),
    ("Dark Orange Yellow", "#be8a3d", "yellow"),
    ("Dark Pink", "#c08081", "pink"),
    ("Dark Purple", "#563c5c", "purple"),
    ("Dark Purplish Blue", "#252440", "blue"),
    ("Dark Purplish Gray", "#5d555b", "grey"),
    ("Dark Purplish Pink", "#c17e91", "pink"),
    ("Dark Purplish Red", "#673147", "red"),
    ("Dark Reddish Brown", "#3e1d1e", "brown"),
    ("Dark Reddish Gray", "#5c504f", "grey"),
    ("Dark Reddish Orange", "#9e4732", "orange"),
    ("Dark Reddish Purple", "#5d3954", "purple"),
    ("Dark Red", "#722f37", "red"),
    ("Dark Violet", "#2f2140", "purple"),
    ("Dark Yellowish Brown", "#4b3621", "brown"),
    ("Dark Yellowish Green", "#355e3b", "green"),
    ("Dark Yellowish Pink", "#c48379", "pink"),
    ("Dark Yellow", "#ab9144", "yellow"),
    ("Deep Blue", "#00416a", "blue"),
    ("Deep Bluish Green", "#00443f", "green"),
    ("Deep Brown", "#593319", "brown"),
    ("Deep Greenish Blue", "#2e8495", "blue"),
    ("Deep Greenish Yellow", "#9b9400", "yellow"),
    ("Deep Green", "#00543d", "green"),
    ("Deep Orange Yellow", "#c98500", "yellow"),
    ("Deep Orange", "#be6516", "orange"),
    ("Deep Pink", "#e4717a", "pink"),
    ("Deep Purple", "#602f6b", "purple"),
    ("Deep Purplish Blue", "#272458", "blue"),
    ("Deep Purplish Pink", "#de6fa1", "pink"),
    ("Deep Purplish Red", "#78184a", "red"),
    ("Deep Reddish Brown", "#56070c", "brown"),
    ("Deep Reddish Orange", "#aa381e", "orange"),
    ("Deep Reddish Purple", "#702963", "purple"),
    ("Deep Red", "#841b2d", "red"),
    ("Deep Violet", "#32174d", "purple"),
    ("Deep Yellow Green", "#467129", "green"),
    ("Deep Yellowish Brown", "#654522", "brown"),
    ("Deep Yellowish Green", "#00622d", "green"),
    ("Deep Yellow", "#af8d13", "yellow"),
    ("Greenish Black", "#1e2321", "black"),
    ("Greenish Gray", "#7d8984", "grey"),
    ("Greenish White", "#dfede8", "white"),
    ("Light Blue", "#70a3cc", "blue"),
    ("Light Bluish Gray", "#b4bcc0", "grey"),
    ("Light Bluish Green", "#66ada4", "green"),
    ("Light Brownish Gray", "#8e8279", "grey"),
    ("Light Brown", "#a67b5b", "brown"),
    ("Light Gray", "#b9b8b5", "grey"),
    ("Light Greenish Blue", "#66aabc", "blue"),
    ("Light Greenish Gray", "#b2beb5", "grey"),
    ("Light Greenish Yellow", "#eae679", "yellow"),
    ("Light Green", "#6aab8e", "green"),
    ("Light Orange Yellow", "#fbc97f", "yellow"),
    ("Light Orange", "#fab57f", "orange"),
    ("Light Pink", "#f9ccca", "pink"),
    ("Light Purple", "#b695c0", "purple"),
    ("Light Purplish Blue", "#8791bf", "blue"),
    ("Light Purplish Gray", "#bfb9bd", "grey"),
    ("Light Purplish Pink", "#efbbcc", "pink"),
    ("Light Reddish Brown", "#a87c6d", "brown"),
    ("Light Reddish Purple", "#b784a7", "purple"),
    ("Light Violet", "#8c82b6", "purple"),
    ("Light Yellow Green", "#c9dc89", "green"),
    ("Light Yellowish Brown", "#c19a6b", "brown"),
    ("Light Yellowish Green", "#93c592", "green"),
    ("Light Yellowish Pink", "#f4c2c2", "pink"),
    ("Light Yellow", "#f8de7e", "yellow"),
    ("Medium Gray", "#848482", "grey"),
    ("Moderate Blue", "#436b95", "blue"),
    ("Moderate Bluish Green", "#317873", "green"),
    ("Moderate Brown", "#6f4e37", "brown"),
    ("Moderate Greenish Blue", "#367588", "blue"),
    ("Moderate Greenish Yellow", "#b9b459", "yellow"),
    ("Moderate Green", "#3b7861", "green"),
    ("Moderate Orange Yellow", "#e3a857", "yellow"),
    ("Moderate Orange", "#d99058", "orange"),
    ("Moderate Pink", "#dea5a4", "pink"),
    ("Moderate Purple", "#86608e", "purple"),
    ("Moderate Purplish Blue", "#4e5180", "blue"),
    ("Moderate Purplish Pink", "#d597ae", "pink"),
    ("Moderate Purplish Red", "#a8516e", "red"),
    ("Moderate Reddish Brown", "#79443b", "brown"),
    ("Moderate Reddish Orange", "#cb6d51", "orange"),
    ("Moderate Reddish Purple", "#915c83", "purple"),
    ("Moderate Red", "#ab4e52", "red"),
    ("Moderate Violet", "#604e81", "purple"),
    ("Moderate Yellow Green", "#8a9a5b", "green"),
    ("Moderate Yellowish Brown", "#826644", "brown"),
    ("Moderate Yellowish Green", "#679267", "green"),
    ("Moderate Yellowish Pink", "#d9a6a9", "pink"),
    ("Moderate Yellow", "#c9ae5d", "yellow"),
    ("Pinkish Gray", "#c1b6b3", "grey"),
    ("Pinkish White", "#eae3e1", "white"),
    ("Purplish Black", "#242124", "black"),
    ("Purplish Gray", "#8b8589", "grey"),
    ("Purplish White", "#e8e3e5", "white"),
    ("Reddish Black", "#282022", "black"),
    ("Reddish Gray", "#8f817f", "grey"),
    ("Strong Blue", "#0067a5", "blue"),
    ("Strong Bluish Green", "#007a74", "green"),
    ("Strong Brown", "#80461b", "brown"),
    ("Strong Greenish Blue", "#007791", "blue"),
    ("Strong Greenish Yellow", "#beb72e", "yellow"),
    ("Strong Green", "#007959", "green"),
    ("Strong Orange Yellow", "#eaa221", "yellow"),
    ("Strong Orange", "#ed872d", "orange"),
    ("Strong Pink", "#ea9399", "pink"),
    ("Strong Purple", "#875692", "purple"),
    ("Strong Purplish Blue", "#545aa7", "blue"),
    ("Strong Purplish Pink", "#e68fac", "pink"),
    ("Strong Purplish Red", "#b3446c", "red"),
    ("Strong Reddish Brown", "#882d17", "brown"),
    ("Strong Reddish Orange", "#d9603b", "orange"),
    ("Strong Reddish Purple", "#9e4f88", "purple"),
    ("Strong Red", "#bc3f4a", "red"),
    ("Strong Violet", "#604e97", "purple"),
    ("Strong Yellow Green", "#7e9f2e", "green"),
    ("Strong Yellowish Brown", "#996515", "brown"),
    ("Strong Yellowish Green", "#44944a", "green"),
    ("Strong Yellowish Pink", "#f99379", "pink"),
    ("Strong Yellow", "#d4af37", "yellow"),
    ("Very Dark Bluish Green", "#002a29", "green"),
    ("Very Dark Greenish Blue", "#002e3b", "blue"),
    ("Very Dark Green", "#1c352d", "green"),
    ("Very Dark Purple", "#301934", "purple"),
    ("Very Dark Purplish Red", "#38152c", "red"),
    ("Very Dark Reddish Purple", "#341731", "purple"),
    ("Very Dark Red", "#3f1728", "red"),
    ("Very Dark Yellowish Green", "#173620", "green"),
    ("Very Deep Purple", "#401a4c", "purple"),
    ("Very Deep Purplish Red", "#54133b", "red"),
    ("Very Deep Reddish Purple", "#54194e", "purple"),
    ("Very Deep Red", "#5c0923", "red"),
    ("Very Deep Yellowish Green", "#003118", "green"),
    ("Very Light Blue", "#a1caf1", "blue"),
    ("Very Light Bluish Green", "#96ded1", "green"),
    ("Very Light Greenish Blue", "#9cd1dc", "blue"),
    ("Very Light Green", "#8ed1b2", "green"),
    ("Very Light Purple", "#d5badb", "purple"),
    ("Very Light Purplish Blue", "#b3bce2", "blue"),
    ("Very Light Violet", "#dcd0ff", "purple"),
    ("Very Light Yellowish Green", "#b6e5af", "green"),
    ("Vivid Blue", "#00a1c2", "blue"),
    ("Vivid Bluish Green", "#008882", "green"),
    ("Vivid Greenish Blue", "#0085a1", "blue"),
    ("Vivid Greenish Yellow", "#dcd300", "yellow"),
    ("Vivid Green", "#008856", "green"),
    ("Vivid Orange Yellow", "#f6a600", "yellow"),
    ("Vivid Orange", "#f38400", "orange"),
    ("Vivid Pink", "#ffb5ba", "pink"),
    ("Vivid Purple", "#9a4eae", "purple"),
    ("Vivid Purplish Blue", "#30267a", "blue"),
    ("Vivid Purplish Red", "#ce4676", "red"),
    ("Vivid Reddish Orange", "#e25822", "orange"),
    ("Vivid Reddish Purple", "#870074", "purple"),
    ("Vivid Red", "#be0032", "red"),
    ("Vivid Violet", "#9065ca", "purple"),
    ("Vivid Yellow Green", "#8db600", "green"),
    ("Vivid Yellowish Green", "#27a64c", "green"),
    ("Vivid Yellowish Pink", "#ffb7a5", "pink"),
    ("Vivid Yellow", "#f3c300", "yellow"),
    ("White", "#f2f3f4", "white"),
    ("Yellowish Gray", "#bfb8a5", "grey"),
    ("Yellowish White", "#f0ead6", "white"),
    ("sRGB red", "#ff0000", "red"),
    ("sRGB green (CSS lime)", "#00ff00", "green"),
    ("sRGB blue", "#0000ff", "blue"),
    ("sRGB yellow", "#ffff00", "yellow"),
    ("sRGB cyan", "#00ffff", "blue"),
    ("sRGB red at 3/4", "#bf0000", "red"),
    ("sRGB green at 3/4", "#00bf00", "green"),
    ("sRGB blue at 3/4", "#0000bf", "blue"),
    ("sRGB yellow at 3/4", "#bfbf00", "yellow"),
)

_D65 = np.array([0.95047, 1.0, 1.08883])
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)


def _linearize(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function inverted: 0-1 encoded values -> linear light."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_LINEAR = _linearize(np.arange(256) / 255.0)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELab (D65) of sRGB colours: ``rgb`` (..., 3) uint8 (0-255) or float (0-1) -> (..., 3)
    float64 (L* 0-100, a*, b*)."""
    values = np.asarray(rgb)
    if values.shape[-1:] != (3,):
        raise ValueError(f"srgb_to_lab: expected (..., 3) colours, got shape {values.shape}.")
    uint8 = values.dtype == np.uint8
    linear = _LINEAR[values] if uint8 else _linearize(values.astype(np.float64))
    xyz = linear @ _SRGB_TO_XYZ.T / _D65
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    return np.stack(
        [
            116.0 * f[..., 1] - 16.0,
            500.0 * (f[..., 0] - f[..., 1]),
            200.0 * (f[..., 1] - f[..., 2]),
        ],
        axis=-1,
    )


def _hex_rgb(code: str) -> tuple[int, int, int]:
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


PROTOTYPE_LAB = srgb_to_lab(np.array([_hex_rgb(h) for _, h, _ in PROTOTYPES], dtype=np.uint8))
PROTOTYPE_TERM = np.array([COLOR_TERMS.index(term) for _, _, term in PROTOTYPES], dtype=np.int64)


def name_colors(rgb: np.ndarray) -> np.ndarray:
    """Each pixel's basic colour term: ``rgb`` (H, W, 3) uint8 sRGB -> (H, W) int64 index into
    :data:`COLOR_TERMS` (nearest prototype in CIELab)."""
    values = np.asarray(rgb)
    if values.ndim != 3 or values.shape[2] != 3 or values.dtype != np.uint8:
        raise ValueError(
            f"name_colors: expected an (H, W, 3) uint8 RGB array, got {values.dtype} {values.shape}."
        )
    pixels = values.reshape(-1, 3).astype(np.int32)
    keys = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]
    table = _term_table()
    terms = table[keys]
    missing = terms < 0
    if missing.any():
        new = np.unique(keys[missing])
        colours = np.stack([new >> 16, (new >> 8) & 255, new & 255], axis=1).astype(np.uint8)
        nearest = _prototype_tree().query(srgb_to_lab(colours), k=1)[1]
        table[new] = PROTOTYPE_TERM[nearest]
        terms = table[keys]
    return terms.astype(np.int64).reshape(values.shape[:2])


@functools.cache
def _term_table() -> np.ndarray:
    """(2**24,) int8: the term of each 24-bit sRGB colour named so far in this process, -1 for
    the others (filled as colours are met: same answers, named once)."""
    return np.full(1 << 24, -1, dtype=np.int8)


@functools.cache
def _prototype_tree() -> Any:
    """A k-d tree of the prototypes' CIELab coordinates (exact nearest-neighbour queries)."""
    from scipy.spatial import cKDTree

    return cKDTree(PROTOTYPE_LAB)
