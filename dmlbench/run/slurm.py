"""Sweeps on Slurm (or submitit's local executor) through submitit.

Each pending run of a sweep becomes one task of an array job. A task does
what ``dmlbench run`` does, in the task's process: a fresh run, or a resume
of the run directory an earlier attempt left behind (found by the same
config key the local sweep uses). On preemption or time-out Slurm signals the task;
submitit calls :meth:`SweepTask.checkpoint`, which requeues the same task, and
the requeued task resumes the run from its newest checkpoint. So the run
store stays the single source of truth: no state lives in submitit's pickles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import yaml

from dmlbench.config import RunConfig, to_yaml
from dmlbench.errors import UserError
from dmlbench.run.sweep import PlannedRun, finished_keys, interrupted_keys


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    mem_gb: int = 32
    timeout_min: int = 24 * 60
    array_parallelism: int = 32
    max_requeues: int = 10  # preemptions/time-outs before submitit gives up on a task


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(
            "the slurm executor needs submitit: pip install 'dmlbench[slurm]'"
        ) from None
    return submitit


class SweepTask:
    """One run of a sweep as a submitit task (picklable, stateless)."""

    def __call__(self, config_yaml: str, key: str) -> dict:
        from dmlbench.run.execute import execute

        config = RunConfig(**yaml.safe_load(config_yaml))
        output = Path(config.output)
        done = finished_keys(output).get(key)
        if done is None:
            resume = interrupted_keys(output).get(key)
            done = execute(config, echo=print, resume=resume).run_dir
        return {"run_dir": str(done), "key": key}

    def checkpoint(self, *args, **kwargs):
        """Requeue the same task; it resumes from the run's own checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def make_executor(kind: str, folder: Path, options: SlurmOptions, name: str = "dmlbench-sweep"):
    submitit = _submitit()
    if kind == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=options.max_requeues)
        executor.update_parameters(timeout_min=options.timeout_min)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        slurm_partition=options.partition,
        gpus_per_node=options.gpus_per_run,
        tasks_per_node=1,
        cpus_per_task=options.cpus_per_run,
        mem_gb=options.mem_gb,
        timeout_min=options.timeout_min,
        slurm_array_parallelism=options.array_parallelism,
        name=name,
    )
    return executor


def submit(
    planned: list[PlannedRun],
    kind: str,
    folder: Path,
    options: SlurmOptions,
    echo: Callable[[str], None] = print,
) -> list:
    """Submit every run that is not finished as one array job; returns the jobs."""
    todo = [r for r in planned if r.key not in finished_keys(Path(r.config.output))]
    if not todo:
        echo("every run of the sweep has finished; nothing to submit")
        return []
    executor = make_executor(kind, folder, options)
    configs = [to_yaml(r.config) for r in todo]
    jobs = executor.map_array(SweepTask(), configs, [r.key for r in todo])
    for run, job in zip(todo, jobs, strict=True):
        echo(f"{run.title}: submitted as job {job.job_id}")
    return jobs


class TuneTask:
    """One tuning worker as a submitit task (picklable, stateless): it drains the grid's
    rows on a shared storage, as ``dmlbench tune`` does, and writes ``chosen.yaml``
    (every worker the same file, atomically). Its state is the storage's: a requeued
    or repeated task continues the studies."""

    def __call__(self, bases_yaml: list[str], settings: dict, output: str, storage: str,
                 test_output: str, seeds: list[int]) -> str:  # fmt: skip
        from dmlbench.run.tune import TuneSettings, chosen_sweep, tune_rows, write_if_changed

        bases = [RunConfig(**yaml.safe_load(text)) for text in bases_yaml]
        out = Path(output)
        results = tune_rows(bases, TuneSettings(**settings), out, storage=storage)
        path = out / "chosen.yaml"
        write_if_changed(path, chosen_sweep(results, test_output, seeds))
        return str(path)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submit_tune(
    bases: list[RunConfig], settings, output: Path, storage: str, test_output: str,
    seeds: list[int], workers: int, kind: str, folder: Path, options: SlurmOptions,
    echo: Callable[[str], None] = print,
) -> list:  # fmt: skip
    """Submit ``workers`` tuning tasks as one array job on the shared ``storage``."""
    executor = make_executor(kind, folder, options, name="dmlbench-tune")
    configs = [to_yaml(base) for base in bases]
    task = (configs, dataclasses.asdict(settings), str(output), storage, test_output, seeds)
    jobs = executor.map_array(TuneTask(), *[[value] * workers for value in task])
    for job in jobs:
        echo(f"tuning worker submitted as job {job.job_id} (studies in {storage})")  # no password
    return jobs
