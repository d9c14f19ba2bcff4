"""The TrueType fonts matplotlib ships, and which code points each one draws.

Only matplotlib's bundled fonts are used (never system fonts), so the glyph
benchmark renders the same on every machine with the same matplotlib fonts;
the fingerprint records their hashes so a change is visible.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
from pathlib import Path

import matplotlib
import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

# LastResort draws a placeholder box for every code point: it would "cover" all.
# The TeX fonts cmex10/cmsy10 and STIX's size variants and non-Unicode alternates
# map ordinary code points to unrelated glyphs (a big delimiter in the "$" slot),
# so their renderings would be wrong instances of a class.
EXCLUDED_FONT_PATTERNS = ("LastResort*", "cmex10*", "cmsy10*", "STIXSiz*", "STIXNonUni*")


def font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def font_files() -> tuple[Path, ...]:
    return tuple(
        p
        for p in sorted(font_dir().glob("*.ttf"))
        if not any(fnmatch.fnmatch(p.name, pat) for pat in EXCLUDED_FONT_PATTERNS)
    )


@functools.cache
def cmap_code_points(font_path: Path) -> frozenset[int]:
    with TTFont(str(font_path), lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


@functools.cache
def load_font(font_path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path), size)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_mask(
    code_point: int, font_path: Path, canvas: int, font_size: int, stroke: int = 0
) -> np.ndarray:
    """Anti-aliased coverage mask (uint8, canvas × canvas) of one glyph.

    The glyph is anchored at the canvas centre by its font's ascender/descender
    middle ("mm"), not by its own bounding box, so size and vertical position
    stay meaningful ("," and "'" differ, "o" and "O" differ).
    """
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    draw.text(
        (canvas / 2, canvas / 2),
        chr(code_point),
        fill=255,
        font=load_font(font_path, font_size),
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    return np.asarray(mask)


def drawing_fonts(code_point: int, canvas: int = 32) -> list[Path]:
    """Fonts whose cmap has the code point *and* that draw something for it."""
    fonts = []
    for path in font_files():
        if (
            code_point in cmap_code_points(path)
            and render_mask(code_point, path, canvas, int(canvas * 0.6)).max() > 0
        ):
            fonts.append(path)
    return fonts
