"""Which images of a dataset cannot be decoded, found before training starts.

A bad JPEG otherwise surfaces as a crash in a data-loader worker hours into
a run. The check decodes every file; JPEGs at 1/8 scale (PIL's draft mode),
which reads the whole entropy-coded stream (so truncation shows) at a
fraction of the cost. Results are remembered per index file, so a dataset is
scanned once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from dmlbench.atomic import write_json_atomic
from dmlbench.data.image_list import ImageRecord, LossyImageMode, to_rgb
from dmlbench.paths import cache_root
from dmlbench.progress import progress as progress_bar


def decode_error(path: Path, full: bool = True) -> str | None:
    """None if the image decodes, else why not (one line)."""
    try:
        with Image.open(path) as im:
            if not full:
                im.draft("RGB", (im.width // 8 or 1, im.height // 8 or 1))
            im.load()
            to_rgb(im)
        return None
    except LossyImageMode as e:
        return f"{e}; save it as 8-bit RGB (or grayscale)"
    except Exception as e:  # PIL raises many types for broken files
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()


def find_bad_images(
    records: Sequence[ImageRecord], full: bool = True, progress: bool = True
) -> list[tuple[Path, str]]:
    bad = []
    for record in progress_bar(records, desc="checking images", unit="img", disable=not progress):
        error = decode_error(record.path, full)
        if error is not None:
            bad.append((record.path, error))
    return bad


def scan_memo_path(index_file: Path) -> Path:
    stat = index_file.stat()
    key = f"{index_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return cache_root() / "verified" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def bad_images_cached(
    records: Sequence[ImageRecord], index_file: Path, progress: bool = True
) -> list[tuple[Path, str]]:
    """find_bad_images (fast mode), remembered until the index file changes."""
    memo = scan_memo_path(index_file)
    if memo.is_file():
        saved = json.loads(memo.read_text())
        if saved.get("images") == len(records):
            return [(Path(p), why) for p, why in saved["bad"]]
    bad = find_bad_images(records, full=False, progress=progress)
    write_json_atomic(memo, {"images": len(records), "bad": [[str(p), w] for p, w in bad]})
    return bad
