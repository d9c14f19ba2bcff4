"""CUB-200-2011 (Wah et al. 2011) from its original layout, with the standard DML split.

Layout as distributed (``CUB_200_2011.tgz``): ``CUB_200_2011/images.txt``
(``<id> <class dir>/<file>``), ``image_class_labels.txt`` (``<id> <class>``),
``images/``. DML split: classes 1–100 train, 101–200 test (not the
per-image train/test of ``train_test_split.txt``, which is for
classification).
"""

from __future__ import annotations

from pathlib import Path

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.spec import DatasetSpec, Recipe, register_dataset
from dmlbench.errors import UserError
from dmlbench.paths import data_root

CUB_IMAGES = 11_788
CUB_CLASSES = 200


def _read_pairs(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(
            f"{path}: cannot read ({e.strerror}); see `dmlbench datasets` for where CUB goes"
        ) from None
    pairs = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, value = line.strip().partition(" ")
        if not sep:
            raise UserError(f"{path}:{number}: expected '<id> <value>', found {line!r}")
        pairs[key] = value.strip()
    return pairs


@register_dataset("cub")
class CUB(DatasetSpec):
    description = "CUB-200-2011 birds: classes 1-100 train, 101-200 test (11,788 images)"
    recipe = Recipe()  # the paper's CUB recipe is the default one

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else data_root() / "CUB_200_2011"

    @property
    def num_train_classes(self) -> int:
        return CUB_CLASSES // 2

    def location(self) -> str:
        return str(self.root)

    def is_present(self) -> bool:
        return (self.root / "images.txt").is_file()

    def records(self) -> list[ImageRecord]:
        images = _read_pairs(self.root / "images.txt")
        labels = _read_pairs(self.root / "image_class_labels.txt")
        if len(images) != CUB_IMAGES:
            raise UserError(
                f"{self.root / 'images.txt'}: expected {CUB_IMAGES} images, found {len(images)}"
            )
        classes = {int(v) for v in labels.values()}
        if classes != set(range(1, CUB_CLASSES + 1)):
            raise UserError(
                f"{self.root / 'image_class_labels.txt'}: expected classes 1-{CUB_CLASSES}, "
                f"found {len(classes)} distinct labels"
            )
        records = []
        for image_id, relative in images.items():
            if image_id not in labels:
                raise UserError(f"{self.root / 'image_class_labels.txt'}: no label for {image_id}")
            label = int(labels[image_id])
            split = "train" if label <= self.num_train_classes else "test"
            records.append(ImageRecord(self.root / "images" / relative, str(label), split))
        return records
