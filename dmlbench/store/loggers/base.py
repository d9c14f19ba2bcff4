"""What a tracker is asked to record, and how names and values are flattened for it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# Epoch-record keys about training (logged under "train/"; every other number of
# the record is an evaluation result, under "eval/"), and counts not logged at all.
TRAIN_KEYS = ("loss", "lr", "train_images_per_s", "train_seconds")
SKIP_KEYS = ("epoch", "train_images", "queries", "lone_queries")


def metric_name(key: str) -> str:
    """``recall@1`` → ``recall_at_1``: MLflow names allow no ``@``; both trackers use
    the same names so one query works on either."""
    return key.replace("@", "_at_")


def numbers(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) record, keys joined with ``/``."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{metric_name(str(key))}"
        if isinstance(value, dict):
            out.update(numbers(value, f"{name}/"))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float) and math.isfinite(value):
            out[name] = float(value)
    return out


def epoch_values(record: dict[str, Any]) -> dict[str, float]:
    """An epoch record as ``train/…`` (loss, lr, throughput) and ``eval/…`` (metrics)."""
    values = {}
    for name, value in numbers(record).items():
        if name in SKIP_KEYS:
            continue
        values[f"{'train' if name in TRAIN_KEYS else 'eval'}/{name}"] = value
    return values


def summary_values(summary: dict[str, Any]) -> dict[str, float]:
    """The final summary's numbers: metrics, cost, time, parameters."""
    values = {}
    for section in ("metrics", "memory", "time", "params", "inference"):
        if isinstance(summary.get(section), dict):
            values.update(numbers(summary[section], f"final/{section}/"))
    return values


class RunLogger:
    """One tracker's view of a run; each call may raise (the caller handles it)."""

    name = "logger"

    def __init__(self, run_dir: Path, config, resumed_at_step: int | None):
        self.run_dir = run_dir

    def start(self, config: dict, summary: dict) -> None:
        """The resolved config (as parameters/text) and the run's identity."""

    def step(self, step: int, values: dict[str, float]) -> None:
        """Per optimizer step: ``train/step_loss``, ``train/step_lr``."""

    def epoch(self, record: dict) -> None:
        """Per epoch: the epoch record (loss, lr, metrics when evaluated)."""

    def finish(self, summary: dict, files: list[Path]) -> None:
        """The final summary and the run's files (config, summary, plots) as artifacts."""

    def close(self, status: str) -> None:
        """FINISHED, FAILED or KILLED."""
