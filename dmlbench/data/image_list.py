"""The generic image-list dataset: (path, label, split) records.

Every benchmark ends here: the glyph cache writes the same CSV a user gives
for their own images, and the real benchmarks' readers produce the same
records from their index files.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from dmlbench.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
REQUIRED_COLUMNS = ("path", "label", "split")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: str
    split: str


def read_csv_records(csv_path: Path) -> list[ImageRecord]:
    """Records from a CSV with columns path,label,split (paths relative to the CSV)."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(
                    f"{csv_path}: missing column(s) {', '.join(missing)}; "
                    "the header must be path,label,split"
                )
            rows = list(reader)
    except OSError as e:
        raise UserError(f"{csv_path}: cannot read ({e.strerror})") from None
    base = csv_path.parent
    return [ImageRecord(base / r["path"], r["label"], r["split"].strip()) for r in rows]


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
    """Decode any mode (grayscale, CMYK, palette, alpha) to RGB."""
    with Image.open(path) as im:
        return im.convert("RGB")


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
