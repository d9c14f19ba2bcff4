"""What the four public DML benchmarks share: a root under the data directory,
an index file that says the data is there, published counts to check, and
the one line that tells a user how to get the data when it is missing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tqdm import tqdm

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.public.fetch import Source, download, merge_plan, safe_extract
from dmlbench.data.spec import DatasetSpec
from dmlbench.errors import UserError
from dmlbench.paths import data_root
from dmlbench.textfile import read_text

# Test-only switch: fakes in the real layouts may be scaled down.
UNCHECKED_COUNTS_ENV = "DMLBENCH_UNCHECKED_COUNTS"


@dataclass(frozen=True)
class SplitCounts:
    """Published (classes, images) per split."""

    splits: dict[str, tuple[int, int]]


class PublicDataset(DatasetSpec):
    folder: ClassVar[str] = ""  # the top folder the archive unpacks into
    index_file: ClassVar[str] = ""  # relative to the root; present ⇔ the data is there
    counts: ClassVar[SplitCounts]
    train_classes: ClassVar[int] = 0
    # Files that `data download` fetches; empty where no stable source exists,
    # and then ``manual`` says what to fetch by hand for `data prepare`.
    sources: ClassVar[tuple[Source, ...]] = ()
    manual: ClassVar[str] = ""
    # Where archives unpack: "parent" when they hold the top folder themselves.
    archives_unpack_into: ClassVar[str] = "parent"

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else data_root() / self.folder

    @property
    def num_train_classes(self) -> int:
        if os.environ.get(UNCHECKED_COUNTS_ENV) == "1":  # a scaled-down fake: count it
            return len({r.label for r in self.read_index() if r.split == self.train_split})
        return self.train_classes

    def location(self) -> str:
        return str(self.root)

    def is_present(self) -> bool:
        return (self.root / self.index_file).is_file()

    def scan_key(self) -> Path:
        return self.root / self.index_file

    def missing_message(self) -> str:
        return (
            f"dataset {self.name}: {self.root / self.index_file} not found; "
            f"get the data with `dmlbench data download {self.name}` "
            f"(or set $DMLBENCH_DATA to the folder that holds {self.folder}/)"
        )

    # -- getting the data ------------------------------------------------------
    def download(self, progress: bool = True) -> list[Path]:
        if not self.sources:
            raise UserError(
                f"dataset {self.name} has no stable download source; " + self.manual_text()
            )
        downloads = self.root.parent / ".downloads"
        files = [download(source, downloads, progress) for source in self.sources]
        self.prepare(files)
        return files

    def manual_text(self) -> str:
        return (
            f"{self.manual} Then run `dmlbench data prepare {self.name} --from FILE` "
            f"for each file; the data ends up in {self.root}."
        )

    def prepare(self, files: list[Path]) -> None:
        """Unpack archives and copy plain files into the dataset's own folder, then check
        the layout. Nothing outside that folder is touched, and nothing in it that
        exists is overwritten or removed (a file with other bytes stops it, in one line)."""
        for file in files:
            if not file.is_file():
                raise UserError(f"--from {file}: no such file")
        for file in files:
            if file.suffix in (".zip", ".tgz", ".gz", ".tar"):
                self._unpack(file)
            else:
                self._copy_in(file)
        if not self.is_present():
            raise UserError(
                f"dataset {self.name}: after preparing, {self.root / self.index_file} is still "
                f"missing; {self.manual_text() if self.manual else 'check the archive'}"
            )

    def _unpack(self, archive: Path) -> None:
        if self.archives_unpack_into == "root":
            safe_extract(archive, self.root)
            return
        left_out = safe_extract(archive, self.root.parent, keep=lambda name: name == self.folder)
        if left_out:
            tqdm.write(f"{archive.name}: left out {', '.join(left_out)} (not part of "
                       f"{self.folder}/)")  # fmt: skip

    def _copy_in(self, file: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".copy-") as tmp:
            staged = Path(tmp) / file.name
            shutil.copy2(file, staged)
            for source, destination in merge_plan(staged, self.root / file.name, file):
                source.replace(destination)

    def split_sizes(self) -> dict[str, tuple[int, int]]:
        return self.counts.splits

    def records(self) -> list[ImageRecord]:
        if not self.is_present():
            raise UserError(self.missing_message())
        records = self.read_index()
        self.check_counts(records)
        return records

    def read_index(self) -> list[ImageRecord]:
        raise NotImplementedError

    def check_counts(self, records: list[ImageRecord]) -> None:
        if os.environ.get(UNCHECKED_COUNTS_ENV) == "1":
            return
        images = Counter(r.split for r in records)
        for split, (classes, count) in self.counts.splits.items():
            found_classes = len({r.label for r in records if r.split == split})
            if (found_classes, images[split]) != (classes, count):
                raise UserError(
                    f"dataset {self.name}: {self.root / self.index_file}: split {split} should "
                    f"have {classes:,} classes / {count:,} images, found {found_classes:,} / "
                    f"{images[split]:,}; re-download or run `dmlbench data verify {self.name}`"
                )


def read_lines(path: Path) -> list[str]:
    return [line for line in read_text(path).splitlines() if line.strip()]
