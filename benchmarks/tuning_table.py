"""What a `dmlbench tune` grid spent and chose, per row, as a markdown table.

Reads the studies (``studies.db``) and the trial runs under a tune output folder:
per row, the trials that completed and were pruned, the chosen settings with
their validation score, and the trials' run time (training and evaluation
seconds summed over every trial, pruned ones included: CPU-process time, not
wall time of a parallel tune).

    python benchmarks/tuning_table.py results/tune/table1-glyphs
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


def seconds_by_row(trials: Path) -> dict[str, float]:
    """Run seconds per tuned row (a trial's label is "<row> trial <n>")."""
    totals: dict[str, float] = {}
    for config in trials.glob("*/config.yaml"):
        label = str(yaml.safe_load(config.read_text()).get("label") or "")
        row = label.rsplit(" trial ", 1)[0]
        totals[row] = totals.get(row, 0.0) + trial_seconds(config.parent)
    return totals


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
    args = parser.parse_args()
    storage = f"sqlite:///{args.tune_dir / 'studies.db'}"
    seconds = seconds_by_row(args.tune_dir / "trials")
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
        print(
            f"| {row} | {len(complete)} / {len(pruned)} | "
            f"{settings_text(best.params) if best else '—'} | "
            f"{100 * best.value:.1f} | {spent / 60:.0f} |"
            if best
            else f"| {row} | 0 / {len(pruned)} | — | — | {spent / 60:.0f} |"
        )
    print(f"\nAll trials: {total / 60:.0f} run-minutes ({total / 3600:.1f} run-hours).")


if __name__ == "__main__":
    main()
