"""How long a tune grid and its test sweep take on this machine, estimated from one timed
epoch per row.

The whole protocol takes hours, and a tune's own trial times say little when anything
else shared the cores while it ran. So this times what the protocol repeats, on an idle
machine, with the same ``--jobs``: a 1-trial, 1-epoch tune of the same grid gives each
row's seconds per epoch (training, and one validation pass) and its fixed cost per run
(building the model, the data). The estimate multiplies them by what the finished tune
actually trained (the epochs of each budget trial before it completed or was pruned,
read from its study; failed and repeated trials left out, as an uninterrupted tune runs
none) and by the test grid (each row's epochs and one test pass, per seed, plus a fresh
``dmlbench run`` process each), then schedules the rows on ``--jobs`` workers the way
``dmlbench tune`` and ``dmlbench sweep`` do: in grid order, each to the first free one.
A test pass is taken to cost what a validation pass costs (true where both splits are
equally large, as for the glyphs' 100 + 100 classes).

    dmlbench tune benchmarks/table1-glyphs.yaml --trials 1 --epochs 1 --jobs 2 \\
        --output /tmp/timing
    python benchmarks/protocol_time.py results/tune/table1-glyphs /tmp/timing --jobs 2 \\
        --reference results/runs/table1-glyphs

``--reference`` adds the measured run time of the finished runs there that no tuned
row owns (untrained head, pixel kNN …). ``--skip LABEL`` leaves a row out, as the
commands' ``--skip`` does.
"""

from __future__ import annotations

import argparse
import heapq
import json
import subprocess
import sys
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from statistics import fmean

import yaml

sys.path.insert(0, str(Path(__file__).parent))
# the benchmarks folder is not a package
from tuning_table import budget_by_row, epoch_records, trial_dirs  # noqa: E402


@dataclass(frozen=True)
class RowTiming:
    """One row's measured costs, in seconds."""

    fixed: float  # per run: the model, the data, saving; not training or evaluation
    train_epoch: float
    eval_pass: float


def row_timing(run_dir: Path) -> RowTiming:
    """From a 1-epoch timing trial: its wall time split into training, one evaluation
    and the rest."""
    summary = json.loads((run_dir / "summary.json").read_text())
    records = epoch_records(run_dir)
    train = sum(r.get("train_seconds", 0.0) for r in records) / len(records)
    evaluation = sum(r.get("eval_seconds", 0.0) for r in records) / len(records)
    wall = summary["time"]["wall_seconds"]
    return RowTiming(max(0.0, wall - len(records) * (train + evaluation)), train, evaluation)


def timing_by_row(timing_dir: Path) -> dict[str, RowTiming]:
    """Each row's timing, the mean over its timing trials (one each, normally)."""
    trials: dict[str, list[RowTiming]] = {}
    for label, run_dir in trial_dirs(timing_dir / "trials").items():
        trials.setdefault(label.rsplit(" trial ", 1)[0], []).append(row_timing(run_dir))
    return {
        row: RowTiming(*map(fmean, zip(*map(astuple, timings), strict=True)))
        for row, timings in trials.items()
    }


def budget_epochs(tune_dir: Path, trials: int, seed: int) -> dict[str, list[int]]:
    """Row → the epochs each of its budget trials trained (complete: all; pruned: until
    the pruner stopped it), from the tune's studies."""
    dirs = trial_dirs(tune_dir / "trials")
    return {row: [len(t.intermediate_values) for t in counted]
            for row, _, counted in budget_by_row(tune_dir, dirs, trials, seed)}  # fmt: skip


def schedule(durations: list[float], workers: int) -> float:
    """Wall time of jobs taken in order, each by the first free worker (a process pool)."""
    free = [0.0] * workers
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def process_start_seconds() -> float:
    """What a sweep's fresh ``dmlbench run`` process costs before its run starts."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import dmlbench.run.execute"], check=True)
    return time.perf_counter() - started


def reference_seconds(runs: Path, tuned: set[str]) -> list[float]:
    """Measured run times of the finished runs under ``runs`` that no tuned row owns."""
    seconds = []
    for path in sorted(runs.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        config = yaml.safe_load((path.parent / "config.yaml").read_text()) or {}
        label = config.get("label") or summary.get("method")
        if summary.get("status") == "finished" and label not in tuned:
            seconds.append(float(summary.get("time", {}).get("wall_seconds", 0.0)))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tune_dir", type=Path, help="the finished tune (studies.db, chosen.yaml)")
    parser.add_argument("timing_dir", type=Path, help="a 1-trial, 1-epoch tune of the grid")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=6, help="the tune's budget per row")
    parser.add_argument("--seed", type=int, default=0, help="the tune's sampler seed")
    parser.add_argument("--reference", type=Path, default=None, help="runs dir of the test grid")
    parser.add_argument("--skip", action="append", default=[], metavar="LABEL")
    args = parser.parse_args()

    chosen = yaml.safe_load((args.tune_dir / "chosen.yaml").read_text())
    seeds = len(chosen["seeds"])
    labels = [m["label"] for m in chosen["methods"]]
    for name in args.skip:
        if name not in labels:
            parser.error(f"--skip {name!r}: no such row in {args.tune_dir / 'chosen.yaml'}; "
                         f"its rows: {', '.join(map(repr, labels))}")  # fmt: skip
    rows = [m for m in chosen["methods"] if m["label"] not in args.skip]
    timing = timing_by_row(args.timing_dir)
    epochs = budget_epochs(args.tune_dir, args.trials, args.seed)
    start = process_start_seconds()

    print(f"process start of a sweep run: {start:.1f} s; {args.jobs} workers; {seeds} seeds\n")
    print("| row | s/epoch (train + validation) | fixed s/run | tune epochs (budget trials) "
          "| tune run-min | test run-min (all seeds) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    tune_jobs, test_jobs = [], []
    for row in rows:
        label, t = row["label"], timing[row["label"]]
        trained = epochs[label]
        tune_s = sum(t.fixed + k * (t.train_epoch + t.eval_pass) for k in trained)
        test_run = start + t.fixed + row["epochs"] * t.train_epoch + t.eval_pass
        tune_jobs.append(tune_s)
        test_jobs += [test_run] * seeds
        print(f"| {label} | {t.train_epoch:.0f} + {t.eval_pass:.0f} | {t.fixed:.0f} | "
              f"{sum(trained)} ({len(trained)}) | {tune_s / 60:.1f} | "
              f"{seeds * test_run / 60:.1f} |")  # fmt: skip
    if args.reference is not None:
        test_jobs += reference_seconds(args.reference, {m["label"] for m in chosen["methods"]})
    tune_wall = schedule(tune_jobs, args.jobs)
    test_wall = schedule(test_jobs, args.jobs)
    print(f"\ntune: {sum(tune_jobs) / 60:.0f} run-min, {tune_wall / 60:.0f} min wall; "
          f"test grid: {sum(test_jobs) / 60:.0f} run-min, {test_wall / 60:.0f} min wall; "
          f"together {(tune_wall + test_wall) / 3600:.2f} h (estimated)")  # fmt: skip


if __name__ == "__main__":
    main()
