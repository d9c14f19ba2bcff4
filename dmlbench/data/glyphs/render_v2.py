"""Rendering the glyph benchmark ``glyphs`` from its font families (see families.py).

An instance of a class is drawn in one of the families that cover it (in
turn, so every class sees its families equally often), in the family's
normal or italic face (italic one time in four where the family has it), at
a random weight of a variable face (250–800, within its range), then given
the same jitter, colours and noise as the first glyph benchmark
(:func:`render.finish_instance`). Pretraining images use the 48 pretraining
families only; train / val / test images use all 56, 8 of them unseen.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dmlbench.data.glyphs.classes_v2 import shipped_class_lists_v2
from dmlbench.data.glyphs.families import Face, faces
from dmlbench.data.glyphs.fonts import file_sha256
from dmlbench.data.glyphs.render import GlyphStyle, class_name, finish_instance

PARTS_V2 = {"v2-eval": ("train", "val", "test"), "v2-pretrain": ("pretrain",)}
ITALIC_PROBABILITY = 0.25
WEIGHT_RANGE = (250, 800)
# The same jitter for pretraining and downstream: the downstream style is
# one the pretraining covers (no synthetic damage, unlike glyphs-v1).
STYLE_V2 = GlyphStyle(max_rotation_deg=12.0, max_shift_px=4.0, font_size_jitter=0.15,
                      max_stroke=0)  # fmt: skip


def class_families(code_point: int, part: str) -> list[str]:
    """The families an instance of the class may be drawn in, for this part."""
    lists = shipped_class_lists_v2()
    names = lists["families"]["all"]
    covering = [names[i] for i in lists["covering"][str(code_point)]]
    if part == "v2-pretrain":
        held_out = set(lists["families"]["held_out"])
        covering = [f for f in covering if f not in held_out]
    return covering


def part_font_hashes(part: str) -> dict[str, str]:
    """sha256 of every font file the part may draw from (for its fingerprint)."""
    lists = shipped_class_lists_v2()
    names = lists["families"]["all"]
    if part == "v2-pretrain":
        names = [n for n in names if n not in set(lists["families"]["held_out"])]
    return {f"{face.family}/{face.path.name}": _hash(face.path) for n in names for face in faces(n)}


def _hash(path: Path) -> str:
    return file_sha256(path)


def draw_face(code_point: int, face: Face, canvas: int, font_size: int, weight: float | None):
    font = ImageFont.truetype(str(face.path), font_size)
    if face.weights is not None and weight is not None:
        axes = font.get_variation_axes()
        values = [weight if a["name"] in (b"Weight", "Weight") else a["default"] for a in axes]
        font.set_variation_by_axes(values)
    mask = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(mask).text((canvas / 2, canvas / 2), chr(code_point), fill=255, font=font,
                              anchor="mm")  # fmt: skip
    return mask


def render_instance_v2(code_point: int, family: str, rng: np.random.Generator,
                       style: GlyphStyle = STYLE_V2) -> Image.Image:  # fmt: skip
    family_faces = faces(family)
    italic = [f for f in family_faces if f.style == "italic"]
    normal = [f for f in family_faces if f.style != "italic"] or list(family_faces)
    pool = italic if italic and rng.uniform() < ITALIC_PROBABILITY else normal
    face = pool[int(rng.integers(0, len(pool)))]
    weight = None
    if face.weights is not None:
        low, high = max(face.weights[0], WEIGHT_RANGE[0]), min(face.weights[1], WEIGHT_RANGE[1])
        weight = float(rng.uniform(low, high)) if high > low else float(low)
    size = style.image_size
    font_size = round(
        size * style.font_size_frac * (1 + rng.uniform(-1, 1) * style.font_size_jitter)
    )
    mask = draw_face(code_point, face, size, font_size, weight)
    return finish_instance(mask, rng, style)


def render_class_v2(code_point: int, split: str, out_dir: str, config) -> list[tuple]:
    families = class_families(code_point, config.part)
    cls_dir = Path(out_dir) / class_name(code_point)
    cls_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(config.images_per_class):
        rng = np.random.default_rng([config.seed, code_point, i, 2])
        image = render_instance_v2(code_point, families[i % len(families)], rng, config.style)
        rel = f"{class_name(code_point)}/{i:03d}.png"
        image.save(Path(out_dir) / rel, optimize=False, compress_level=1)
        rows.append((rel, class_name(code_point), split))
    return rows


def class_lists_sha256() -> str:
    lists = shipped_class_lists_v2()
    keys = ("pretrain", "train", "val", "test", "covering", "families")
    return hashlib.sha256(repr([lists[k] for k in keys]).encode()).hexdigest()
