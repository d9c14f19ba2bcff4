"""What a `dmlbench tune` grid spent and chose, per row, as a markdown table.

Reads the studies (``studies.db``, or the tune's ``--storage``) and the trial runs
under a tune output folder:
per row, the trials of its budget that completed and were pruned (one per
slot, the sampler seed's draw for it; a trial that failed or repeated a slot
is listed apart and never chosen), the chosen settings with their validation
score, and the run time of every trial (training and evaluation
seconds summed over every trial, pruned ones included: CPU-process time, not
wall time of a parallel tune).

    python benchmarks/tuning_table.py results/tune/table1-glyphs
    python benchmarks/tuning_table.py results/tune/table1-glyphs --curves curves.png
    python benchmarks/tuning_table.py results/tune/table1-glyphs-zoo \
        --storage journal:results/table1-glyphs-zoo/studies.journal

``--curves`` also draws each row's chosen trial, validation MAP@R and R@1 after
every epoch (one seed: the trial's): how fast each method gets there, measured
where choices are made, not on test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml


def epoch_records(run_dir: Path) -> list[dict]:
    """A run's epoch records (none if it wrote none)."""
    path = run_dir / "epochs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trial_seconds(run_dir: Path) -> float:
    """Training and evaluation time of one trial run, from its epoch records."""
    return sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0)
               for r in epoch_records(run_dir))  # fmt: skip


def trial_dirs(trials: Path) -> dict[str, Path]:
    """Each trial run's directory by its label ("<row> trial <n>")."""
    return {
        str(yaml.safe_load(config.read_text()).get("label") or ""): config.parent
        for config in trials.glob("*/config.yaml")
    }


def seconds_by_row(dirs: dict[str, Path]) -> dict[str, float]:
    """Run seconds per tuned row."""
    totals: dict[str, float] = {}
    for label, run_dir in dirs.items():
        row = label.rsplit(" trial ", 1)[0]
        totals[row] = totals.get(row, 0.0) + trial_seconds(run_dir)
    return totals


def draw_curves(chosen: dict[str, Path], path: Path) -> None:
    """Validation MAP@R and R@1 per epoch of each row's chosen trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dmlbench.store.plots import FONT, WIDE, style

    fig, axes = plt.subplots(1, 2, figsize=(WIDE, 3.0))
    for i, (row, run_dir) in enumerate(chosen.items()):
        records = epoch_records(run_dir)
        colour, marker = style(i)
        for ax, key in zip(axes, ("map@r", "recall@1"), strict=True):
            points = [(r["epoch"], 100 * r[key]) for r in records if key in r]
            ax.plot(*zip(*points, strict=True), color=colour, marker=marker, ms=3.5, lw=1.2,
                    label=row)  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    for ax, name in zip(axes, ("validation MAP@R (%)", "validation R@1 (%)"), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=FONT + 0.5)
        ax.set_ylabel(name, fontsize=FONT + 0.5)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.25)
    fig.suptitle("each row's chosen trial (one seed), on the validation classes",
                 fontsize=FONT + 1)  # fmt: skip
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize=FONT - 0.5, frameon=False)  # fmt: skip
    fig.savefig(path, bbox_inches="tight", dpi=200)
    plt.close(fig)


def settings_text(params: dict) -> str:
    return ", ".join(
        f"{k.removeprefix('opt.')} {v:.2g}"
        if isinstance(v, float)
        else f"{k.removeprefix('opt.')} {v}"
        for k, v in params.items()
    )


def row_method(dirs: dict[str, Path], row: str) -> str | None:
    """The method a row tuned, from one of its trial runs' configs."""
    run_dir = next((d for label, d in dirs.items() if label.startswith(f"{row} trial ")), None)
    if run_dir is None:
        return None
    return yaml.safe_load((run_dir / "config.yaml").read_text())["method"]


def budget_by_row(tune_dir: Path, dirs: dict[str, Path], trials: int, seed: int,
                  url: str | None = None):  # fmt: skip
    """Each tuned row with its study and the trials its budget counted (one per slot, the
    seed's draw for it; failed and repeated trials left out), in the studies' order."""
    import optuna

    from dmlbench.registry import get_method
    from dmlbench.run.tune import (
        N_STARTUP,
        TuneSettings,
        _budget_trials,
        open_storage,
        startup_draws,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(tune_dir, TuneSettings(), url)
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        row = summary.study_name.split("@", 1)[0].replace("_", " ")
        method = row_method(dirs, row)
        space = get_method(method).search_space() if method else {}
        draws = startup_draws(space, seed, min(trials, N_STARTUP))
        yield row, study, _budget_trials(study, draws)


def main() -> None:
    from optuna.trial import TrialState

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tune_dir", type=Path)
    parser.add_argument("--trials", type=int, default=6, help="the budget per row")
    parser.add_argument("--seed", type=int, default=0, help="the tune's sampler seed")
    parser.add_argument("--curves", type=Path, default=None, help="PNG of the chosen trials")
    parser.add_argument("--storage", default=None, help="the tune's --storage, if it had one")
    args = parser.parse_args()
    dirs = trial_dirs(args.tune_dir / "trials")
    seconds = seconds_by_row(dirs)
    chosen: dict[str, Path] = {}
    print("| row | budget trials (complete / pruned) | chosen settings | validation MAP@R "
          "| not counted (failed / repeated) | run time (min) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    total = 0.0
    for row, study, counted in budget_by_row(args.tune_dir, dirs, args.trials, args.seed,
                                                args.storage):  # fmt: skip
        complete = [t for t in counted if t.state == TrialState.COMPLETE]
        pruned = [t for t in counted if t.state == TrialState.PRUNED]
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        repeated = len(finished) - len(counted)
        spent = seconds.get(row, 0.0)
        total += spent
        best = max(complete, key=lambda t: t.value) if complete else None
        if best is not None and f"{row} trial {best.number}" in dirs:
            chosen[row] = dirs[f"{row} trial {best.number}"]
        shown = (settings_text(best.params), f"{100 * best.value:.1f}") if best else ("—", "—")
        print(f"| {row} | {len(complete)} / {len(pruned)} | {shown[0]} | {shown[1]} | "
              f"{len(failed)} / {repeated} | {spent / 60:.0f} |")  # fmt: skip
    print(f"\nAll trials, counted or not: {total / 60:.0f} run-minutes "
          f"({total / 3600:.1f} run-hours).")  # fmt: skip
    if args.curves is not None:
        draw_curves(chosen, args.curves)
        print(f"curves: {args.curves}")


if __name__ == "__main__":
    main()
