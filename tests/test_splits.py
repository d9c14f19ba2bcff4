"""Validation classes: shipped or carved from the training classes, and a validation run
that never opens a test image."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.data.image_list import ImageRecord
from dmlbench.data.splits import carve_validation, split_view
from dmlbench.errors import UserError


def records(classes: int, per_class: int, split: str) -> list[ImageRecord]:
    return [ImageRecord(Path(f"{split}/{c}/{i}.png"), f"{split}{c}", split)
            for c in range(classes) for i in range(per_class)]  # fmt: skip


def test_validation_classes_are_carved_deterministically_from_the_training_classes():
    data = records(10, 3, "train") + records(5, 3, "test")
    view = split_view(data, "val", "train", ("test",), None, 0.2, 0, "toy")
    again = split_view(data, "val", "train", ("test",), None, 0.2, 0, "toy")
    other_seed = split_view(data, "val", "train", ("test",), None, 0.2, 1, "toy")
    assert view.val_classes == again.val_classes and len(view.val_classes) == 2
    assert view.val_classes != other_seed.val_classes
    assert view.eval_splits == ("val",) and all(r.split != "test" for r in view.records)
    val = {r.label for r in view.records if r.split == "val"}
    train = {r.label for r in view.records if r.split == "train"}
    assert val == set(view.val_classes) and not val & train and len(train) == 8
    test = split_view(data, "test", "train", ("test",), None, 0.2, 0, "toy")
    assert {r.split for r in test.records} == {"train", "test"} and len(test.records) == 45


def test_a_shipped_validation_split_is_used_as_it_is():
    data = records(4, 2, "train") + records(3, 2, "val") + records(3, 2, "test")
    view = split_view(data, "val", "train", ("test",), "val", 0.2, 0, "toy")
    assert view.eval_splits == ("val",) and not view.val_classes
    assert {r.split for r in view.records} == {"train", "val"}


@pytest.mark.parametrize("fraction", [0.0, 0.95, 1.0])
def test_a_fraction_that_empties_a_class_set_is_one_line(fraction):
    with pytest.raises(UserError, match=r"val_fraction .* of its 10 training classes leaves"):
        carve_validation([str(c) for c in range(10)], fraction, 0, "toy")


def test_a_validation_run_never_opens_a_test_image(glyph_folder, tmp_path):
    """The test images are unreadable: a test run stops on them, a validation run
    trains and scores without noticing."""
    rows = []
    for i, cls in enumerate(sorted(p.name for p in glyph_folder.iterdir() if p.is_dir())):
        for img in sorted((glyph_folder / cls).iterdir()):
            split = "train" if i < 6 else "test"
            path = str(img)
            if split == "test":
                broken = tmp_path / "broken" / cls / img.name
                broken.parent.mkdir(parents=True, exist_ok=True)
                broken.write_bytes(b"not an image")
                path = str(broken)
            rows.append((path, cls, split))
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    args = ["run", "--dataset", f"folder:{listing}", "--weights", "none", "--epochs", "1",
            "--batch-size", "4", "--images-per-class", "2", "--backbone", "vit_glyph_patch8_48",
            "--output", str(tmp_path / "runs"), "--val-fraction", "0.34"]  # fmt: skip
    test_run = CliRunner().invoke(main, args)
    assert test_run.exit_code == 2 and "unreadable image" in test_run.output
    val_run = CliRunner().invoke(main, [*args, "--split", "val"])
    assert val_run.exit_code == 0, val_run.output
    assert "unseen validation classes" in val_run.output
    (summary,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/summary.json")
                  if json.loads(p.read_text())["status"] == "finished"]  # fmt: skip
    assert summary["split"] == "val" and summary["metrics"]["queries"] == 2 * 6
