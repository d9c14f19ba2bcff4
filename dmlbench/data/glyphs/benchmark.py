"""The offline glyph benchmarks (CUB-shaped: 100 train, 100 val, 100 test classes).

``glyphs`` (the default) renders from 56 Google Fonts families shipped as PyPI
packages, in the ImageNet-21k → CUB regime: pretraining covers the styles
broadly, downstream classes are new, fine-grained accented letters (see
``classes_v2`` and ``README.md`` beside this file). ``glyphs-v1`` is the first
benchmark (matplotlib's fonts, damaged train/test images), kept so its
results stay reproducible.
"""

from __future__ import annotations

import dataclasses

from dmlbench.assets import GLYPH_V1_BACKBONE, GLYPH_V2_BACKBONE
from dmlbench.data.glyphs.classes import shipped_class_lists
from dmlbench.data.glyphs.classes_v2 import shipped_class_lists_v2
from dmlbench.data.glyphs.render import GlyphPartConfig, GlyphStyle, ensure_part
from dmlbench.data.glyphs.render_v2 import STYLE_V2
from dmlbench.data.image_list import ImageRecord, read_csv_records
from dmlbench.data.spec import DatasetSpec, Recipe, register_dataset
from dmlbench.data.transforms import TransformSpec
from dmlbench.paths import cache_root

IMAGES_PER_CLASS = 40
# The train/test classes are rendered harder than the pretraining classes
# (the shipped backbone saw clean glyphs): a stray stroke, a small occluder,
# blur, more jitter. On the clean style an untrained head on the backbone
# already reached R@1 0.993 on the test classes and nothing could improve it;
# here it starts at 0.65 and fine-tuning has room (as from ImageNet to CUB).
EVAL_STYLE = GlyphStyle(
    max_rotation_deg=20.0,
    max_shift_px=5.0,
    font_size_jitter=0.2,
    clutter_strokes=1,
    max_occlusion=0.06,
    max_blur=0.8,
)


@register_dataset("glyphs-v1")
class GlyphsV1(DatasetSpec):
    description = (
        "glyphs v1: Unicode glyphs from matplotlib's fonts, damaged train/test images "
        "(offline; generated on first use)"
    )
    val_split = "val"
    # Mirrored glyphs can be other glyphs (b/d, p/q): no flips.
    transform = TransformSpec(flip=False, crop_scale=(0.6, 1.0), resize_ratio=1.0, ink=True)
    recipe = Recipe(
        backbone=GLYPH_V1_BACKBONE,
        weights="pretrained",
        epochs=8,
        batch_size=64,
        images_per_class=4,
        optimizer="adamw",
        lr=3e-4,  # full FT: R@1 0.781 at 3e-4 vs 0.756 at 1e-4 (8 epochs, seed 0)
        proxy_lr=1e-2,
        weight_decay=1e-4,
        # The glyph recipe's own choices (docs/fidelity.md): per-step cosine to 0,
        # clipping at 10, Proxy-Anchor's original loss, its kaiming proxy init
        # (VPTSP initialises its own O as the reference does), no AMP on CPU.
        proxy_init="kaiming",
        sampler="m-per-class",
        lr_schedule="cosine-steps",
        cosine_epochs=None,
        lr_min=0.0,
        grad_clip=10.0,
        loss_positive_divisor="present",
        amp="auto",
        eval_every=0,
        # A head on frozen features learns a map that carries over to unseen
        # classes only when a batch shows it many classes: 16 classes × 4 images
        # left R@1 where the untrained head was (0.649 vs 0.647, 4 epochs, seed 0,
        # at lr 3e-4 or 3e-3); 64 classes × 1 image at lr 3e-3 gave 0.663
        # (Proxy-Anchor needs no class-balanced batches).
        per_method={"linear-probe": {"lr": 3e-3, "images_per_class": 1}},
    )

    def __init__(self, images_per_class: int = IMAGES_PER_CLASS):
        self.part = GlyphPartConfig("eval", images_per_class, style=EVAL_STYLE)
        # validation classes: 100 the shipped backbone never saw (a part of their own,
        # so the train/test part keeps its fingerprint and cached images)
        self.val_part = GlyphPartConfig("v1-val", images_per_class, style=EVAL_STYLE)

    @property
    def num_train_classes(self) -> int:
        return len(shipped_class_lists()["train"])

    def split_sizes(self) -> dict[str, tuple[int, int]]:
        per_class = self.part.images_per_class
        lists = shipped_class_lists()
        return {s: (len(lists[s]), len(lists[s]) * per_class) for s in ("train", "val", "test")}

    def records(self) -> list[ImageRecord]:
        return [
            *read_csv_records(ensure_part(self.part) / "manifest.csv"),
            *read_csv_records(ensure_part(self.val_part) / "manifest.csv"),
        ]

    def location(self) -> str:
        return str(cache_root() / "glyphs")

    def class_caption(self, label: str) -> str:
        """``U+00E9`` → ``é U+00E9``: the character is what a reader recognises."""
        try:
            return f"{chr(int(label.removeprefix('U+'), 16))} {label}"
        except ValueError:
            return label


@register_dataset("glyphs")
class Glyphs(GlyphsV1):
    description = (
        "accented Latin letters in 56 Google Fonts families, a backbone pretrained on the "
        "other letters and symbols (offline; generated on first use)"
    )
    # Settings carried over from glyphs-v1 until `dmlbench tune` chooses them on the
    # validation classes (none were chosen on this benchmark).
    recipe = dataclasses.replace(GlyphsV1.recipe, backbone=GLYPH_V2_BACKBONE)

    def __init__(self, images_per_class: int = IMAGES_PER_CLASS):
        self.part = GlyphPartConfig("v2-eval", images_per_class, style=STYLE_V2)

    @property
    def num_train_classes(self) -> int:
        return len(shipped_class_lists_v2()["train"])

    def split_sizes(self) -> dict[str, tuple[int, int]]:
        per_class = self.part.images_per_class
        lists = shipped_class_lists_v2()
        return {s: (len(lists[s]), len(lists[s]) * per_class) for s in ("train", "val", "test")}

    def records(self) -> list[ImageRecord]:
        return read_csv_records(ensure_part(self.part) / "manifest.csv")


# The class of the benchmark named "glyphs" before 0.2 (now "glyphs-v1"); goes next release.
GlyphDataset = GlyphsV1
