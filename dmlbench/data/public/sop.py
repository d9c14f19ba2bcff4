"""Stanford Online Products (Oh Song et al. 2016) from Ebay_train.txt / Ebay_test.txt.

Each index line: ``image_id class_id super_class_id path``, after a header.
"""

from __future__ import annotations

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.public.base import PublicDataset, SplitCounts, read_lines
from dmlbench.data.public.fetch import Source
from dmlbench.data.spec import Recipe, register_dataset
from dmlbench.errors import UserError

SOP_VPTSP = {"prompts": 90, "class_prompts": 5, "alpha": 0.2, "gru_dropout": 0.1,
             "bank": "lazy", "checkpointing": True}  # fmt: skip


@register_dataset("sop")
class StanfordOnlineProducts(PublicDataset):
    description = "Stanford Online Products: Ebay_train.txt / Ebay_test.txt"
    folder = "Stanford_Online_Products"
    index_file = "Ebay_train.txt"
    counts = SplitCounts({"train": (11_318, 59_551), "test": (11_316, 60_502)})
    train_classes = 11_318
    recall_ks = (1, 10, 100, 1000)
    map_at = (1000,)  # MAP@1000, as the SOP literature reports beside MAP@R
    # The reference's config/sop_small.yaml: class prompts in its memory bank
    # (lazy), activation checkpointing, α = 0.2, GRU dropout 0.1.
    recipe = Recipe(
        optimizer="adamw", lr=1e-4, proxy_lr=5e-2, epochs=120, batch_size=32,
        images_per_class=1, weight_decay=1e-4, cosine_epochs=120, lr_min=5e-5,
        per_method={
            "vptsp-m": {"method_options": SOP_VPTSP}, "vptsp-g": {"method_options": SOP_VPTSP},
            "vpt": {"method_options": {"prompts": 90}},
        },
    )  # fmt: skip

    # The authors' link (from their README); no checksum is published.
    sources = (
        Source(
            "https://drive.usercontent.google.com/download?id=1TclrpQOF_ullUP99wk_gjGN8pKvtErG8"
            "&export=download&confirm=t",
            "Stanford_Online_Products.zip",
        ),
    )
    manual = (
        "Fetch Stanford_Online_Products.zip (link in github.com/rksltnl/"
        "Deep-Metric-Learning-CVPR16)."
    )

    def read_index(self) -> list[ImageRecord]:
        records = []
        for split in ("train", "test"):
            path = self.root / f"Ebay_{split}.txt"
            for number, line in enumerate(read_lines(path)[1:], 2):
                fields = line.split()
                if len(fields) != 4:
                    raise UserError(f"{path}:{number}: expected 4 fields, found {line!r}")
                records.append(ImageRecord(self.root / fields[3], fields[1], split))
        return records
