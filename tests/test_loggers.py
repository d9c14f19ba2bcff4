"""`--log tensorboard` / `--log mlflow`: a tiny run read back with each tracker's own
reader must show the run's own numbers; a tracker that fails never stops a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from tests.conftest import TINY_BACKBONE

EPOCHS = 2


def tiny_run(folder: Path, output: Path, *extra) -> tuple[object, Path | None]:
    args = ["run", "--dataset", f"folder:{folder}", "--backbone", TINY_BACKBONE,
            "--weights", "none", "--epochs", str(EPOCHS), "--batch-size", "8",
            "--images-per-class", "2", "--output", str(output), *map(str, extra)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    run_dirs = sorted(output.glob("*/summary.json"))
    return result, run_dirs[-1].parent if run_dirs else None


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines()]
    return summary, epochs


@pytest.fixture(scope="module")
def logged_run(glyph_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("loggers")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    from mlflow.tracking import MlflowClient

    # artifacts of a sqlite store default to ./mlruns (the working folder): keep them here
    MlflowClient(tracking_uri=uri).create_experiment("tests", str(root / "artifacts"))
    result, run_dir = tiny_run(glyph_folder, root / "runs", "--log", "tensorboard,mlflow",
                               "--mlflow-uri", uri, "--mlflow-experiment", "tests")  # fmt: skip
    assert result.exit_code == 0, result.output
    return run_dir, uri


def test_tensorboard_events_hold_the_runs_numbers(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = logged_run
    summary, epochs = read_run(run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    final = events.Scalars("final/metrics/recall_at_1")
    assert [e.step for e in final] == [EPOCHS]
    assert final[0].value == pytest.approx(summary["metrics"]["recall@1"], abs=1e-6)
    assert events.Scalars("final/params/tunable")[0].value == summary["params"]["tunable"]
    per_epoch = events.Scalars("epoch/eval/map_at_r")
    assert [e.step for e in per_epoch] == [1, 2]
    assert [e.value for e in per_epoch] == pytest.approx([r["map@r"] for r in epochs], abs=1e-6)
    assert [e.value for e in events.Scalars("epoch/train/loss")] == pytest.approx(
        [r["loss"] for r in epochs], rel=1e-6
    )
    steps = events.Scalars("train/step_loss")
    assert [e.step for e in steps] == list(range(1, len(steps) + 1))
    assert len(steps) == EPOCHS * (24 // 8)  # 24 training images, batches of 8
    assert len(events.Scalars("train/step_lr")) == len(steps)
    assert "plots/curves" in events.Tags()["images"]
    assert {"config/text_summary", "summary/text_summary"} <= set(events.Tags()["tensors"])


def test_mlflow_run_holds_the_runs_numbers(logged_run):
    import mlflow
    from mlflow.tracking import MlflowClient

    run_dir, uri = logged_run
    summary, epochs = read_run(run_dir)
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["tests"])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.dmlbench.run_dir"] == str(run_dir)
    assert run["metrics.final/metrics/recall_at_1"] == pytest.approx(
        summary["metrics"]["recall@1"], abs=1e-12
    )
    assert run["metrics.final/metrics/map_at_r"] == pytest.approx(summary["metrics"]["map@r"])
    assert run["params.method"] == "linear-probe" and run["params.epochs"] == str(EPOCHS)
    assert run["params.backbone"] == TINY_BACKBONE
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(run["run_id"], "epoch/eval/recall_at_1")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], r["recall@1"]) for r in epochs]
    assert len(client.get_metric_history(run["run_id"], "train/step_loss")) == EPOCHS * 3
    artifacts = {a.path for a in client.list_artifacts(run["run_id"])}
    assert artifacts == {"config.yaml", "summary.json", "curves.png"}
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run["run_id"]


def test_an_unreachable_tracker_is_reported_once_and_the_run_goes_on(glyph_folder, tmp_path):
    result, run_dir = tiny_run(glyph_folder, tmp_path / "runs", "--log", "mlflow",
                               "--mlflow-uri", "http://127.0.0.1:9")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: mlflow logging failed") == 1
    summary, epochs = read_run(run_dir)
    assert summary["status"] == "finished" and len(epochs) == EPOCHS


def test_a_tracker_failing_mid_run_is_dropped(glyph_folder, tmp_path, monkeypatch):
    from dmlbench.store.loggers.tensorboard import TensorBoardLogger

    def full_disk(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardLogger, "epoch", full_disk)
    result, run_dir = tiny_run(glyph_folder, tmp_path / "runs", "--log", "tensorboard")
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.output.splitlines() if "warning" in line]
    assert "tensorboard logging failed (OSError" in warning and "No space left" in warning
    summary, epochs = read_run(run_dir)
    assert summary["status"] == "finished" and len(epochs) == EPOCHS


def test_a_missing_tracker_package_is_one_line_before_any_work(glyph_folder, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    missing = {"mlflow", "wandb"}  # as on a machine without the extras
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else real(name, *a))  # fmt: skip
    result, run_dir = tiny_run(glyph_folder, tmp_path / "runs", "--log", "mlflow")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "pip install 'dmlbench[mlflow]'" in line
    assert run_dir is None and not (tmp_path / "runs").exists()
    bad = CliRunner().invoke(main, ["run", "--log", "wandb", "--epochs", "0"])
    assert bad.exit_code == 2 and "pip install 'dmlbench[wandb]'" in bad.output


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder is ./mlruns
    from dmlbench.config import RunConfig
    from dmlbench.store.loggers.mlflow import MLflowLogger

    config = RunConfig(mlflow_uri=f"sqlite:///{tmp_path / 'm.db'}", epochs=1)
    first = MLflowLogger(tmp_path, config, None)
    first.close("KILLED")
    again = MLflowLogger(tmp_path, config, resumed_at_step=5)
    assert again.run_id == first.run_id and again.resumed
    assert again.client.get_run(again.run_id).info.status == "RUNNING"


def wandb_records(path: Path) -> list:
    """The records of a W&B ``.wandb`` file, parsed with W&B's own protobuf messages.

    W&B ships no Python reader for its run files any more (its Go core reads them), so
    the framing is read here: a 7-byte header, then LevelDB log records (CRC32, length,
    type; FULL or FIRST/MIDDLE/LAST pieces) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    records, pending = [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def test_wandb_offline_run_holds_the_runs_numbers_and_a_resume_continues_it(
    glyph_folder, tmp_path, monkeypatch
):
    """W&B's offline mode: the run's config, per-step loss, epoch records, summary and
    files, read back from W&B's own run file; a second logger on the run directory
    continues the same W&B run id; no credential is written anywhere."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # must never reach a file
    wandb.teardown()  # W&B keeps its settings in a process-wide singleton: start clean
    try:
        _wandb_round_trip(glyph_folder, tmp_path)
    finally:
        wandb.teardown()


def _wandb_round_trip(glyph_folder: Path, tmp_path: Path) -> None:
    import wandb

    result, run_dir = tiny_run(glyph_folder, tmp_path / "runs", "--log", "wandb",
                               "--wandb-project", "tests")  # fmt: skip
    assert result.exit_code == 0, result.output
    # W&B's service process buffers a run file and writes it when it closes the run's
    # stream, which can come after run.finish() returns (a process's exit waits for it):
    # the file held only its 7-byte header in one CI run. Shutting the service down
    # waits for every file to be closed.
    wandb.teardown()
    assert "warning" not in result.output
    summary, epochs = read_run(run_dir)
    run_id = json.loads((run_dir / "wandb.json").read_text())["run_id"]
    (run_file,) = run_dir.glob(f"wandb/offline-run-*/run-{run_id}.wandb")
    records = wandb_records(run_file)
    kinds = [r.WhichOneof("record_type") for r in records]
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert len(runs) == 1, f"{run_file}: {run_file.stat().st_size} bytes, records {kinds}"
    (run,) = runs
    assert run.project == "tests" and run.display_name == run_dir.name
    config = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update(_items(r.config.update))
    assert config["method"] == "linear-probe" and config["epochs"] == EPOCHS
    history = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    steps = [h for h in history if "train/step_loss" in h]
    assert len(steps) == EPOCHS * 3
    per_epoch = [(h["epoch"], h["epoch/eval/recall_at_1"]) for h in history if "epoch" in h]
    assert per_epoch == [(r["epoch"], pytest.approx(r["recall@1"])) for r in epochs]
    final = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            final.update(_items(r.summary.update))
    assert final["final/metrics/recall_at_1"] == pytest.approx(summary["metrics"]["recall@1"])
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert {m.path for m in artifact.manifest.contents} == {"config.yaml", "summary.json",
                                                            "curves.png"}  # fmt: skip
    assert "exit" in kinds
    for path in run_dir.rglob("*"):  # the key is W&B's, from the environment, never stored
        if path.is_file():
            assert b"k" * 40 not in path.read_bytes(), path
    from dmlbench.config import RunConfig
    from dmlbench.store.loggers.wandb import WandbLogger

    again = WandbLogger(run_dir, RunConfig(wandb_project="tests", epochs=1), resumed_at_step=6)
    assert again.run.id == run_id and again.resumed
    again.close("FINISHED")
