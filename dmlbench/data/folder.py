"""A user's own images: ``folder:DIR`` (one sub-folder per class) or ``folder:FILE.csv``."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from dmlbench.data.image_list import ImageRecord, read_class_folders, read_csv_records
from dmlbench.data.spec import DatasetSpec, register_dataset_prefix
from dmlbench.errors import UserError


class FolderDataset(DatasetSpec):
    description = (
        "your images: folder:DIR (class sub-folders) or folder:FILE.csv (path,label,split)"
    )

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.name = f"folder:{path}"

    @cached_property
    def _records(self) -> list[ImageRecord]:
        if not self.path.exists():
            raise UserError(f"dataset folder:{self.path}: no such file or directory")
        if self.path.is_file():
            records = read_csv_records(self.path)
        else:
            records = read_class_folders(self.path)
        splits = {r.split for r in records}
        for needed in (self.train_split, *self.eval_splits):
            if needed not in splits:
                raise UserError(
                    f"dataset folder:{self.path}: no images in split {needed!r} "
                    f"(found splits: {', '.join(sorted(splits)) or 'none'})"
                )
        train = {r.label for r in records if r.split == self.train_split}
        test = {r.label for r in records if r.split in self.eval_splits}
        if shared := sorted(train & test):
            raise UserError(
                f"dataset folder:{self.path}: classes {', '.join(shared[:5])} "
                "are in both train and "
                "test; DML evaluates on unseen classes, so make the split class-disjoint"
            )
        return records

    def records(self) -> list[ImageRecord]:
        return self._records

    @property
    def num_train_classes(self) -> int:
        return len({r.label for r in self._records if r.split == self.train_split})

    def missing_message(self) -> str:
        return f"dataset folder:{self.path}: no such file or directory"

    def scan_key(self) -> Path:
        return self.path

    def location(self) -> str:
        return str(self.path)

    def is_present(self) -> bool:
        return self.path.exists()


register_dataset_prefix("folder", FolderDataset)
