"""Cars196 (Krause et al. 2013) from ``cars_annos.mat`` + ``car_ims/``; DML split by class.

``cars_annos.mat`` holds one struct per image (relative_im_path, bbox, class
1–196, test flag). The DML split ignores the test flag: classes 1–98 train,
99–196 test.
"""

from __future__ import annotations

from dmlbench.data.image_list import ImageRecord
from dmlbench.data.public.base import PublicDataset, SplitCounts
from dmlbench.data.spec import Recipe, register_dataset
from dmlbench.errors import UserError

# Shared prompts: 80 tokens in blocks 1–11, two fewer per block; class
# prompts: 50 tokens in blocks 1–8, two fewer per block; α = 0.7.
CARS_SHARED_PROMPTS = {"prompts": 80, "layers": 11, "taper": 2}
CARS_VPTSP = {**CARS_SHARED_PROMPTS, "class_prompts": 50, "class_layers": 8, "class_taper": 2,
              "alpha": 0.7}  # fmt: skip


@register_dataset("cars")
class Cars196(PublicDataset):
    description = "Cars196: classes 1-98 train, 99-196 test"
    folder = "cars196"
    index_file = "cars_annos.mat"
    counts = SplitCounts({"train": (98, 8_054), "test": (98, 8_131)})
    train_classes = 98
    # The reference's config/cars_small.yaml (its T_max is params.py's default, 50).
    recipe = Recipe(
        optimizer="adamw", lr=5e-4, proxy_lr=1e-2, epochs=50, weight_decay=0.0, lr_min=1e-6,
        per_method={
            "vptsp-m": {"method_options": CARS_VPTSP}, "vptsp-g": {"method_options": CARS_VPTSP},
            # VPT rows: the shared-prompt layout of the VPTSP config (not published separately)
            "vpt": {"method_options": CARS_SHARED_PROMPTS},
        },
    )  # fmt: skip

    # The original ai.stanford.edu files are gone; mirrors come and go.
    manual = (
        "The original Stanford links are offline: fetch car_ims.tgz and cars_annos.mat "
        "(the originals, e.g. from a mirror of ai.stanford.edu/~jkrause/cars/car_dataset.html)."
    )
    archives_unpack_into = "root"

    def read_index(self) -> list[ImageRecord]:
        from scipy.io import loadmat

        path = self.root / self.index_file
        try:
            annotations = loadmat(str(path), squeeze_me=True)["annotations"]
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{path}: not a readable cars_annos.mat ({e})") from None
        records = []
        for item in annotations:
            label = int(item["class"])
            split = "train" if label <= self.train_classes else "test"
            records.append(
                ImageRecord(self.root / str(item["relative_im_path"]), str(label), split)
            )
        return records
