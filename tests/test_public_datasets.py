"""The four public benchmarks, read from fakes in their real layouts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.data.public.base import UNCHECKED_COUNTS_ENV
from dmlbench.data.spec import get_dataset
from dmlbench.errors import UserError

from .fake_datasets import FAKES


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DMLBENCH_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.mark.parametrize(
    "name,splits",
    [
        ("cub", {"train": (3, 12), "test": (3, 12)}),
        ("cars", {"train": (3, 12), "test": (3, 12)}),
        ("sop", {"train": (3, 9), "test": (3, 9)}),
        ("inshop", {"train": (3, 12), "query": (3, 6), "gallery": (3, 6)}),
    ],
)
def test_reader_gives_standard_class_disjoint_splits(name, splits, data_root, monkeypatch):
    FAKES[name](data_root)
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    records = get_dataset(name).records()
    found = {s: (len({r.label for r in records if r.split == s}), n) for s, n in
             Counter(r.split for r in records).items()}  # fmt: skip
    assert found == splits
    train = {r.label for r in records if r.split == "train"}
    assert not train & {r.label for r in records if r.split != "train"}
    assert all(r.path.is_file() for r in records)


def test_cub_train_classes_are_the_first_half(data_root, monkeypatch):
    FAKES["cub"](data_root)
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    records = get_dataset("cub").records()
    assert {r.label for r in records if r.split == "train"} == {"1", "2", "3"}
    assert {r.label for r in records if r.split == "test"} == {"101", "102", "103"}


@pytest.mark.parametrize("name", sorted(FAKES))
def test_published_counts_are_checked_in_one_line(name, data_root):
    FAKES[name](data_root)
    spec = get_dataset(name)
    with pytest.raises(UserError) as error:
        spec.records()
    message = str(error.value)
    assert "\n" not in message and str(spec.root / spec.index_file) in message
    classes, images = next(iter(spec.split_sizes().values()))
    assert f"should have {classes:,} classes / {images:,} images, found 3 /" in message


@pytest.mark.parametrize("name", sorted(FAKES))
def test_missing_data_is_one_line_with_the_command(name, data_root, tmp_path):
    result = CliRunner().invoke(main, ["run", "--dataset", name, "--output", str(tmp_path)])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and str(data_root) in line
    assert f"`dmlbench data download {name}`" in line


@pytest.mark.parametrize("name", sorted(FAKES))
def test_run_end_to_end_on_each_fake(name, data_root, tmp_path, monkeypatch):
    FAKES[name](data_root)
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    args = ["run", "--dataset", name, "--backbone", "vit_glyph_patch8_48", "--weights", "none",
            "--epochs", "1", "--batch-size", "4", "--images-per-class", "2",
            "--output", str(tmp_path / "runs")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ks = get_dataset(name).recall_ks
    assert all(f"R@{k} " in result.output for k in ks)
    from dmlbench.store.results import load

    row = load(tmp_path / "runs").iloc[0]
    assert row["dataset"] == name and row["status"] == "finished"
    expected_queries = {"cub": 12, "cars": 12, "sop": 9, "inshop": 6}[name]
    assert row["metrics.queries"] == expected_queries


def test_image_cache_downsizes_once_and_never_upscales(tmp_path, monkeypatch):
    from PIL import Image

    from dmlbench.data.image_cache import cached_records

    FAKES["cub"](tmp_path / "data")
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    records = get_dataset("cub", tmp_path / "data").records()
    cached = cached_records(records, side=16, progress=False)
    assert [r.label for r in cached] == [r.label for r in records]
    sizes = {Image.open(r.path).size for r in cached}
    assert sizes == {(20, 16)}  # 40×32 originals, shorter side 16
    stamp = cached[0].path.stat().st_mtime_ns
    assert cached_records(records, side=16, progress=False) == cached
    assert cached[0].path.stat().st_mtime_ns == stamp  # made once
    bigger = cached_records(records, side=64, progress=False)
    assert Image.open(bigger[0].path).size == (40, 32)  # never upscaled


def test_run_reads_the_image_cache(data_root, tmp_path, monkeypatch):
    FAKES["sop"](data_root)
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    args = ["run", "--dataset", "sop", "--backbone", "vit_glyph_patch8_48", "--weights", "none",
            "--epochs", "1", "--batch-size", "4", "--images-per-class", "2",
            "--image-cache", "32", "--output", str(tmp_path / "runs")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    import os

    assert len(list((Path(os.environ["DMLBENCH_CACHE"]) / "images").rglob("*.jpg"))) >= 18
