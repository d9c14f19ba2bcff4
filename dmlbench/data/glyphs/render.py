"""The embedded offline benchmark: glyphs rendered from matplotlib's fonts.

Classes are Unicode code points (shipped lists, see ``glyph_classes``);
instances are (font, seeded augmentation) pairs. A *part* (``eval`` = the
train + test classes, ``pretrain`` = the backbone's pretraining classes) is
generated once into the cache as a plain image folder plus ``manifest.csv``
(path,label,split — the same CSV a user can give for their own images) and
``fingerprint.json``. The folder name carries the fingerprint, so other fonts
or another generator version never reuse stale images.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dmlbench.atomic import write_json_atomic
from dmlbench.data.glyphs.classes import shipped_class_lists
from dmlbench.data.glyphs.fonts import drawing_fonts, file_sha256, font_files, render_mask
from dmlbench.errors import UserError
from dmlbench.paths import cache_root
from dmlbench.progress import progress

GENERATOR_VERSION = 1
# Fewer covering fonts than this on the installed matplotlib means too little
# variety per class: refuse rather than silently build an easier benchmark.
MIN_FONTS_AT_GENERATION = 6

PARTS = {"eval": ("train", "test"), "pretrain": ("pretrain",), "v1-val": ("val",)}


@dataclass(frozen=True)
class GlyphStyle:
    """Augmentation ranges of one rendered instance."""

    image_size: int = 64
    font_size_frac: float = 0.62
    font_size_jitter: float = 0.15
    max_rotation_deg: float = 15.0
    max_shift_px: float = 4.0
    max_stroke: int = 1
    min_contrast: float = 0.35
    noise_std_max: float = 8.0
    # Added in generator version 1.1; at their defaults they draw nothing and
    # consume no random numbers, so older parts keep their images and ids.
    clutter_strokes: int = 0
    max_occlusion: float = 0.0
    max_blur: float = 0.0


_STYLE_V1_1_DEFAULTS = {"clutter_strokes": 0, "max_occlusion": 0.0, "max_blur": 0.0}


@dataclass(frozen=True)
class GlyphPartConfig:
    part: str
    images_per_class: int
    seed: int = 0
    style: GlyphStyle = GlyphStyle()


def class_name(code_point: int) -> str:
    return f"U+{code_point:04X}"


def render_instance(code_point: int, font: Path, rng: np.random.Generator, style: GlyphStyle):
    """One augmented RGB instance: mask → affine jitter → colours → noise."""
    size = style.image_size
    font_size = round(
        size * style.font_size_frac * (1 + rng.uniform(-1, 1) * style.font_size_jitter)
    )
    stroke = int(rng.integers(0, style.max_stroke + 1))
    mask = Image.fromarray(render_mask(code_point, font, size, font_size, stroke))
    return finish_instance(mask, rng, style)


def finish_instance(mask: Image.Image, rng: np.random.Generator, style: GlyphStyle):
    """A glyph mask → the RGB instance: rotation and shift, optional damage, colours, noise."""
    angle = float(rng.uniform(-style.max_rotation_deg, style.max_rotation_deg))
    shift = rng.uniform(-style.max_shift_px, style.max_shift_px, size=2)
    mask = mask.rotate(angle, resample=Image.BILINEAR, translate=tuple(shift), fillcolor=0)
    if style.clutter_strokes:
        mask = _add_clutter(mask, rng, style.clutter_strokes)
    if style.max_occlusion:
        mask = _occlude(mask, rng, style.max_occlusion)
    if style.max_blur:
        mask = mask.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, style.max_blur))))
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    background = rng.uniform(0, 1, size=3)
    foreground = rng.uniform(0, 1, size=3)
    while abs(foreground.mean() - background.mean()) < style.min_contrast:
        foreground = rng.uniform(0, 1, size=3)
    image = background + alpha * (foreground - background)
    image = image * 255.0 + rng.normal(0, rng.uniform(0, style.noise_std_max), size=image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def _add_clutter(mask: Image.Image, rng: np.random.Generator, strokes: int) -> Image.Image:
    """Thin random lines and arcs in the glyph's colour: the model must tell the
    glyph's own strokes from background structure, as a bird from branches."""
    size = mask.size[0]
    draw = ImageDraw.Draw(mask)
    for _ in range(strokes):
        a, b = rng.uniform(0, size, size=2), rng.uniform(0, size, size=2)
        width = int(rng.integers(1, 3))
        if rng.uniform() < 0.5:
            draw.line([tuple(a), tuple(b)], fill=int(rng.integers(120, 256)), width=width)
        else:
            box = [tuple(np.minimum(a, b)), tuple(np.maximum(a, b) + 4)]
            start = float(rng.uniform(0, 360))
            draw.arc(box, start, start + float(rng.uniform(60, 200)), fill=255, width=width)
    return mask


