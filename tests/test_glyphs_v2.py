"""The default glyph benchmark (font packages, accented letters): class lists, families,
rendering, fingerprints, and what a missing or changed font package does."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import replace

import pytest

from dmlbench.data.glyphs import families as families_module
from dmlbench.data.glyphs import render_v2
from dmlbench.data.glyphs.classes_v2 import is_accented_latin, shipped_class_lists_v2
from dmlbench.data.glyphs.families import FAMILIES, faces, family_names
from dmlbench.data.glyphs.render import GlyphPartConfig, ensure_part, fingerprint
from dmlbench.errors import UserError

LISTS = shipped_class_lists_v2()
SPLITS = ("pretrain", "train", "val", "test")


def test_class_sets_are_disjoint_and_sized():
    sets = {k: set(LISTS[k]) for k in SPLITS}
    assert [len(sets[k]) for k in ("train", "val", "test")] == [100, 100, 100]
    assert len(sets["pretrain"]) >= 400
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not sets[a] & sets[b], (a, b)


def test_downstream_classes_are_accented_letters_and_pretraining_sees_others_of_them():
    for split in ("train", "val", "test"):
        assert all(is_accented_latin(cp) for cp in LISTS[split])
    accented_pretrain = [cp for cp in LISTS["pretrain"] if is_accented_latin(cp)]
    assert len(accented_pretrain) >= 50  # the backbone learns diacritics, on other letters
    for base in "AEIOUaeouxyz0123456789":
        assert ord(base) in LISTS["pretrain"]


def test_homoglyphs_are_merged():
    kept = {cp for k in SPLITS for cp in LISTS[k]}
    assert ord("A") in kept and ord("А") not in kept and ord("Α") not in kept  # Cyrillic, Greek
    assert ord("А") in LISTS["dropped_homoglyphs"][str(ord("A"))]
    for cp in kept:
        assert unicodedata.category(chr(cp))[0] in "LNPS"


def test_every_class_is_drawn_by_enough_families_and_eight_are_held_out():
    names = LISTS["families"]["all"]
    assert names == family_names() and len(names) == 56
    assert sorted(LISTS["families"]["held_out"]) == sorted(family_names(False))
    assert len(family_names(False)) == 8
    categories = {FAMILIES[s][1] for s in family_names(False)}
    assert categories == {"sans", "serif", "display", "handwriting", "mono"}
    for split, low in (("train", 35), ("val", 35), ("test", 35), ("pretrain", 20)):
        assert min(len(LISTS["covering"][str(cp)]) for cp in LISTS[split]) >= low, split
    pretraining_families = {s for cp in LISTS["pretrain"]
                            for s in render_v2.class_families(cp, "v2-pretrain")}  # fmt: skip
    assert not pretraining_families & set(family_names(False))


def test_the_pinned_font_packages_are_installed():
    for slug in family_names():
        assert faces(slug), slug


def test_rendering_is_deterministic_and_fingerprinted(tmp_path, monkeypatch):
    tiny = {"test": LISTS["test"][:2]}
    monkeypatch.setitem(render_v2.PARTS_V2, "v2-tiny", ("test",))
    monkeypatch.setattr("dmlbench.data.glyphs.render.part_classes", lambda part: tiny)
    config = GlyphPartConfig("v2-tiny", images_per_class=3, style=render_v2.STYLE_V2)
    a = ensure_part(config, root=tmp_path / "a", workers=1)
    b = ensure_part(config, root=tmp_path / "b", workers=1)
    assert a.name == b.name
    for png in a.rglob("*.png"):
        assert png.read_bytes() == (b / png.relative_to(a)).read_bytes()
    fp = json.loads((a / "fingerprint.json").read_text())
    assert fp["generator_version"] == 2 and len(fp["fonts"]) == sum(
        len(faces(s)) for s in family_names()
    )


def test_the_fingerprint_changes_when_a_font_file_changes(tmp_path, monkeypatch):
    config = GlyphPartConfig("v2-eval", images_per_class=2, style=render_v2.STYLE_V2)
    before = fingerprint(config)
    original = faces("inter")[0]
    changed = tmp_path / original.path.name
    changed.write_bytes(original.path.read_bytes() + b"\0")
    monkeypatch.setattr(
        families_module, "faces",
        lambda slug: (replace(original, path=changed),) if slug == "inter" else faces(slug),
    )  # fmt: skip
    monkeypatch.setattr(render_v2, "faces", families_module.faces)
    assert fingerprint(config)["fonts"] != before["fonts"]


def test_a_missing_or_changed_font_package_is_one_line(monkeypatch):
    faces.cache_clear()
    monkeypatch.setitem(FAMILIES, "inter", ("9.9", "sans", True))
    with pytest.raises(UserError, match=r"fontpkg-inter is 4\.1.*built with 9\.9: pip install "
                                        r"fontpkg-inter==9\.9"):  # fmt: skip
        faces("inter")
    monkeypatch.setattr(families_module, "_package_version", lambda slug: None)
    import fontpkg

    def not_installed(slug):
        raise fontpkg.FamilyNotInstalled(slug)

    monkeypatch.setattr(fontpkg, "family", not_installed)
    with pytest.raises(UserError, match="fontpkg-inter is not installed"):
        faces("inter")
    faces.cache_clear()
