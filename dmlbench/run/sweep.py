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
process: one failing (or killed) run never takes the sweep down. The sweep
creates the run's directory first, and the process writes its output to
``run.log`` inside it (appended when the run is resumed), never to a pipe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from dmlbench.atomic import write_json_atomic
from dmlbench.config import RunConfig, config_key, make_config, read_yaml
from dmlbench.errors import UserError
from dmlbench.progress import HEARTBEAT_ENV, LOG_LINE
from dmlbench.run.lock import RUN_LOCK, holder, is_held, try_lock

LOG_NAME = "run.log"  # each run's stdout and stderr, appended across resumes
HEARTBEAT_NAME = ".heartbeat"  # touched while the run makes progress

GRID_KEYS = {"output", "base", "methods", "datasets", "backbones", "seeds", "tune"}


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig  # resolved: recipe defaults filled in
    key: str

    @property
    def title(self) -> str:
        c = self.config
        return f"{row_label(c)} seed {c.seed} on {c.dataset} ({c.backbone})"


def read_sweep(path: Path) -> list[PlannedRun]:
    from dmlbench.run.execute import prepare

    spec = read_yaml(path)
    unknown = sorted(set(spec) - GRID_KEYS)
    if unknown:
        raise UserError(
            f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(GRID_KEYS))}"
        )
    methods = spec.get("methods") or [{"method": "linear-probe"}]
    if not isinstance(methods, list) or not all(isinstance(m, dict) for m in methods):
        raise UserError(f"{path}: methods must be a list of mappings (method, method_options …)")
    _check_grid_types(spec, path)
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
                    try:
                        config = make_config(None, values)
                        resolved = prepare(config, require_data=False)[0]
                    except UserError as e:
                        row = entry.get("label") or entry.get("method")
                        raise UserError(f"{path}: row {row!r}: {e}") from None
                    planned.append(PlannedRun(resolved, config_key(resolved)))
    return planned


def _check_grid_types(spec: dict, path: Path) -> None:
    """Each grid key of the type the sweep reads it as; else one line naming the key."""
    expected = {
        "output": (str, "a folder name"),
        "base": (dict, "a mapping of run-config keys such as {epochs: 4}"),
        "datasets": (list, "a list of dataset names such as [glyphs]"),
        "backbones": (list, "a list of timm names, null or {backbone: …} mappings"),
        "seeds": (list, "a list of integers such as [0, 1, 2]"),
        "tune": (dict, "a mapping such as {trials: 6, epochs: 4}"),
    }
    for key, (kind, what) in expected.items():
        value = spec.get(key)
        if value is not None and not isinstance(value, kind):
            raise UserError(f"{path}: {key} must be {what}, not {value!r}")
    for seed in spec.get("seeds") or []:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UserError(f"{path}: seeds must be integers, not {seed!r}")
    for dataset in spec.get("datasets") or []:
        if not isinstance(dataset, str):
            raise UserError(f"{path}: datasets must be names such as glyphs, not {dataset!r}")


def row_label(config: RunConfig) -> str:
    return config.label or config.method


def select_rows(
    planned: list[PlannedRun], only: tuple[str, ...], skip: tuple[str, ...], source: Path
) -> list[PlannedRun]:
    """The runs whose row is named by ``only`` (every row when empty), less the rows named
    by ``skip``: part of a grid (say the paper's rows of a longer table) from the one file,
    so the studies, run keys and report stay those of the whole grid."""
    labels = list(dict.fromkeys(row_label(run.config) for run in planned))
    unknown = [name for name in (*only, *skip) if name not in labels]
    if unknown:
        raise UserError(
            f"{source}: no row labelled {unknown[0]!r}; its rows: "
            + ", ".join(repr(label) for label in labels)
        )

    def wanted(run: PlannedRun) -> bool:
        label = row_label(run.config)
        return (not only or label in only) and label not in skip

    kept = [run for run in planned if wanted(run)]
    if not kept:
        raise UserError(f"{source}: --only/--skip leave no row to run")
    return kept


def has_tune_block(path: Path) -> bool:
    """Whether the grid's settings are to be chosen by ``dmlbench tune`` first."""
    return bool(read_yaml(path).get("tune"))


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


def run_command(run_dir: Path) -> list[str]:
    """The process that runs one prepared run directory (fresh or interrupted)."""
    return [sys.executable, "-m", "dmlbench", "run", "--resume", str(run_dir)]


@dataclass
class Attempt:
    """How one run of the sweep went this time."""

    run_dir: Path
    returncode: int | None
    seconds: float
    stalled: bool = False

    @property
    def log(self) -> Path:
        return self.run_dir / LOG_NAME


def claim_path(run: PlannedRun) -> Path:
    """The lock a sweep holds on one run of its grid while it runs it: two sweeps of one
    grid (or of two grids sharing runs) never run the same combination at once."""
    return Path(run.config.output) / ".claims" / f"{run.key}.lock"


def _prepare_dir(run: PlannedRun) -> tuple[Path, bool]:
    """The run's directory: the interrupted one to continue, or a new one (config written)."""
    from dmlbench.run.execute import create_run_dir

    interrupted = interrupted_keys(Path(run.config.output)).get(run.key)
    if interrupted is not None:
        return interrupted, True
    return create_run_dir(run.config), False


