"""Runs mirrored into the trackers people already watch (TensorBoard, MLflow, W&B).

A tracker is a copy for viewing, never the record: the run directory is
written first and alone decides what a run is. So every logger call goes
through :class:`Loggers`, which reports a tracker's first failure (a bad URI,
a full disk, a server gone) in one line and carries on without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmlbench.errors import UserError
from dmlbench.store.loggers.base import RunLogger, metric_name

__all__ = ["Loggers", "RunLogger", "make_loggers", "metric_name"]

# logger → importable package
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def check_installed(names: list[str]) -> None:
    """One line naming the extra to install, before any work is done."""
    for name in names:
        if importlib.util.find_spec(EXTRAS[name]) is None:
            raise UserError(
                f"--log {name}: {EXTRAS[name]} is not installed; pip install 'dmlbench[{name}]'"
            )


def make_loggers(config, run_dir: Path, resumed_at_step: int | None, echo: Callable) -> Loggers:
    """The loggers ``config.log`` names, opened on ``run_dir``."""
    check_installed(list(config.log))
    made: list[RunLogger] = []
    for name in config.log:
        if name == "tensorboard":
            from dmlbench.store.loggers.tensorboard import TensorBoardLogger as kind
        elif name == "wandb":
            from dmlbench.store.loggers.wandb import WandbLogger as kind
        else:
            from dmlbench.store.loggers.mlflow import MLflowLogger as kind
        try:
            made.append(kind(run_dir, config, resumed_at_step))
        except Exception as e:  # noqa: BLE001 - unreachable or unwritable: go on without it
            echo(_failure(name, e))
    return Loggers(made, echo)


def _failure(name: str, error: Exception) -> str:
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return (
        f"warning: {name} logging failed ({type(error).__name__}: {text}); the run goes on "
        "without it, its run directory is complete"
    )


class Loggers:
    """Calls every logger; one that raises is reported once and dropped."""

    def __init__(self, loggers: list[RunLogger], echo: Callable = print):
        self.loggers = list(loggers)
        self.echo = echo

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def _each(self, call: str, *args: Any) -> None:
        for logger in list(self.loggers):
            try:
                getattr(logger, call)(*args)
            except Exception as e:  # noqa: BLE001 - any tracker fault: the run goes on
                self.loggers.remove(logger)
                self.echo(_failure(logger.name, e))
                with contextlib.suppress(Exception):  # already reported
                    logger.close("FAILED")

    def start(self, config: dict, summary: dict) -> None:
        self._each("start", config, summary)

    def step(self, step: int, values: dict[str, float]) -> None:
        self._each("step", step, values)

    def epoch(self, record: dict) -> None:
        self._each("epoch", record)

    def finish(self, summary: dict, files: list[Path]) -> None:
        self._each("finish", summary, files)
        self.close("FINISHED")

    def close(self, status: str) -> None:
        self._each("close", status)
        self.loggers.clear()
