"""CUB-200-2011 (Wah et al. 2011) from its original layout, with the standard DML split.

Layout as distributed (``CUB_200_2011.tgz``): ``CUB_200_2011/images.txt``
(``<id> <class dir>/<file>``), ``image_class_labels.txt`` (``<id> <class>``),
``images/``. DML split: classes 1–100 train, 101–200 test (not the
per-image train/test of ``train_test_split.txt``, which is for
classification).
"""

from __future__ import annotations

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.public.base import PublicDataset, SplitCounts, read_lines
from dmlbench.data.public.fetch import Source
from dmlbench.data.spec import Recipe, register_dataset
from dmlbench.errors import UserError


def _pairs(path) -> dict[str, str]:
    pairs = {}
    for number, line in enumerate(read_lines(path), 1):
        key, sep, value = line.strip().partition(" ")
        if not sep:
            raise UserError(f"{path}:{number}: expected '<id> <value>', found {line!r}")
        pairs[key] = value.strip()
    return pairs


@register_dataset("cub")
class CUB(PublicDataset):
    description = "CUB-200-2011 birds: classes 1-100 train, 101-200 test"
    folder = "CUB_200_2011"
    index_file = "images.txt"
    counts = SplitCounts({"train": (100, 5_864), "test": (100, 5_924)})
    train_classes = 100
    recipe = Recipe()  # the paper's CUB recipe is the default one
    sources = (
        Source(
            "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
            "CUB_200_2011.tgz",
            md5="97eceeb196236b17998738112f37df78",
        ),
    )

    def read_index(self) -> list[ImageRecord]:
        images = _pairs(self.root / "images.txt")
        labels = _pairs(self.root / "image_class_labels.txt")
        records = []
        for image_id, relative in images.items():
            if image_id not in labels:
                raise UserError(f"{self.root / 'image_class_labels.txt'}: no label for {image_id}")
            label = int(labels[image_id])
            split = "train" if label <= self.train_classes else "test"
            records.append(ImageRecord(self.root / "images" / relative, str(label), split))
        return records
