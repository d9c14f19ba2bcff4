"""Getting public datasets: resumable HTTP download with checksum, safe extraction.

Why by hand: torchvision's ``download_url`` neither resumes a partial file
nor refuses links in archives, and tarfile's own ``filter="data"`` still
allows links that stay inside the target; a dataset archive has no reason to
contain any link, so any link is refused here (and the "data" filter is
applied on top).
"""

from __future__ import annotations

import filecmp
import hashlib
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from dmlbench.errors import UserError
from dmlbench.progress import progress as progress_bar

CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One file of a dataset as its authors distribute it."""

    url: str
    filename: str
    md5: str | None = None  # None: not published; the computed one is printed instead


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(source: Source, folder: Path, progress: bool = True) -> Path:
    """Download ``source`` into ``folder``, resuming a partial ``.part`` file.

    The finished file appears under its name only after its checksum matched.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.filename
    if target.is_file() and (source.md5 is None or md5sum(target) == source.md5):
        return target
    partial = folder / f"{source.filename}.part"
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(source.url, headers={"User-Agent": "dmlbench"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            response = None
        else:
            raise UserError(f"{source.url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"{source.url}: cannot connect ({reason}); retry to resume") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            mode = "ab" if resumed else "wb"
            if not resumed:
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length else None
            with (
                open(partial, mode) as out,
                progress_bar(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=source.filename,
                    disable=not progress,
                ) as bar,
            ):
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    found = md5sum(partial)
    if source.md5 is not None and found != source.md5:
        bad = partial.with_name(f"{source.filename}.bad")
        partial.replace(bad)
        raise UserError(
            f"{source.filename}: md5 {found} does not match the published {source.md5}; "
            f"kept as {bad} (delete it and download again)"
        )
    if source.md5 is None:
        tqdm.write(f"{source.filename}: md5 {found} (no published checksum to compare with)")
    partial.replace(target)
    return target


def _check_member(name: str, is_link: bool, archive: Path) -> None:
    path = PurePosixPath(name)
    if is_link:
        raise UserError(f"{archive}: refusing to extract link {name!r}")
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")):
        raise UserError(f"{archive}: refusing to extract {name!r} (outside the target folder)")


def _extract_tar(tf: tarfile.TarFile, members: list, staging: Path, name: str) -> None:
    """Extract checked members (regular files and folders only, no escapes).

    Python's "data" filter (3.10.12+, 3.11.4+, 3.12+) also drops ownership and
    unsafe mode bits; on an older 3.10 the members are extracted one by one
    without restoring any attribute, which gives the same files.
    """
    shown = progress_bar(members, desc=f"extracting {name}", unit="file")
    if hasattr(tarfile, "data_filter"):
        tf.extractall(staging, members=shown, filter="data")
        return
    for member in shown:
        tf.extract(member, staging, set_attrs=False)


def safe_extract(
    archive: Path, target: Path, keep: Callable[[str], bool] = lambda _: True
) -> list[str]:
    """Extract a .tar(.gz) or .zip into ``target``: all or nothing, no links, no escapes,
    nothing that exists overwritten or removed.

    The archive is unpacked into a staging folder inside ``target``; then only the
    top-level entries ``keep`` accepts are merged in (returns the names left out). A
    file already there with the same bytes is left as it is; one with other bytes, or a
    file where a folder would go, stops everything before anything moved."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".extract-") as tmp:
        staging = Path(tmp)
        try:
            _extract_checked(archive, staging)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
            raise UserError(
                f"{archive}: truncated or corrupt archive ({e or type(e).__name__}); "
                "download it again (nothing was unpacked)"
            ) from None
        entries = sorted(staging.iterdir())
        kept = [entry for entry in entries if keep(entry.name)]
        moves = [move for entry in kept for move in merge_plan(entry, target / entry.name, archive)]
        for source, destination in moves:
            destination.parent.mkdir(parents=True, exist_ok=True)
            source.replace(destination)
        return [entry.name for entry in entries if not keep(entry.name)]


def _extract_checked(archive: Path, staging: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                link = (info.external_attr >> 16) & 0o170000 == 0o120000
                _check_member(info.filename, link, archive)
            for info in progress_bar(zf.infolist(), desc=f"extracting {archive.name}", unit="file"):
                zf.extract(info, staging)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_member(m.name, m.issym() or m.islnk(), archive)
                if not (m.isfile() or m.isdir()):
                    raise UserError(f"{archive}: refusing to extract special file {m.name!r}")
            _extract_tar(tf, members, staging, archive.name)
    else:
        raise UserError(f"{archive}: not a .tar, .tar.gz, .tgz or .zip archive")


def merge_plan(source: Path, destination: Path, archive: Path) -> list[tuple[Path, Path]]:
    """The (file, where it goes) moves that merge ``source`` into ``destination``
    without changing anything there; a conflict is one line naming the file."""
    if source.is_dir():
        if destination.exists() and not destination.is_dir():
            raise _conflict(destination, f"is a file where {archive.name} has a folder")
        return [move for child in sorted(source.iterdir())
                for move in merge_plan(child, destination / child.name, archive)]  # fmt: skip
    if destination.is_dir():
        raise _conflict(destination, f"is a folder where {archive.name} has a file")
    if destination.exists():
        if filecmp.cmp(source, destination, shallow=False):
            return []  # the same bytes: already in place
        raise _conflict(destination, f"exists with other bytes than {archive.name}'s copy")
    return [(source, destination)]


def _conflict(path: Path, what: str) -> UserError:
    return UserError(
        f"{path}: {what}; nothing was changed (move it away, or give another --data-root)"
    )
