"""Choosing the glyph benchmark's classes (a maintainer step, run once).

The three class lists (pretrain / train / test) are shipped as data in
``dmlbench/assets/glyph_classes.json``. They must not be recomputed from the
installed fonts at run time: a different matplotlib could then move a test
class into the pretraining set of the shipped backbone (a leakage trap).
``tools/make_glyph_classes.py`` calls :func:`build_class_lists`.
"""

from __future__ import annotations

import json
import random
import unicodedata
from importlib import resources

from dmlbench.data.glyphs.fonts import cmap_code_points, drawing_fonts, font_files, render_mask

PRINTABLE_CATEGORIES = ("L", "N", "P", "S")
CLASS_LIST_VERSION = 1


def candidate_code_points(min_fonts: int) -> dict[int, list]:
    """Printable code points (categories L, N, P, S) drawn by ≥ ``min_fonts`` fonts."""
    union: set[int] = set()
    for path in font_files():
        union |= cmap_code_points(path)
    out = {}
    for cp in sorted(union):
        if unicodedata.category(chr(cp))[0] not in PRINTABLE_CATEGORIES:
            continue
        fonts = drawing_fonts(cp)
        if len(fonts) >= min_fonts:
            out[cp] = fonts
    return out


def homoglyph_groups(candidates: dict[int, list], canvas: int = 48) -> list[list[int]]:
    """Groups of code points whose renderings coincide in at least one font.

    Renderings are compared bit for bit, per font, at a fixed size and anchor;
    union-find joins any two code points identical in any font that draws both
    (Latin A, Greek Alpha and Cyrillic A in DejaVu Sans, say).
    """
    parent = {cp: cp for cp in candidates}

    def find(cp: int) -> int:
        while parent[cp] != cp:
            parent[cp] = parent[parent[cp]]
            cp = parent[cp]
        return cp

    for path in font_files():
        seen: dict[bytes, int] = {}
        for cp, fonts in candidates.items():
            if path not in fonts:
                continue
            key = render_mask(cp, path, canvas, int(canvas * 0.6)).tobytes()
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


def build_class_lists(
    min_fonts: int = 10, n_train: int = 100, n_test: int = 100, seed: int = 0
) -> dict:
    candidates = candidate_code_points(min_fonts)
    groups = homoglyph_groups(candidates)
    # Keep one code point per homoglyph group (the lowest), drop the others.
    kept = sorted(g[0] for g in groups)
    merged = {g[0]: g[1:] for g in groups if len(g) > 1}
    rng = random.Random(seed)
    order = kept[:]
    rng.shuffle(order)
    test, train, pretrain = (
        order[:n_test],
        order[n_test : n_test + n_train],
        order[n_test + n_train :],
    )
    return {
        "version": CLASS_LIST_VERSION,
        "seed": seed,
        "min_fonts": min_fonts,
        "candidates": len(candidates),
        "dropped_homoglyphs": {str(k): v for k, v in sorted(merged.items())},
        "pretrain": sorted(pretrain),
        "train": sorted(train),
        "test": sorted(test),
        "val": validation_classes(sorted(pretrain), seed=seed),
        "val_note": VAL_NOTE,
    }


PRETRAINED_ON = 1000  # the shipped glyphs-v1 backbone used the first 1000 pretrain classes
VAL_NOTE = (
    "100 of the pretrain classes the shipped glyphs-v1 backbone never saw (it used the "
    "first 1000 by label), drawn with seed 0"
)


def validation_classes(pretrain: list[int], count: int = 100, seed: int = 0) -> list[int]:
    """Validation classes of glyphs-v1 (added after its backbone was made): classes of
    the pretrain list beyond the ones the backbone was pretrained on. They come from
    the later Unicode blocks (the pretrained ones are the first by code point)."""
    labels = sorted(f"U+{cp:04X}" for cp in pretrain)
    seen = set(labels[:PRETRAINED_ON])
    unseen = sorted(cp for cp in pretrain if f"U+{cp:04X}" not in seen)
    return sorted(random.Random(seed).sample(unseen, count))


def shipped_class_lists() -> dict:
    text = resources.files("dmlbench.assets").joinpath("glyph_classes.json").read_text()
    return json.loads(text)
