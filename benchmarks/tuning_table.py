"""What a `dmlbench tune` grid spent and chose, per row, as a markdown table.

Reads the studies (``studies.db``) and the trial runs under a tune output folder:
per row, the trials that completed and were pruned, the chosen settings with
their validation score, and the trials' run time (training and evaluation
seconds summed over every trial, pruned ones included: CPU-process time, not
wall time of a parallel tune).

    python benchmarks/tuning_table.py results/tune/table1-glyphs
    python benchmarks/tuning_table.py results/tune/table1-glyphs --curves curves.png

``--curves`` also draws each row's chosen trial, validation MAP@R and R@1 after
every epoch (one seed: the trial's): how fast each method gets there, measured
where choices are made, not on test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml


def trial_seconds(run_dir: Path) -> float:
    """Training and evaluation time of one trial run, from its epoch records."""
    path = run_dir / "epochs.jsonl"
    if not path.exists():
        return 0.0
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in records)


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
        lines = (run_dir / "epochs.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
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


def main() -> None:
    import optuna
    from optuna.trial import TrialState

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tune_dir", type=Path)
    parser.add_argument("--curves", type=Path, default=None, help="PNG of the chosen trials")
    args = parser.parse_args()
    storage = f"sqlite:///{args.tune_dir / 'studies.db'}"
    dirs = trial_dirs(args.tune_dir / "trials")
    seconds = seconds_by_row(dirs)
    chosen: dict[str, Path] = {}
    print(
        "| row | trials (complete / pruned) | chosen settings | validation MAP@R | run time (min) |"
    )
    print("|---|---|---|---|---|")
    total = 0.0
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        row = summary.study_name.split("@", 1)[0].replace("_", " ")
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        spent = seconds.get(row, 0.0)
        total += spent
        best = study.best_trial if complete else None
        if best is not None and f"{row} trial {best.number}" in dirs:
            chosen[row] = dirs[f"{row} trial {best.number}"]
        print(
            f"| {row} | {len(complete)} / {len(pruned)} | "
            f"{settings_text(best.params) if best else '—'} | "
            f"{100 * best.value:.1f} | {spent / 60:.0f} |"
            if best
            else f"| {row} | 0 / {len(pruned)} | — | — | {spent / 60:.0f} |"
        )
    print(f"\nAll trials: {total / 60:.0f} run-minutes ({total / 3600:.1f} run-hours).")
    if args.curves is not None:
        draw_curves(chosen, args.curves)
        print(f"curves: {args.curves}")


if __name__ == "__main__":
    main()
