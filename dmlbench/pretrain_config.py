"""Settings of ``dmlbench pretrain``; a module of its own so the CLI can show
the defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PretrainConfig:
    epochs: int = 20
    batch_size: int = 64
    classes: int = 1000  # the first N pretrain classes (sorted by code point)
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.1
    images_per_class: int = 30
    seed: int = 0
    bf16: bool = True  # CPU autocast; ~25% faster here, and a one-off job
