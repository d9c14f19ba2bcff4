"""Fake copies of the public benchmarks in their real layouts: real index-file
formats and file names, tiny generated JPEGs, scaled-down counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dmlbench.testing import write_cub_layout


def write_image(path: Path, label: int, index: int, mode: str = "RGB") -> None:
    """A 32×40 image whose colour depends on the class (so the tiny runs can learn)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([label, index])
    base = np.array([label * 37 % 256, label * 91 % 256, label * 53 % 256], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 20, (32, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, quality=90)


def both_halves(classes: int, total: int) -> list[int]:
    half = classes // 2
    return [*range(1, half + 1), *range(total // 2 + 1, total // 2 + 1 + classes - half)]


def fake_cub(data_root: Path, classes: int = 6, per_class: int = 4) -> Path:
    """CUB_200_2011 with ``classes`` classes, half from 1-100 (train), half from 101-200."""
    return write_cub_layout(data_root, both_halves(classes, 200), per_class, write_image)


def fake_cars(data_root: Path, classes: int = 6, per_class: int = 4) -> Path:
    from scipy.io import savemat

    root = data_root / "cars196"
    rows = []
    for c in both_halves(classes, 196):
        for i in range(per_class):
            relative = f"car_ims/{len(rows) + 1:06d}.jpg"
            write_image(root / relative, c, i, mode="L" if i == 0 else "RGB")  # some grayscale
            rows.append((relative, 1, 2, 30, 20, c, i % 2))
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    records = np.array(rows, dtype=[(f, object) for f in fields])
    savemat(str(root / "cars_annos.mat"), {"annotations": records})
    return root


def fake_sop(data_root: Path, classes: int = 6, per_class: int = 3) -> Path:
    root = data_root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path\n"
    lines = {"train": [header], "test": [header]}
    image_id = 0
    for c in range(1, classes + 1):
        split = "train" if c <= classes // 2 else "test"
        for i in range(per_class):
            image_id += 1
            relative = f"bicycle_final/{c:06d}_{i}.JPG"
            write_image(root / relative, c, i)
            lines[split].append(f"{image_id} {c} 1 {relative}\n")
    for split, text in lines.items():
        (root / f"Ebay_{split}.txt").write_text("".join(text))
    return root


def fake_inshop(data_root: Path, classes: int = 6, per_class: int = 4) -> Path:
    """The first half of the items train; each other item has query and gallery images."""
    root = data_root / "InShop"
    rows = []
    for c in range(1, classes + 1):
        item = f"id_{c:08d}"
        for i in range(per_class):
            relative = f"img/WOMEN/Dresses/{item}/{i:02d}_1_front.jpg"
            write_image(root / relative, c, i, mode="CMYK" if i == 1 else "RGB")  # a CMYK one
            status = "train" if c <= classes // 2 else ("query" if i % 2 == 0 else "gallery")
            rows.append(f"{relative} {item} {status}\n")
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n" + "".join(rows)
    (root / "list_eval_partition.txt").write_text(text)
    return root


FAKES = {"cub": fake_cub, "cars": fake_cars, "sop": fake_sop, "inshop": fake_inshop}
