"""Download, resume, checksum, safe extraction, prepare and verify, against a loopback server."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.data.public.base import UNCHECKED_COUNTS_ENV
from dmlbench.data.public.cub import CUB
from dmlbench.data.public.fetch import Source, download, safe_extract
from dmlbench.errors import UserError

from .fake_datasets import fake_cub, fake_inshop


class Server:
    """Serves files from a dict, honouring Range; records the Range headers it saw."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        files, ranges = self.files, self.ranges

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                ranges.append(wanted)
                start = int(wanted.split("=")[1].rstrip("-")) if wanted else 0
                self.send_response(206 if wanted else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def tgz_of(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cub_archive(tmp_path_factory) -> bytes:
    return tgz_of(fake_cub(tmp_path_factory.mktemp("src")), "CUB_200_2011")


def test_download_command_fetches_verifies_and_unpacks(server, cub_archive, tmp_path, monkeypatch):
    server.files["CUB_200_2011.tgz"] = cub_archive
    md5 = hashlib.md5(cub_archive).hexdigest()
    monkeypatch.setattr(
        CUB, "sources", (Source(server.url("CUB_200_2011.tgz"), "CUB_200_2011.tgz", md5),)
    )
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    result = CliRunner().invoke(main, ["data", "download", "cub", "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    spec = CUB(tmp_path / "CUB_200_2011")
    assert spec.is_present() and len(spec.records()) == 24
    assert (tmp_path / ".downloads" / "CUB_200_2011.tgz").read_bytes() == cub_archive


def test_truncated_download_is_resumed(server, cub_archive, tmp_path):
    server.files["resume.tgz"] = cub_archive
    half = len(cub_archive) // 2
    (tmp_path / "resume.tgz.part").write_bytes(cub_archive[:half])
    server.ranges.clear()
    source = Source(server.url("resume.tgz"), "resume.tgz", hashlib.md5(cub_archive).hexdigest())
    path = download(source, tmp_path, progress=False)
    assert server.ranges == [f"bytes={half}-"]
    assert path.read_bytes() == cub_archive and not (tmp_path / "resume.tgz.part").exists()


def test_wrong_checksum_is_rejected(server, tmp_path):
    server.files["bad.tgz"] = b"not what was published"
    source = Source(server.url("bad.tgz"), "bad.tgz", md5="0" * 32)
    with pytest.raises(UserError, match=r"bad.tgz: md5 \w+ does not match the published 0{32}"):
        download(source, tmp_path, progress=False)
    assert not (tmp_path / "bad.tgz").exists() and (tmp_path / "bad.tgz.bad").exists()


def test_unreachable_source_is_one_line(tmp_path):
    source = Source("http://127.0.0.1:9/none.tgz", "none.tgz")
    with pytest.raises(UserError, match="cannot connect"):
        download(source, tmp_path, progress=False)


def hostile_tar(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.tgz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("ok/file.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
        if kind == "traversal":
            evil = tarfile.TarInfo("../evil.txt")
            evil.size = 4
            tf.addfile(evil, io.BytesIO(b"evil"))
        else:
            link = tarfile.TarInfo("ok/link")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tf.addfile(link)
    return path


@pytest.mark.parametrize("kind,message", [("traversal", "outside the target"), ("link", "link")])
def test_hostile_tar_is_refused_and_nothing_is_written(tmp_path, kind, message):
    archive = hostile_tar(tmp_path, kind)
    target = tmp_path / "target"
    with pytest.raises(UserError, match=message):
        safe_extract(archive, target)
    assert not (tmp_path / "evil.txt").exists()
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("has_data_filter", [True, False])
def test_tar_extracts_with_and_without_pythons_data_filter(tmp_path, monkeypatch, has_data_filter):
    """Python < 3.10.12 has no extraction filters: the fallback gives the same files and
    still drops the archive's setuid bit and foreign owner."""
    path = tmp_path / "plain.tgz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("data/file.txt")
        info.size, info.mode, info.uid, info.gid = 5, 0o4755, 4242, 4242
        tf.addfile(info, io.BytesIO(b"hello"))
    if not has_data_filter:
        monkeypatch.delattr(tarfile, "data_filter")
    safe_extract(path, tmp_path / "target")
    extracted = tmp_path / "target" / "data" / "file.txt"
    assert extracted.read_bytes() == b"hello"
    assert not extracted.stat().st_mode & 0o4000
    assert extracted.stat().st_uid != 4242


def test_hostile_zip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../evil.txt", "evil")
    with pytest.raises(UserError, match="outside the target"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "evil.txt").exists()


def test_prepare_inshop_from_hand_fetched_files(tmp_path, monkeypatch):
    source = fake_inshop(tmp_path / "src")
    archive = tmp_path / "img.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in (source / "img").rglob("*.jpg"):
            zf.write(file, file.relative_to(source).as_posix())
    partition = source / "list_eval_partition.txt"
    args = ["data", "prepare", "inshop", "--from", str(archive), "--from", str(partition),
            "--data-root", str(tmp_path / "data")]  # fmt: skip
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "InShop" / "img" / "WOMEN").is_dir()


def test_manual_dataset_says_what_to_fetch(tmp_path):
    result = CliRunner().invoke(main, ["data", "download", "inshop", "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "img.zip" in result.output and "dmlbench data prepare inshop --from" in result.output


def test_verify_lists_every_bad_file_and_runs_fail_or_skip(tmp_path, monkeypatch):
    root = fake_cub(tmp_path / "data")
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    broken = sorted((root / "images").rglob("*.jpg"))[:2]
    for path in broken:
        path.write_bytes(path.read_bytes()[:200])  # truncated JPEGs
    runner = CliRunner()
    result = runner.invoke(main, ["data", "verify", "cub", "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 2
    for path in broken:
        assert str(path) in result.output
    assert (
        result.output.strip().splitlines()[-1] == "error: dataset cub: 2 of 24 images do not decode"
    )

    args = ["run", "--dataset", "cub", "--data-root", str(tmp_path / "data"),
            "--backbone", "vit_glyph_patch8_48", "--weights", "none", "--epochs", "1",
            "--batch-size", "4", "--images-per-class", "2",
            "--output", str(tmp_path / "runs")]  # fmt: skip
    failed = runner.invoke(main, args)
    assert failed.exit_code == 2 and "2 unreadable image(s)" in failed.output
    errors = [line for line in failed.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith("or pass --skip-bad-images")
    done = runner.invoke(main, [*args, "--skip-bad-images"])
    assert done.exit_code == 0, done.output
    from dmlbench.store.results import load

    assert load(tmp_path / "runs").iloc[0]["skipped_bad_images"] == 2


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _prepare_cub(archive: Path, data: Path):
    args = ["data", "prepare", "cub", "--from", str(archive), "--data-root", str(data)]
    return CliRunner().invoke(main, args)


def test_prepare_never_touches_a_folder_of_the_user_that_an_archive_also_names(
    tmp_path, monkeypatch
):
    """An archive with a top-level `precious/` beside the dataset's folder: only the
    dataset's folder comes in, the user's `precious/` is left as it was."""
    source = fake_cub(tmp_path / "src")
    (tmp_path / "src-precious").mkdir()
    (tmp_path / "src-precious" / "x.txt").write_text("from the archive")
    archive = tmp_path / "cub.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(source, arcname="CUB_200_2011")
        tf.add(tmp_path / "src-precious", arcname="precious")
    data = tmp_path / "data"
    (data / "precious").mkdir(parents=True)
    (data / "precious" / "thesis.tex").write_text("years of work")
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    result = _prepare_cub(archive, data)
    assert result.exit_code == 0, result.output
    assert "left out precious" in result.output
    assert _tree(data / "precious") == {"thesis.tex": b"years of work"}
    assert CUB(data / "CUB_200_2011").is_present()
    assert sorted(p.name for p in data.iterdir()) == ["CUB_200_2011", "precious"]


def test_prepare_refuses_to_replace_a_dataset_folder_with_other_content(tmp_path, monkeypatch):
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    first, second = tmp_path / "a.tgz", tmp_path / "b.tgz"
    first.write_bytes(tgz_of(fake_cub(tmp_path / "src-a"), "CUB_200_2011"))
    other = fake_cub(tmp_path / "src-b")
    (other / "images.txt").write_text((other / "images.txt").read_text() + "\n")  # other bytes
    second.write_bytes(tgz_of(other, "CUB_200_2011"))
    data = tmp_path / "data"
    assert _prepare_cub(first, data).exit_code == 0
    before = _tree(data)
    again = _prepare_cub(first, data)  # the same archive again: a verified copy, no change
    assert again.exit_code == 0, again.output
    assert _tree(data) == before
    refused = _prepare_cub(second, data)
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert "CUB_200_2011/images.txt: exists with other bytes than b.tgz's copy" in line
    assert "nothing was changed" in line
    assert _tree(data) == before  # and no staging folder is left behind
    assert sorted(p.name for p in data.iterdir()) == ["CUB_200_2011"]


def test_prepare_refuses_to_replace_a_plain_file_with_other_content(tmp_path, monkeypatch):
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    root = tmp_path / "data" / "InShop"
    root.mkdir(parents=True)
    (root / "list_eval_partition.txt").write_text("the user's own edit")
    given = tmp_path / "list_eval_partition.txt"
    given.write_text("another partition")
    args = ["data", "prepare", "inshop", "--from", str(given),
            "--data-root", str(tmp_path / "data")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "exists with other bytes" in result.output
    assert (root / "list_eval_partition.txt").read_text() == "the user's own edit"
    assert [p.name for p in root.iterdir()] == ["list_eval_partition.txt"]


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_archive_is_one_line_and_unpacks_nothing(tmp_path, cut):
    blob = tgz_of(fake_cub(tmp_path / "src"), "CUB_200_2011")
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(blob[: int(len(blob) * cut)])
    result = _prepare_cub(archive, tmp_path / "data")
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "cut.tgz: truncated or corrupt archive" in line and "download it again" in line
    assert list((tmp_path / "data").iterdir()) == []
