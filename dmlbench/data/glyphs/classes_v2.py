"""Choosing the classes of the glyph benchmark ``glyphs`` (a maintainer step, run once).

The regime it is built for is ImageNet-21k → CUB: the pretraining data covers
the downstream domain broadly (ImageNet holds many bird classes), the
downstream classes are new and fine-grained (200 bird species), so the
frozen features are nearly right and the methods compete on adapting them.
Here:

* downstream (train, val, test: 100 classes each) are accented Latin letters
  (à á â ã ä å ā ă ą …; canonical decompositions of a base letter and
  diacritics): classes that differ by a small mark on a shape the backbone
  knows;
* pretraining sees the base letters (Latin, Greek, Cyrillic), digits,
  punctuation and symbols, and the accented letters not used downstream, so
  its features attend to diacritics in general, as ImageNet's features to
  birds;
* a class is kept only if at least ``min_families`` of the 56 families draw
  it; code points whose renderings coincide in any family (Latin A, Greek
  Alpha, Cyrillic A; Đ and Ð) are merged into the lowest one.

The lists are shipped in ``dmlbench/assets/glyph_classes_v2.json``, never
recomputed at run time (``tools/make_glyph_classes.py --v2`` writes them).
"""

from __future__ import annotations

import json
import random
import unicodedata
from functools import cache
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dmlbench.data.glyphs.families import Face, faces, family_names
from dmlbench.data.glyphs.fonts import cmap_code_points

CLASS_LIST_VERSION = 2
PRINTABLE_CATEGORIES = ("L", "N", "P", "S")


def is_accented_latin(code_point: int) -> bool:
    """A Latin letter with a canonical decomposition (base letter + diacritics)."""
    ch = chr(code_point)
    decomposition = unicodedata.decomposition(ch)
    return (
        unicodedata.category(ch).startswith("L")
        and "LATIN" in unicodedata.name(ch, "")
        and bool(decomposition)
        and not decomposition.startswith("<")
    )


def normal_face(slug: str) -> Face:
    return next((f for f in faces(slug) if f.style == "normal"), faces(slug)[0])


@cache
def _font(face: Face, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(face.path), size)


def face_mask(code_point: int, face: Face, canvas: int, weight: float | None = None):
    """The glyph at the canvas centre (as :func:`fonts.render_mask`), default axes
    unless ``weight``; uint8 coverage."""
    font = _font(face, int(canvas * 0.6))
    if face.weights is not None:
        axes = font.get_variation_axes()
        values = [a["default"] for a in axes]
        if weight is not None:
            for i, axis in enumerate(axes):
                if axis["name"] in (b"Weight", "Weight"):
                    values[i] = weight
        font.set_variation_by_axes(values)
    mask = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(mask).text((canvas / 2, canvas / 2), chr(code_point), fill=255, font=font,
                              anchor="mm")  # fmt: skip
    return np.asarray(mask)


def covering_families(code_point: int, families: list[str]) -> list[str]:
    """Families whose normal face maps the code point and draws something for it."""
    return [
        s
        for s in families
        if code_point in cmap_code_points(normal_face(s).path)
        and face_mask(code_point, normal_face(s), 32).max() > 0
    ]


def homoglyphs(candidates: dict[int, list[str]], canvas: int = 48) -> list[list[int]]:
    """Groups of code points rendered identically by at least one family (union-find)."""
    parent = {cp: cp for cp in candidates}

    def find(cp: int) -> int:
        while parent[cp] != cp:
            parent[cp] = parent[parent[cp]]
            cp = parent[cp]
        return cp

    for slug in family_names():
        seen: dict[bytes, int] = {}
        for cp, families in candidates.items():
            if slug not in families:
                continue
            key = face_mask(cp, normal_face(slug), canvas).tobytes()
            if key in seen:
                a, b = find(seen[key]), find(cp)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                seen[key] = cp
    groups: dict[int, list[int]] = {}
    for cp in candidates:
        groups.setdefault(find(cp), []).append(cp)
    return [sorted(g) for g in groups.values()]


def build_class_lists_v2(
    min_families: int = 35, min_pretrain_families: int = 20, per_split: int = 100, seed: int = 0
) -> dict:
    families = family_names()
    union: set[int] = set()
    for slug in families:
        union |= cmap_code_points(normal_face(slug).path)
    candidates: dict[int, list[str]] = {}
    for cp in sorted(union):
        if unicodedata.category(chr(cp))[0] not in PRINTABLE_CATEGORIES:
            continue
        covering = covering_families(cp, families)
        needed = min_families if is_accented_latin(cp) else min_pretrain_families
        if len(covering) >= needed:
            candidates[cp] = covering
    groups = homoglyphs(candidates)
    kept = sorted(g[0] for g in groups)
    merged = {g[0]: g[1:] for g in groups if len(g) > 1}
    accented = [cp for cp in kept if is_accented_latin(cp)]
    rng = random.Random(seed)
    rng.shuffle(accented)
    train, val, test = (sorted(accented[i * per_split : (i + 1) * per_split]) for i in range(3))
    downstream = set(train) | set(val) | set(test)
    pretrain = sorted(cp for cp in kept if cp not in downstream)
    return {
        "version": CLASS_LIST_VERSION,
        "seed": seed,
        "min_families": min_families,
        "min_pretrain_families": min_pretrain_families,
        "candidates": len(candidates),
        "families": {"all": families, "held_out": family_names(False)},
        "dropped_homoglyphs": {str(k): v for k, v in sorted(merged.items())},
        "pretrain": pretrain,
        "train": train,
        "val": val,
        "test": test,
        # which families draw each class, as indices into families["all"]
        "covering": {str(cp): [families.index(f) for f in candidates[cp]] for cp in kept},
    }


def shipped_class_lists_v2() -> dict:
    text = resources.files("dmlbench.assets").joinpath("glyph_classes_v2.json").read_text()
    return json.loads(text)
