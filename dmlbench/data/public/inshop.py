"""In-Shop Clothes Retrieval (DeepFashion, Liu et al. 2016) from list_eval_partition.txt.

The partition file: a count line, a header line, then ``image_name item_id
evaluation_status`` with status train / query / gallery. Queries are
searched in the gallery only.
"""

from __future__ import annotations

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.public.base import PublicDataset, SplitCounts, read_lines
from dmlbench.data.spec import Recipe, register_dataset
from dmlbench.errors import UserError

INSHOP_VPTSP = {"prompts": 90, "class_prompts": 80, "alpha": 0.2, "gru_dropout": 0.1,
                "bank": "lazy", "checkpointing": True}  # fmt: skip


@register_dataset("inshop")
class InShop(PublicDataset):
    description = "In-Shop Clothes: train / query / gallery from list_eval_partition.txt"
    folder = "InShop"
    index_file = "list_eval_partition.txt"
    counts = SplitCounts(
        {"train": (3_997, 25_882), "query": (3_985, 14_218), "gallery": (3_985, 12_612)}
    )
    train_classes = 3_997
    recall_ks = (1, 10, 20, 30, 40, 50)
    eval_splits = ("query", "gallery")
    map_at = (1000,)
    # The reference's config/inshop_small.yaml (as SOP's, with 80 class tokens).
    recipe = Recipe(
        optimizer="adamw", lr=1e-4, proxy_lr=5e-2, epochs=80, batch_size=32,
        images_per_class=1, weight_decay=1e-7, cosine_epochs=100, lr_min=5e-6,
        per_method={
            "vptsp-m": {"method_options": INSHOP_VPTSP},
            "vptsp-g": {"method_options": INSHOP_VPTSP},
            "vpt": {"method_options": {"prompts": 90}},
        },
    )  # fmt: skip

    # Distributed through a Google Drive folder behind an agreement form.
    manual = (
        "Fill in the DeepFashion agreement (mmlab.ie.cuhk.edu.hk/projects/DeepFashion/"
        "InShopRetrieval.html) and fetch In-shop Clothes Retrieval Benchmark/Img/img.zip "
        "and Eval/list_eval_partition.txt."
    )
    archives_unpack_into = "root"

    def read_index(self) -> list[ImageRecord]:
        path = self.root / self.index_file
        records = []
        for number, line in enumerate(read_lines(path)[2:], 3):
            fields = line.split()
            if len(fields) != 3 or fields[2] not in ("train", "query", "gallery"):
                raise UserError(
                    f"{path}:{number}: expected 'image_name item_id train|query|gallery', "
                    f"found {line!r}"
                )
            records.append(ImageRecord(self.root / fields[0], fields[1], fields[2]))
        return records
