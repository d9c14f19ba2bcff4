"""An optional cache of downsized copies, so a CPU epoch does not decode full-size JPEGs.

Each image is stored once with its shorter side at ``side`` pixels (never
upscaled), as a JPEG of quality 95, under ``<cache>/images/<key>/``
mirroring the original relative paths. The train and test transforms crop
and resize to at most ~256 px anyway, so at side 256 the cached copies give
the same inputs up to JPEG re-encoding.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PIL import Image

from dmlbench.atomic import atomic_path
from dmlbench.data.image_list import ImageRecord, load_rgb
from dmlbench.paths import cache_root
from dmlbench.progress import progress as progress_bar


def _common_root(records: Sequence[ImageRecord]) -> Path:
    return Path(os.path.commonpath([str(r.path.parent) for r in records]))


def resized_copy(source: Path, target: Path, side: int) -> None:
    image = load_rgb(source)
    scale = side / min(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    with atomic_path(target) as partial:
        image.save(partial, format="JPEG", quality=95)


def cached_records(
    records: Sequence[ImageRecord], side: int = 256, progress: bool = True
) -> list[ImageRecord]:
    """The same records pointing at downsized copies (made now where missing)."""
    if not records:
        return []
    root = _common_root(records)
    key = hashlib.sha1(f"{root.resolve()}:{side}".encode()).hexdigest()[:16]
    folder = cache_root() / "images" / key
    out, missing = [], []
    for record in records:
        target = (folder / record.path.relative_to(root)).with_suffix(".jpg")
        out.append(replace(record, path=target))
        if not target.is_file():
            missing.append((record.path, target))
    for source, target in progress_bar(
        missing, desc="caching images", unit="img", disable=not progress
    ):
        resized_copy(source, target, side)
    return out
