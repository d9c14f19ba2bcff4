"""Weights & Biases: one W&B run per dmlbench run, in the project ``wandb_project``.

The W&B run id is kept in ``RUN_DIR/wandb.json`` so a resumed run continues its W&B
run (``resume="allow"`` with the same id); W&B's own files go to ``RUN_DIR/wandb/``.
Credentials are W&B's own business (``wandb login`` or ``WANDB_API_KEY`` in the
environment): dmlbench has no option for a key, so none can reach a config or a
run directory. ``WANDB_MODE=offline`` works as W&B documents it (sync later with
``wandb sync RUN_DIR/wandb``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dmlbench.atomic import write_json_atomic
from dmlbench.store.loggers.base import RunLogger, epoch_values, summary_values

RUN_ID_FILE = "wandb.json"
EPOCH_AXIS = "epoch"  # the x-axis of the epoch records (steps are the trainer's)


class WandbLogger(RunLogger):
    name = "wandb"

    def __init__(self, run_dir: Path, config, resumed_at_step: int | None):
        import wandb

        super().__init__(run_dir, config, resumed_at_step)
        stored = run_dir / RUN_ID_FILE
        self.resumed = stored.is_file()
        run_id = json.loads(stored.read_text())["run_id"] if self.resumed else None  # W&B draws one
        self.run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            name=run_dir.name,
            id=run_id,
            resume="allow" if self.resumed else None,  # a fresh run asks W&B nothing
            dir=str(run_dir),
            tags=["dmlbench"],
            settings=wandb.Settings(console="off"),  # the run's own log keeps the console
        )
        write_json_atomic(stored, {"run_id": self.run.id, "project": self.run.project})
        self.run.define_metric(EPOCH_AXIS)
        self.run.define_metric("epoch/*", step_metric=EPOCH_AXIS)
        self.last_step = resumed_at_step or 0
        self.epochs = config.epochs

    def start(self, config: dict, summary: dict) -> None:
        self.run.config.update(config, allow_val_change=True)
        self.run.summary.update({"dmlbench/method": summary.get("method_label", ""),
                                 "dmlbench/dataset": summary.get("dataset", ""),
                                 "dmlbench/run_dir": str(self.run_dir)})  # fmt: skip

    def step(self, step: int, values: dict[str, float]) -> None:
        self.last_step = max(self.last_step, step)
        self.run.log(values, step=step)

    def epoch(self, record: dict) -> None:
        values = {f"epoch/{k}": v for k, v in epoch_values(record).items()}
        self.run.log({**values, EPOCH_AXIS: record["epoch"]}, step=self.last_step)

    def finish(self, summary: dict, files: list[Path]) -> None:
        import wandb

        self.run.summary.update(summary_values(summary))
        if files:
            name = re.sub(r"[^\w.-]", "_", self.run_dir.name)  # W&B's artifact name rule
            artifact = wandb.Artifact(f"{name}-files", type="dmlbench-run")
            for path in files:
                artifact.add_file(str(path))
            self.run.log_artifact(artifact)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)
