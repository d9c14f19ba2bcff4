"""A dmlbench dataset plugin: scikit-learn's handwritten digits (offline, 1,797 images).

Digits 0–4 train, 5–9 are the unseen test classes. The 8×8 images are written
once as 48×48 PNGs into dmlbench's cache, and the records point at them.
"""

from dmlbench.plugin import (
    DatasetSpec,
    ImageRecord,
    Recipe,
    TransformSpec,
    cache_root,
    register_dataset,
)


@register_dataset("digits")
class Digits(DatasetSpec):
    description = "scikit-learn's 8x8 handwritten digits (0-4 train, 5-9 test)"
    transform = TransformSpec(flip=False, crop_scale=(0.8, 1.0), resize_ratio=1.0)
    # Unset keys keep the default recipe (the VPTSP reference's CUB settings).
    recipe = Recipe(backbone="vit_glyph_patch8_48", epochs=2, batch_size=20, images_per_class=4,
                    optimizer="adamw", lr=3e-4, proxy_lr=1e-2)  # fmt: skip

    @property
    def num_train_classes(self) -> int:
        return 5

    def location(self) -> str:
        return str(cache_root() / "digits")

    def records(self) -> list[ImageRecord]:
        from PIL import Image
        from sklearn.datasets import load_digits

        digits, folder = load_digits(), cache_root() / "digits"
        records = []
        for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            path = folder / f"{label}" / f"{i:04d}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = (image * 255 / 16).astype("uint8")
                Image.fromarray(pixels).resize((48, 48), Image.NEAREST).convert("RGB").save(path)
            records.append(ImageRecord(path, str(label), "train" if label < 5 else "test"))
        return records
