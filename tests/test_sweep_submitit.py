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
