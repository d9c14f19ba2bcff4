"""What a run records as it goes: the bookkeeping a checkpoint carries, the best
test epoch (labelled), and the line printed per epoch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dmlbench.train.trainer import EpochProgress


@dataclass
class Progress:
    """The run's bookkeeping that a checkpoint carries besides tensors."""

    epoch: int = 0  # completed epochs
    history: list = dataclasses.field(default_factory=list)  # epoch records so far
    metrics: dict = dataclasses.field(default_factory=dict)  # the newest evaluation
    train_seconds: float = 0.0
    train_images: int = 0
    wall_seconds: float = 0.0
    resumed: int = 0
    open_epoch: EpochProgress | None = None  # an epoch interrupted mid-way
    method_state: dict = dataclasses.field(default_factory=dict)  # the method's report at start

    def finish_epoch(self, record: dict, metrics: dict) -> None:
        self.epoch = record["epoch"]
        self.history.append(record)
        self.metrics = dict(metrics)
        self.train_seconds += record["train_seconds"]
        self.train_images += record["train_images"]


BEST_METRICS = ("recall@1", "map@r", "map@r_paper")


def best_over_epochs(history: list[dict], split: str = "test") -> dict | None:
    """Each metric's maximum over the evaluated epochs, and where it was reached.

    This is what the VPTSP reference code records (and the paper reports): a
    choice made on the test split. dmlbench reports the final epoch; this
    figure exists only to line results up with such papers, is labelled so,
    and is never used to choose anything.
    """
    evaluated = [r for r in history if "recall@1" in r]
    if not evaluated:
        return None
    best: dict = {
        "note": f"maximum over the evaluated epochs on the {split} split, as the VPTSP "
        "reference reports; not the final epoch, never used for any choice",
        "epochs_evaluated": len(evaluated),
    }
    for key in BEST_METRICS:
        top = max(evaluated, key=lambda r: r.get(key, float("-inf")))
        if key in top:
            best[key], best[f"{key}_epoch"] = top[key], top["epoch"]
    return best


def epoch_line(record: dict, ks) -> str:
    line = (
        f"epoch {record['epoch']}: loss {record['loss']:.4f}, "
        f"{record['train_images_per_s']:.0f} img/s"
    )
    if "map@r" in record:
        recalls = " ".join(f"R@{k} {record[f'recall@{k}']:.4f}" for k in ks)
        line += f" | {recalls} MAP@R {record['map@r']:.4f} RP {record['r_precision']:.4f}"
    return line
