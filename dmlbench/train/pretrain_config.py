"""Settings of ``dmlbench pretrain``; a module of its own so the CLI can show
the defaults without importing torch. ``dmlbench pretrain``'s options are made
from these fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dmlbench.options import option


@dataclass
class PretrainConfig:
    benchmark: Literal["glyphs", "glyphs-v1"] = option(
        "glyphs",
        "Whose pretraining classes and fonts (glyphs: font packages; glyphs-v1: "
        "matplotlib's fonts; re-make that one with --classes 1000 --images-per-class 30).",
    )
    epochs: int = option(20, "Training epochs.")
    batch_size: int = option(64, "Batch size.")
    classes: int | None = option(
        None, "Pretrain on the first N pretrain classes (by code point). [default: all]"
    )
    lr: float = option(1e-3, "AdamW learning rate.")
    weight_decay: float = option(0.05, "AdamW weight decay.")
    warmup_fraction: float = option(0.05, "Linear warm-up, as a fraction of all steps.")
    label_smoothing: float = option(0.1, "Label smoothing of the cross-entropy.")
    images_per_class: int = option(60, "Rendered images per class.")
    seed: int = option(0, "Random seed.")
    bf16: bool = option(True, "CPU bf16 autocast (~25% faster here).")
    stop_after: int | None = option(
        None,
        "Stop after this many epochs of the schedule, keeping the state to continue later "
        "(the shipped glyphs backbone is the epoch-14 save of the 20-epoch schedule). "
        "[default: all epochs]",
    )

    def __post_init__(self) -> None:
        for key, low in (("epochs", 1), ("batch_size", 1), ("classes", 2), ("images_per_class", 1)):
            if getattr(self, key) is not None and getattr(self, key) < low:
                raise ValueError(f"{key} must be ≥ {low}, got {getattr(self, key)}")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.epochs:
            raise ValueError(
                f"stop_after must be in 1..epochs ({self.epochs}), got {self.stop_after}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
