"""CUB-200-2011 read from its original index files (images need not exist to list them)."""

from collections import Counter

import pytest

from dmlbench.data.cub import CUB, CUB_IMAGES
from dmlbench.data.spec import get_dataset
from dmlbench.errors import UserError


def write_cub_index(root, images=CUB_IMAGES, classes=200):
    root.mkdir(parents=True, exist_ok=True)
    ids = range(1, images + 1)
    labels = {i: 1 + (i - 1) * classes // images for i in ids}  # contiguous, like the real one
    (root / "images.txt").write_text(
        "".join(f"{i} {labels[i]:03d}.Bird/img_{i}.jpg\n" for i in ids)
    )
    (root / "image_class_labels.txt").write_text("".join(f"{i} {labels[i]}\n" for i in ids))
    return root


def test_standard_dml_split_by_class(tmp_path):
    records = CUB(write_cub_index(tmp_path / "CUB_200_2011")).records()
    assert len(records) == CUB_IMAGES
    train = {r.label for r in records if r.split == "train"}
    test = {r.label for r in records if r.split == "test"}
    assert train == {str(c) for c in range(1, 101)} and test == {str(c) for c in range(101, 201)}
    assert Counter(r.split for r in records)["train"] == sum(
        1 for r in records if int(r.label) <= 100
    )
    assert records[0].path == tmp_path / "CUB_200_2011" / "images" / "001.Bird" / "img_1.jpg"


def test_count_mismatch_names_file_and_counts(tmp_path):
    root = write_cub_index(tmp_path / "CUB_200_2011", images=500)
    with pytest.raises(UserError, match=r"images.txt: expected 11788 images, found 500"):
        CUB(root).records()


def test_missing_index_is_one_line(tmp_path):
    with pytest.raises(UserError, match="images.txt: cannot read"):
        CUB(tmp_path).records()


def test_cub_is_registered_with_100_training_classes(monkeypatch, tmp_path):
    monkeypatch.setenv("DMLBENCH_DATA", str(tmp_path))
    spec = get_dataset("cub")
    assert spec.num_train_classes == 100 and not spec.is_present()
    assert spec.location() == str(tmp_path / "CUB_200_2011")
