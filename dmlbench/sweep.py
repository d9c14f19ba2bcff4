"""``dmlbench sweep FILE.yaml``: a grid of runs, resumable, N at a time.

The file::

    output: results/runs/table1-glyphs    # where the runs go
    base: {epochs: 8}                     # run-config keys shared by every run
    methods:                              # one entry per table row
      - {label: "Linear probe", method: linear-probe}
      - {label: "VPT (B)", method: vpt, method_options: {bias: true}}
      - {label: "VPTSP-G", method: vptsp-g, method_options: {alpha: 0.7},
         only_datasets: [cars]}           # a row for some datasets only
    datasets: [glyphs]
    backbones: [null]                     # null: the dataset's recipe; or a mapping
                                          # {backbone: …, embedding_dim: 512}
    seeds: [0, 1, 2]

A combination counts as done when a finished run with the same resolved
config (``config_key``) is in the output folder, so a sweep stopped at any
moment continues where it was. Each run is a separate ``dmlbench run``
process: one failing (or killed) run never takes the sweep down.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from dmlbench.config import RunConfig, config_key, make_config, read_yaml, to_yaml
from dmlbench.errors import UserError

GRID_KEYS = {"output", "base", "methods", "datasets", "backbones", "seeds"}


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig  # resolved: recipe defaults filled in
    key: str

    @property
    def title(self) -> str:
        c = self.config
        return f"{c.label or c.method} seed {c.seed} on {c.dataset} ({c.backbone})"


def read_sweep(path: Path) -> list[PlannedRun]:
    from dmlbench.run import prepare

    spec = read_yaml(path)
    unknown = sorted(set(spec) - GRID_KEYS)
    if unknown:
        raise UserError(
            f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(GRID_KEYS))}"
        )
    methods = spec.get("methods") or [{"method": "linear-probe"}]
    if not isinstance(methods, list) or not all(isinstance(m, dict) for m in methods):
        raise UserError(f"{path}: methods must be a list of mappings (method, method_options …)")
    planned = []
    base = {**(spec.get("base") or {}), "output": spec.get("output", "results/runs")}
    for entry in methods:
        method = dict(entry)
        only = method.pop("only_datasets", None)
        for dataset in spec.get("datasets") or ["glyphs"]:
            if only is not None and dataset not in only:
                continue
            for backbone in spec.get("backbones") or [None]:
                for seed in spec.get("seeds") or [0]:
                    values = {**base, **method, "dataset": dataset, "seed": seed}
                    if isinstance(backbone, dict):  # e.g. {backbone: …, embedding_dim: 512}
                        values.update(backbone)
                    elif backbone is not None:
                        values["backbone"] = backbone
                    config = make_config(None, values)
                    resolved = prepare(config, require_data=False)[0]
                    planned.append(PlannedRun(resolved, config_key(resolved)))
    return planned


def finished_keys(output: Path) -> dict[str, Path]:
    """config_key → run dir of every finished run under ``output`` (unreadable ones skipped)."""
    return _runs_by_state(output)[0]


def interrupted_keys(output: Path) -> dict[str, Path]:
    """config_key → the newest run dir that was killed or interrupted mid-way
    (status "running" or "interrupted", or no summary yet): the sweep resumes
    it rather than starting over."""
    return _runs_by_state(output)[1]


def _runs_by_state(output: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    finished, interrupted = {}, {}
    for config_path in sorted(Path(output).glob("*/config.yaml")):
        run_dir = config_path.parent
        try:
            config = RunConfig(**yaml.safe_load(config_path.read_text()))
        except (OSError, ValueError, TypeError, yaml.YAMLError):
            continue  # report lists it; the sweep never deletes anything
        try:
            status = json.loads((run_dir / "summary.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            status = None
        key = config_key(config)
        if status == "finished":
            finished[key] = run_dir
        elif status in (None, "running", "interrupted"):
            interrupted[key] = run_dir  # sorted by name = by start time: newest wins
    for key in finished:
        interrupted.pop(key, None)
    return finished, interrupted


def _result_line(run_dir: Path | None) -> str:
    if run_dir is None:
        return ""
    try:
        metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
        return f" R@1 {metrics['recall@1']:.4f} MAP@R {metrics['map@r']:.4f}"
    except (OSError, ValueError, KeyError):
        return ""


def run_sweep(
    planned: list[PlannedRun], jobs: int = 1, echo: Callable[[str], None] = print
) -> dict[str, int]:
    """Run what is not finished yet, ``jobs`` processes at a time; counts by outcome."""
    outcome = {"skipped": 0, "finished": 0, "failed": 0}
    total = len(planned)
    todo: list[tuple[int, PlannedRun]] = []
    for index, run in enumerate(planned, 1):
        done = finished_keys(Path(run.config.output)).get(run.key)
        if done is not None:
            outcome["skipped"] += 1
            echo(f"[{index}/{total}] {run.title}: already finished ({done.name})")
        else:
            todo.append((index, run))
    with tempfile.TemporaryDirectory(prefix="dmlbench-sweep-") as tmp:
        running: list[tuple[int, PlannedRun, subprocess.Popen, float]] = []
        queue: Iterator = iter(todo)
        while True:
            while len(running) < jobs and (item := next(queue, None)) is not None:
                index, run = item
                interrupted = interrupted_keys(Path(run.config.output)).get(run.key)
                if interrupted is not None:
                    echo(f"[{index}/{total}] {run.title}: resuming {interrupted.name}")
                    args = ["--resume", str(interrupted)]
                else:
                    config_file = Path(tmp) / f"{index}.yaml"
                    config_file.write_text(to_yaml(run.config))
                    args = ["--config", str(config_file)]
                process = subprocess.Popen(
                    [sys.executable, "-m", "dmlbench", "run", *args],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                running.append((index, run, process, time.time()))
            if not running:
                break
            time.sleep(0.2)
            for entry in list(running):
                index, run, process, start = entry
                if process.poll() is None:
                    continue
                running.remove(entry)
                seconds = time.time() - start
                stderr = process.stderr.read() if process.stderr else ""
                run_dir = finished_keys(Path(run.config.output)).get(run.key)
                if process.returncode == 0 and run_dir is not None:
                    outcome["finished"] += 1
                    echo(f"[{index}/{total}] {run.title}: finished in {seconds:.0f} s"
                         f"{_result_line(run_dir)}")  # fmt: skip
                else:
                    outcome["failed"] += 1
                    last = (stderr.strip().splitlines() or ["(no message)"])[-1]
                    echo(f"[{index}/{total}] {run.title}: FAILED ({last})")
    return outcome


def describe(planned: list[PlannedRun]) -> list[str]:
    done_by_output: dict[str, dict[str, Path]] = {}
    lines = []
    for index, run in enumerate(planned, 1):
        output = run.config.output
        if output not in done_by_output:
            done_by_output[output] = finished_keys(Path(output))
        state = "finished" if run.key in done_by_output[output] else "to run"
        if state == "to run" and run.key in interrupted_keys(Path(output)):
            state = "to resume"
        lines.append(f"[{index}/{len(planned)}] {run.title} [{run.key}]: {state}")
    return lines


def with_output(planned: list[PlannedRun], output: str) -> list[PlannedRun]:
    return [PlannedRun(dataclasses.replace(r.config, output=output), r.key) for r in planned]