def _occlude(mask: Image.Image, rng: np.random.Generator, max_fraction: float) -> Image.Image:
    """Blank a random rectangle of up to ``max_fraction`` of the image (partial views)."""
    size = mask.size[0]
    area = rng.uniform(0, max_fraction) * size * size
    aspect = rng.uniform(0.5, 2.0)
    w = int(min(size, round((area * aspect) ** 0.5)))
    h = int(min(size, round((area / aspect) ** 0.5)))
    x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
    if w and h:
        ImageDraw.Draw(mask).rectangle([x, y, x + w - 1, y + h - 1], fill=0)
    return mask


def part_classes(part: str) -> dict[str, list[int]]:
    if part.startswith("v2-"):
        from dmlbench.data.glyphs.classes_v2 import shipped_class_lists_v2
        from dmlbench.data.glyphs.render_v2 import PARTS_V2

        lists = shipped_class_lists_v2()
        return {split: lists[split] for split in PARTS_V2[part]}
    lists = shipped_class_lists()
    return {split: lists[split] for split in PARTS[part]}


def fingerprint(config: GlyphPartConfig) -> dict:
    classes = part_classes(config.part)
    if config.part.startswith("v2-"):  # the font-package benchmark (render_v2)
        from dmlbench.data.glyphs import render_v2

        return {
            "generator_version": 2,
            "config": asdict(config),
            "classes_sha256": render_v2.class_lists_sha256(),
            "fonts": render_v2.part_font_hashes(config.part),
        }
    return {
        "generator_version": GENERATOR_VERSION,
        "config": _config_record(config),
        "classes_sha256": hashlib.sha256(json.dumps(classes).encode()).hexdigest(),
        "fonts": {p.name: file_sha256(p) for p in font_files()},
    }


def _config_record(config: GlyphPartConfig) -> dict:
    """The config as recorded, without style fields left at their version-1.1
    defaults (they change nothing), so fingerprints of older parts stay valid."""
    record = asdict(config)
    for key, default in _STYLE_V1_1_DEFAULTS.items():
        if record["style"][key] == default:
            del record["style"][key]
    return record


def fingerprint_id(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


def _render_class(args) -> list[tuple[str, str, str]]:
    code_point, split, out_dir, config = args
    if config.part.startswith("v2-"):
        from dmlbench.data.glyphs.render_v2 import render_class_v2

        return render_class_v2(code_point, split, out_dir, config)
    fonts = drawing_fonts(code_point)
    if len(fonts) < MIN_FONTS_AT_GENERATION:
        raise UserError(
            f"glyph class {class_name(code_point)} is drawn by only {len(fonts)} of matplotlib's "
            f"fonts (need {MIN_FONTS_AT_GENERATION}); install the matplotlib version named in "
            "the README or pick another dataset"
        )
    cls_dir = Path(out_dir) / class_name(code_point)
    cls_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(config.images_per_class):
        rng = np.random.default_rng([config.seed, code_point, i])
        image = render_instance(code_point, fonts[i % len(fonts)], rng, config.style)
        rel = f"{class_name(code_point)}/{i:03d}.png"
        image.save(Path(out_dir) / rel, optimize=False, compress_level=1)
        rows.append((rel, class_name(code_point), split))
    return rows


def _render_pool(workers: int):
    """A process pool for rendering. Fork where the OS has it: spawn re-imports
    the caller's ``__main__``, so a user script without an ``if __name__ ==
    "__main__"`` guard would run again in every worker. Rendering uses PIL
    and NumPy only, so forking a process that has imported torch is safe."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return context.Pool(workers)


def ensure_part(
    config: GlyphPartConfig, root: Path | None = None, workers: int | None = None
) -> Path:
    """Generate the part once (deterministically) and return its folder."""
    fp = fingerprint(config)
    base = (root or cache_root() / "glyphs") / f"{config.part}-{fingerprint_id(fp)}"
    if (base / "manifest.csv").exists():
        return base
    tmp = base.with_name(f".{base.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    jobs = [
        (cp, split, str(tmp), config)
        for split, cps in part_classes(config.part).items()
        for cp in cps
    ]
    workers = workers or min(2, os.cpu_count() or 1)
    if multiprocessing.parent_process() is not None:
        workers = 1  # already a worker process: never a pool inside a pool
    rows: list[tuple[str, str, str]] = []
    desc = f"rendering glyphs ({config.part})"
    with progress(total=len(jobs) * config.images_per_class, desc=desc, unit="img") as bar:
        if workers > 1:
            with _render_pool(workers) as pool:
                for class_rows in pool.imap(_render_class, jobs, chunksize=8):
                    rows += class_rows
                    bar.update(len(class_rows))
        else:
            for job in jobs:
                class_rows = _render_class(job)
                rows += class_rows
                bar.update(len(class_rows))
    with open(tmp / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    write_json_atomic(tmp / "fingerprint.json", fp)
    try:
        os.replace(tmp, base)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return base
