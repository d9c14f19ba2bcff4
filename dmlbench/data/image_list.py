"""The generic image-list dataset: (path, label, split) records.

Every benchmark ends here: the glyph cache writes the same CSV a user gives
for their own images, and the real benchmarks' readers produce the same
records from their index files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dmlbench.errors import UserError
from dmlbench.textfile import read_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
REQUIRED_COLUMNS = ("path", "label", "split")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: str
    split: str


def read_csv_records(csv_path: Path) -> list[ImageRecord]:
    """Records from a CSV with columns path,label,split (paths relative to the CSV)."""
    reader = csv.DictReader(io.StringIO(read_text(csv_path), newline=""))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; "
            "the header must be path,label,split"
        )
    records = []
    for line, row in enumerate(reader, start=2):
        empty = [c for c in REQUIRED_COLUMNS if not (row.get(c) or "").strip()]
        if empty:
            raise UserError(f"{csv_path} line {line}: no {empty[0]}; every row needs "
                            "path,label,split")  # fmt: skip
        records.append(ImageRecord(csv_path.parent / row["path"], row["label"],
                                   row["split"].strip()))  # fmt: skip
    return records


def read_class_folders(root: Path, train_fraction: float = 0.5) -> list[ImageRecord]:
    """One sub-folder per class; the first half of the sorted classes train, the rest test.

    The split is class-disjoint, as DML evaluation on unseen classes requires
    (CUB's convention: classes 1-100 train, 101-200 test).
    """
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"{root}: need at least 2 class sub-folders, found {len(classes)}")
    n_train = max(1, min(len(classes) - 1, round(len(classes) * train_fraction)))
    records = []
    for i, cls_dir in enumerate(classes):
        split = "train" if i < n_train else "test"
        for path in sorted(cls_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                records.append(ImageRecord(path, cls_dir.name, split))
    return records


def load_rgb(path: Path) -> Image.Image:
    """Decode an image to 8-bit RGB (see :func:`to_rgb`)."""
    with Image.open(path) as im:
        return to_rgb(im)


class LossyImageMode(ValueError):
    """An image mode that no conversion to 8-bit RGB keeps faithfully."""


_AS_RGB = {"1", "L", "RGB", "CMYK", "YCbCr"}  # PIL's conversion keeps what they show
_WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB that shows what the image shows. PIL's ``convert("RGB")`` is wrong
    for two kinds of images that real datasets hold: it drops alpha (transparent
    pixels turn to whatever colour they store, often black), and it clips 16-bit
    grayscale at 255 (most of the image turns white). Here transparent images are
    composited over white, 16-bit ones scaled to 8 bits; modes with no faithful 8-bit
    RGB form (32-bit float, ...) raise :class:`LossyImageMode`."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in _AS_RGB:
        return im.convert("RGB")
    if mode in _WITH_ALPHA:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(im, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise LossyImageMode(f"32-bit integer image with values {values.min()}..{values.max()}")
        scaled = (values * 255 + 32767) // 65535  # 0..65535 → 0..255, rounded
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    raise LossyImageMode(f"image mode {mode} has no faithful 8-bit RGB form")


class ImageListDataset(torch.utils.data.Dataset):
    """Images of some records with labels mapped to 0..C-1 in sorted label order."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable | None = None,
        classes: Sequence[str] | None = None,
    ):
        """``classes``: the label space when several sets must share it (a query set
        and its gallery); default: this set's own labels."""
        self.records = list(records)
        self.classes = sorted({r.label for r in self.records}) if classes is None else list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        self.targets = [index[r.label] for r in self.records]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]):
        """``key`` is an index, or ``(index, seed)`` from a resumable sampler: the
        augmentation then depends on the seed only, not on which worker or
        rank loads the image nor on where a run was resumed."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        image = load_rgb(self.records[i].path)
        if self.transform is not None:
            if seed is None:
                image = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    image = self.transform(image)
        return image, self.targets[i]
