"""MLflow: one MLflow run per dmlbench run, in the experiment ``mlflow_experiment``.

The MLflow run id is kept in ``RUN_DIR/mlflow.json`` so a resumed run continues
its MLflow run. Step metrics are sent in batches (one request per 50 steps and
at each epoch end), so a remote tracking server costs no time per step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dmlbench.atomic import write_json_atomic
from dmlbench.store.loggers.base import RunLogger, epoch_values, summary_values

RUN_ID_FILE = "mlflow.json"
BATCH_STEPS = 50
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value


class MLflowLogger(RunLogger):
    name = "mlflow"

    def __init__(self, run_dir: Path, config, resumed_at_step: int | None):
        # An unreachable server must fail in seconds, not after MLflow's minutes of
        # retries; a user's own settings win.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        super().__init__(run_dir, config, resumed_at_step)
        self.client = MlflowClient(tracking_uri=config.mlflow_uri)  # None: MLflow's default
        self.pending: list = []
        self.epochs = config.epochs
        stored = run_dir / RUN_ID_FILE
        self.resumed = stored.is_file()
        if self.resumed:
            import json

            self.run_id = json.loads(stored.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(config.mlflow_experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(config.mlflow_experiment)
        )
        run = self.client.create_run(
            experiment_id, run_name=run_dir.name, tags={"dmlbench.run_dir": str(run_dir)}
        )
        self.run_id = run.info.run_id
        write_json_atomic(stored, {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri})

    def start(self, config: dict, summary: dict) -> None:
        if self.resumed:  # parameters are immutable in MLflow and were logged already
            return
        from mlflow.entities import Param

        flat = _flatten(config)
        params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in flat.items()]
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self.client.set_tag(self.run_id, "dmlbench.method", summary.get("method_label", ""))
        self.client.set_tag(self.run_id, "dmlbench.dataset", summary.get("dataset", ""))

    def step(self, step: int, values: dict[str, float]) -> None:
        self._queue(values, step)
        if len(self.pending) >= BATCH_STEPS * max(1, len(values)):
            self._flush()

    def epoch(self, record: dict) -> None:
        self._queue({f"epoch/{k}": v for k, v in epoch_values(record).items()}, record["epoch"])
        self._flush()

    def finish(self, summary: dict, files: list[Path]) -> None:
        self._queue(summary_values(summary), self.epochs)
        self._flush()
        for path in files:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self._flush()
        self.client.set_terminated(self.run_id, status=status)

    def _queue(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending.extend(Metric(k, v, now, step) for k, v in values.items())

    def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:1000], self.pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)


def _flatten(config: dict) -> dict:
    """``method_options: {n: 10}`` → ``method_options.n: 10`` (MLflow parameters are
    flat), as the run store's table flattens it."""
    import pandas as pd

    return pd.json_normalize(config, sep=".").iloc[0].to_dict()
