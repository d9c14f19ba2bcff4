"""The Slurm path of `dmlbench sweep`, on submitit's local executor: submit, preempt, requeue."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from dmlbench.run.slurm import SlurmOptions, submit
from dmlbench.run.sweep import read_sweep

submitit = pytest.importorskip("submitit")


def preempt(job) -> None:
    """Send the task process Slurm's preemption signal (USR2), as Slurm does.
    (submitit's ``LocalJob._interrupt`` signals the controller, which does not
    forward USR2, so the task is found under it in /proc.)"""
    controller = job._process.pid
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == controller:  # the parent pid
            os.kill(int(stat.parent.name), signal.SIGUSR2)
            return
    raise AssertionError(f"no task process under the submitit controller {controller}")


def test_preempted_task_is_requeued_and_resumes_its_run(glyph_folder, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"output: {tmp_path / 'runs'}\n"
        "base: {backbone: vit_glyph_patch8_48, weights: none, epochs: 4, batch_size: 8,"
        " images_per_class: 2, checkpoint_every: 1, device: cpu}\n"
        "methods: [{method: linear-probe}]\n"
        f"datasets: ['folder:{glyph_folder}']\n"
        "seeds: [0]\n"
    )
    planned = read_sweep(grid)
    lines: list[str] = []
    (job,) = submit(planned, "submitit-local", tmp_path / "jobs", SlurmOptions(), lines.append)
    assert lines == [f"{planned[0].title}: submitted as job {job.job_id}"]
    # Preempt the task once its run has written a checkpoint (as Slurm would: USR2).
    deadline = time.time() + 120
    while not list((tmp_path / "runs").glob("*/checkpoints/step-*.safetensors")):
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.05)
    preempt(job)
    result = job.result()
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert result["run_dir"] == str(run_dir)  # the requeued task resumed the same run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed"] == 1
    log = job.stdout() + job.stderr()
    assert "this job is preempted" in log and "Requeued job" in log
    epochs = [json.loads(x)["epoch"] for x in (run_dir / "epochs.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    # Submitting again finds everything finished.
    again: list[str] = []
    assert submit(planned, "submitit-local", tmp_path / "jobs", SlurmOptions(), again.append) == []
    assert again == ["every run of the sweep has finished; nothing to submit"]


def test_tuning_workers_as_an_array_job_share_one_journal_study(wide_folder, tmp_path):
    """`dmlbench tune --executor submitit-local --workers 2`: two tasks drain the grid's
    rows on the journal file the executor defaults to, each slot once, and write the
    chosen settings."""
    import optuna
    import yaml
    from click.testing import CliRunner
    from optuna.storages.journal import JournalFileBackend

    from dmlbench.cli import main

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"output: {tmp_path / 'runs'}\n"
        "base: {backbone: vit_glyph_patch8_48, weights: none, batch_size: 4,"
        " images_per_class: 2, val_fraction: 0.34, device: cpu}\n"
        "methods: [{label: A, method: linear-probe}, {label: B, method: bitfit}]\n"
        f"datasets: ['folder:{wide_folder}']\n"
        "seeds: [0]\n"
        f"tune: {{trials: 2, epochs: 1, output: {tmp_path / 'tune'}, heartbeat_seconds: 1}}\n"
    )
    result = CliRunner().invoke(main, ["tune", str(grid), "--executor", "submitit-local",
                                       "--workers", "2", "--wait"])  # fmt: skip
    assert result.exit_code == 0, result.output
    journal = tmp_path / "tune" / "studies.journal"
    assert result.output.count(f"(studies in journal:{journal})") == 2
    assert result.output.count(f"finished, {tmp_path / 'tune' / 'chosen.yaml'}") == 2
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        assert [(t.state.name, t.user_attrs["slot"]) for t in trials] == [
            ("COMPLETE", 0), ("COMPLETE", 1)]  # fmt: skip
    chosen = yaml.safe_load((tmp_path / "tune" / "chosen.yaml").read_text())
    assert [row["label"] for row in chosen["methods"]] == ["A", "B"]


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory) -> Path:
    from .conftest import make_glyph_folder

    return make_glyph_folder(tmp_path_factory.mktemp("wide_folder"), n_classes=16)