def thread_env(jobs: int, environ: dict[str, str], cores: int) -> dict[str, str]:
    """Each of ``jobs`` parallel runs gets its share of the cores as torch's thread count.

    PyTorch starts as many threads as there are cores in every process, so two runs
    on two cores would run four busy-waiting OpenMP threads, slower than one each
    (and their time columns would measure the contention). A thread count the user
    set (``OMP_NUM_THREADS``) is kept."""
    if "OMP_NUM_THREADS" in environ:
        return dict(environ)
    return {**environ, "OMP_NUM_THREADS": str(max(1, cores // max(1, jobs)))}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _attempt(run_dir: Path, resumed: bool, stall_timeout: float | None, jobs: int = 1) -> Attempt:
    """Run the directory's process with its output appended to ``run.log`` (a file:
    a pipe nobody reads fills up and blocks the run), stopping it if no progress
    (heartbeat) was seen for ``stall_timeout`` seconds."""
    heartbeat = run_dir / HEARTBEAT_NAME
    env = {**thread_env(jobs, dict(os.environ), available_cores()), HEARTBEAT_ENV: str(heartbeat)}
    start = time.time()
    with open(run_dir / LOG_NAME, "a", encoding="utf-8") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"=== {stamp} dmlbench sweep: {'resumed' if resumed else 'started'} ===\n")
        log.flush()
        process = subprocess.Popen(
            run_command(run_dir), stdout=log, stderr=subprocess.STDOUT, env=env
        )
        while True:
            try:
                returncode = process.wait(timeout=_poll_seconds(stall_timeout))
                return Attempt(run_dir, returncode, time.time() - start)
            except subprocess.TimeoutExpired:
                last = max(start, _mtime(heartbeat))
                if stall_timeout is not None and time.time() - last > stall_timeout:
                    _stop(process)
                    log.write(
                        f"=== dmlbench sweep: stopped, no progress for {stall_timeout:g} s ===\n"
                    )
                    return Attempt(run_dir, process.returncode, time.time() - start, stalled=True)


def _poll_seconds(stall_timeout: float | None) -> float | None:
    return None if stall_timeout is None else min(5.0, max(0.1, stall_timeout / 4))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL: the run stays resumable from its last checkpoint."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def last_meaningful_line(log: Path) -> str:
    """The last line of ``log`` that is neither blank, progress nor a sweep marker."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        text = line.strip()
        if text and not text.startswith("===") and not LOG_LINE.search(text):
            return text
    return "(no message)"


def _record_failure(attempt: Attempt, message: str) -> None:
    """A run that failed before writing its summary (bad option, unreadable data)
    gets one saying so, so it is listed as failed and not resumed as interrupted."""
    summary = attempt.run_dir / "summary.json"
    if not summary.exists():
        write_json_atomic(summary, {"status": "failed", "error": message, "log": LOG_NAME})


def run_sweep(
    planned: list[PlannedRun],
    jobs: int = 1,
    echo: Callable[[str], None] = print,
    stall_timeout: float | None = None,
) -> dict[str, int]:
    """Run what is not finished yet, ``jobs`` processes at a time; counts by outcome."""
    outcome = {"skipped": 0, "finished": 0, "failed": 0, "stalled": 0, "elsewhere": 0}
    total = len(planned)
    todo: list[tuple[int, PlannedRun]] = []
    for index, run in enumerate(planned, 1):
        done = finished_keys(Path(run.config.output)).get(run.key)
        if done is not None:
            outcome["skipped"] += 1
            echo(f"[{index}/{total}] {run.title}: already finished ({done.name})")
        else:
            todo.append((index, run))
    lock = threading.Lock()  # run directories are chosen one at a time; lines stay whole

    def one(index: int, run: PlannedRun) -> None:
        claim = try_lock(claim_path(run))  # another sweep of the grid may hold this run
        if claim is None:
            with lock:
                outcome["elsewhere"] += 1
                echo(f"[{index}/{total}] {run.title}: another sweep "
                     f"({holder(claim_path(run))}) is running it; left to it")  # fmt: skip
            return
        with claim:
            run_claimed(index, run)

    def run_claimed(index: int, run: PlannedRun) -> None:
        with lock:
            done = finished_keys(Path(run.config.output)).get(run.key)
            if done is not None:  # another sweep finished it meanwhile
                outcome["skipped"] += 1
                echo(f"[{index}/{total}] {run.title}: already finished ({done.name})")
                return
            run_dir, resumed = _prepare_dir(run)
            if is_held(run_dir / RUN_LOCK):  # resumed by hand, outside any sweep
                outcome["elsewhere"] += 1
                echo(f"[{index}/{total}] {run.title}: {holder(run_dir / RUN_LOCK)} is "
                     f"training {run_dir.name}; left to it")  # fmt: skip
                return
            verb = "resuming" if resumed else "started"
            echo(f"[{index}/{total}] {run.title}: {verb} {run_dir.name}")
        attempt = _attempt(run_dir, resumed, stall_timeout, jobs)
        finished = finished_keys(Path(run.config.output)).get(run.key) == run_dir
        with lock:
            if attempt.stalled:
                outcome["stalled"] += 1
                echo(f"[{index}/{total}] {run.title}: STALLED (no progress for "
                     f"{stall_timeout:g} s; stopped, resumable); log: {attempt.log}")  # fmt: skip
            elif attempt.returncode == 0 and finished:
                outcome["finished"] += 1
                echo(f"[{index}/{total}] {run.title}: finished in {attempt.seconds:.0f} s"
                     f"{_result_line(run_dir)}")  # fmt: skip
            else:
                outcome["failed"] += 1
                message = last_meaningful_line(attempt.log)
                if attempt.returncode is not None and attempt.returncode > 0:
                    _record_failure(attempt, message)
                echo(f"[{index}/{total}] {run.title}: FAILED ({message}); log: {attempt.log}")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(one, index, run) for index, run in todo]:
            future.result()
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
