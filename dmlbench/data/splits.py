"""Which images a run trains on and which it is scored on: test, or validation classes.

Settings are chosen on validation classes, never on test ones (Musgrave et
al. 2020: test-set feedback is the field's first pitfall). A dataset either
ships its own validation classes (the glyph benchmark: a list disjoint from
pretrain, train and test), or they are carved from its training classes: a
fixed fraction, drawn with a fixed seed (both stored in the run's config), so
a tuning run trains on the rest and is scored on them, and the test images
are not even read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from dmlbench.data.image_list import ImageRecord
from dmlbench.errors import UserError

VAL = "val"


@dataclass(frozen=True)
class SplitView:
    records: list[ImageRecord]  # only the images this run touches
    train_split: str
    eval_splits: tuple[str, ...]
    val_classes: tuple[str, ...] = ()  # carved from the training classes (empty: shipped)


def carve_validation(
    train_labels: list[str], fraction: float, seed: int, dataset: str
) -> list[str]:
    """``fraction`` of the training classes (at least one, leaving at least two),
    drawn with ``seed`` from the sorted class list: the same on every machine."""
    classes = sorted(set(train_labels))
    count = round(fraction * len(classes))
    if not 0 < fraction < 1 or count < 1 or len(classes) - count < 2:
        raise UserError(
            f"dataset {dataset}: val_fraction {fraction} of its {len(classes)} training classes "
            f"leaves {count} validation and {len(classes) - count} training classes; give a "
            "fraction that leaves at least 1 and 2"
        )
    return sorted(random.Random(seed).sample(classes, count))


def split_view(
    records: list[ImageRecord],
    split: str,
    train_split: str,
    eval_splits: tuple[str, ...],
    shipped_val: str | None,
    fraction: float,
    seed: int,
    dataset: str,
) -> SplitView:
    """The run's records: train + test, or train + validation."""
    if split == "test":
        keep = {train_split, *eval_splits}
        return SplitView([r for r in records if r.split in keep], train_split, eval_splits)
    if shipped_val is not None:
        keep = {train_split, shipped_val}
        return SplitView([r for r in records if r.split in keep], train_split, (shipped_val,))
    train = [r for r in records if r.split == train_split]
    val_classes = set(carve_validation([r.label for r in train], fraction, seed, dataset))
    view = [replace(r, split=VAL) if r.label in val_classes else r for r in train]
    return SplitView(view, train_split, (VAL,), tuple(sorted(val_classes)))
