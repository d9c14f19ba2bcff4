import json
import unicodedata

import pytest

from dmlbench.data.glyphs.classes import shipped_class_lists
from dmlbench.data.glyphs.fonts import drawing_fonts, font_files
from dmlbench.data.glyphs.render import (
    MIN_FONTS_AT_GENERATION,
    GlyphPartConfig,
    ensure_part,
    part_classes,
)
from dmlbench.data.image_list import read_csv_records

LISTS = shipped_class_lists()


def test_class_sets_are_disjoint_and_sized():
    pretrain, train, test = (set(LISTS[k]) for k in ("pretrain", "train", "test"))
    assert len(pretrain) >= 1000 and len(train) == 100 and len(test) == 100
    assert not (pretrain & train or pretrain & test or train & test)


def test_classes_are_printable_letters_numbers_punctuation_symbols():
    for cp in LISTS["pretrain"] + LISTS["train"] + LISTS["test"]:
        assert unicodedata.category(chr(cp))[0] in "LNPS"


@pytest.mark.parametrize("latin, others", [("A", "ΑА"), ("O", "ΟО"), ("x", "х"), ("-", "‐")])
def test_homoglyphs_are_merged(latin, others):
    kept = set(LISTS["pretrain"] + LISTS["train"] + LISTS["test"])
    assert ord(latin) in kept
    for other in others:
        assert ord(other) not in kept
        assert ord(other) in LISTS["dropped_homoglyphs"][str(ord(latin))]


def test_no_font_outside_matplotlib_and_no_placeholder_font():
    names = [f.name for f in font_files()]
    assert names and not any(n.startswith("LastResort") for n in names)
    assert all("matplotlib" in str(f) for f in font_files())


def test_installed_fonts_cover_the_test_classes():
    counts = [len(drawing_fonts(cp)) for cp in LISTS["test"]]
    assert min(counts) >= MIN_FONTS_AT_GENERATION


def test_generation_is_deterministic_with_manifest_and_fingerprint(tmp_path, monkeypatch):
    # Two test classes and two images each keep this fast; same code path as the full part.
    monkeypatch.setitem(
        __import__("dmlbench.data.glyphs.render", fromlist=["PARTS"]).PARTS, "tiny", ("test",)
    )
    tiny = {"test": LISTS["test"][:2]}
    monkeypatch.setattr("dmlbench.data.glyphs.render.part_classes", lambda part: tiny)
    config = GlyphPartConfig("tiny", images_per_class=2)
    a = ensure_part(config, root=tmp_path / "a", workers=1)
    b = ensure_part(config, root=tmp_path / "b", workers=1)
    assert a.name == b.name and a.name.startswith("tiny-")
    records = read_csv_records(a / "manifest.csv")
    assert len(records) == 4 and {r.split for r in records} == {"test"}
    for rec in records:
        twin = b / rec.path.relative_to(a)
        assert rec.path.read_bytes() == twin.read_bytes()
    fp = json.loads((a / "fingerprint.json").read_text())
    assert fp["generator_version"] >= 1 and len(fp["fonts"]) == len(font_files())
    assert ensure_part(config, root=tmp_path / "a") == a  # cached: not regenerated


def test_eval_part_holds_train_and_test():
    assert set(part_classes("eval")) == {"train", "test"}
    assert set(part_classes("pretrain")) == {"pretrain"}


def test_v1_validation_classes_are_unseen_by_its_backbone_and_disjoint():
    from dmlbench.data.glyphs.classes import PRETRAINED_ON, validation_classes

    val = set(LISTS["val"])
    assert len(val) == 100 and not val & (set(LISTS["train"]) | set(LISTS["test"]))
    pretrained = sorted(f"U+{cp:04X}" for cp in LISTS["pretrain"])[:PRETRAINED_ON]
    assert not {f"U+{cp:04X}" for cp in val} & set(pretrained)
    assert validation_classes(LISTS["pretrain"]) == LISTS["val"]  # the shipped list is rebuilt
