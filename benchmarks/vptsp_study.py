"""results/vptsp-study/'s tables and figure, from the study's run folders.

    python benchmarks/vptsp_study.py --paper results/runs/vptsp-study-paper \\
        --bridge results/runs/vptsp-study-bridge --fair results/table1-glyphs/report.csv \\
        --mechanism results/runs/vptsp-study-mechanism --output results/vptsp-study

Rows are grouped by their label (the grid's) and condition; numbers are mean ± std
over the seeds found (n given), in percent, on the test classes, final epoch, and
beside them the best epoch on test (the paper's convention, labelled). The fair
protocol's rows come from the committed reference table's report.csv (3 seeds).
Finished runs only; a run still training is counted as missing.

The mechanism arm (``--mechanism``) is read on the validation classes: per row, MAP@R
after every epoch with the untrained model (the grid's ``epochs: 0`` rows, same seed)
as epoch 0, and VPTSP's O share of Q and cos(P, O) from initialisation (the run's
``method_state.start``) through every epoch (``mechanism.png``, ``tables.md``).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PAIRS = {"VPT (B)": "VPTSP-G (B)", "VPT": "VPTSP-G"}
# (condition, what differs from the fair protocol)
CONDITIONS = [
    ("fair", "tuned: AdamW, lr 0.00863, cosine to 0, clip 10, k = 1, 4 epochs"),
    ("fair, k=2", "the reference's batch layout"),
    ("fair, 15 epochs", "the reference's length"),
    ("paper, k=1", "the reference's recipe with k = 1"),
    ("paper", "the reference's recipe (SGD 5e-3, O at 0.1, cosine over 50, k = 2, 15 epochs)"),
]


def finished_runs(folder: Path) -> list[dict]:
    runs = []
    for summary_path in sorted(folder.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "finished":
            continue
        config = yaml.safe_load((summary_path.parent / "config.yaml").read_text())
        epochs = [json.loads(line) for line in
                  (summary_path.parent / "epochs.jsonl").read_text().splitlines()]  # fmt: skip
        runs.append({"label": config.get("label") or summary["method_label"],
                     "seed": summary["seed"], "summary": summary, "epochs": epochs,
                     "trained_epochs": config.get("epochs")})  # fmt: skip
    return runs


def pair_and_condition(label: str, arm: str) -> tuple[str, str]:
    """'VPT (B), fair, k=2' → ('VPT (B)', 'fair, k=2'); the paper arm's 'VPT (B) (L6, N10)'
    → ('VPT (B)', 'paper')."""
    if arm == "bridge":
        method, condition = label.split(", ", 1)
        return method, condition
    return label.replace(" (L6, N10)", ""), "paper"


def mean_std(values: list[float]) -> tuple[float, float, int]:
    a = 100 * np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan"), len(a)


def seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def fmt(m: float, s: float, n: int) -> str:
    if n == 0:
        return "—"
    return f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}"


def collect(args) -> dict:
    cells: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for arm, folder in (("paper", args.paper), ("bridge", args.bridge)):
        if folder is None or not folder.is_dir():
            continue
        for run in finished_runs(folder):
            key = pair_and_condition(run["label"], arm)
            m, best = run["summary"]["metrics"], run["summary"].get("best_on_test") or {}
            cell = cells[key]
            cell["r1"].append(m["recall@1"])
            cell["map"].append(m["map@r"])
            cell["best_r1"].append(best.get("recall@1", m["recall@1"]))
            cell["best_map"].append(best.get("map@r", m["map@r"]))
            cell["seeds"].append(run["seed"])
            cell["curves"].append([e.get("map@r") for e in run["epochs"]])
            cell["o_share"].append([e.get("state.o_share") for e in run["epochs"]])
    if args.fair is not None and args.fair.is_file():
        fair = pd.read_csv(args.fair)
        for method in ("VPT (B)", "VPTSP-G (B)", "VPT", "VPTSP-G"):
            label = {"VPT (B)": "VPT (B) (L6, N10)", "VPT": "VPT (L6, N10)"}.get(method, method)
            row = fair[fair["row"] == label]
            if row.empty:
                continue
            row = row.iloc[0]
            cells[(method, "fair")]["summary"] = [
                (100 * row["metrics.recall@1:mean"], 100 * row["metrics.recall@1:std"],
                 100 * row["metrics.map@r:mean"], 100 * row["metrics.map@r:std"], 3)
            ]  # fmt: skip
    return cells


def stats(cell: dict, key: str) -> tuple[float, float, int]:
    if "summary" in cell:
        r1m, r1s, mm, ms, n = cell["summary"][0]
        return (r1m, r1s, n) if key == "r1" else (mm, ms, n)
    return mean_std(cell[key]) if cell.get(key) else (float("nan"), float("nan"), 0)


def table(cells: dict) -> str:
    lines = ["| condition | what differs | VPT (B) R@1 / MAP@R | VPTSP-G (B) R@1 / MAP@R | "
             "gap R@1 / MAP@R (VPTSP − VPT) | seeds |", "|---|---|---|---|---|---|"]  # fmt: skip
    for condition, what in CONDITIONS:
        a, b = cells.get(("VPT (B)", condition), {}), cells.get(("VPTSP-G (B)", condition), {})
        ar, am, br, bm = stats(a, "r1"), stats(a, "map"), stats(b, "r1"), stats(b, "map")
        gap = f"{br[0] - ar[0]:+.1f} / {bm[0] - am[0]:+.1f}" if ar[2] and br[2] else "—"
        lines.append(f"| {condition} | {what} | {fmt(*ar)} / {fmt(*am)} | {fmt(*br)} / "
                     f"{fmt(*bm)} | {gap} | {ar[2]} / {br[2]} |")  # fmt: skip
    return "\n".join(lines)


def paper_table(cells: dict) -> str:
    lines = ["| row | final epoch R@1 | final MAP@R | best epoch on test R@1 | best MAP@R "
             "| seeds |", "|---|---|---|---|---|---|"]  # fmt: skip
    for method in ("VPT", "VPTSP-G", "VPT (B)", "VPTSP-G (B)", "VPTSP-M (B)", "VPTSP-M",
                   "BitFit"):  # fmt: skip
        cell = cells.get((method, "paper"))
        if not cell or not cell.get("r1"):
            continue
        parts = [fmt(*mean_std(cell[k])) for k in ("r1", "map", "best_r1", "best_map")]
        lines.append(f"| {method} | {' | '.join(parts)} | {len(cell['r1'])} |")
    return "\n".join(lines)


def figure(cells: dict, output: Path) -> Path:
    fig, (bars, curves, share) = plt.subplots(1, 3, figsize=(16, 4.6))
    x = np.arange(len(CONDITIONS))
    for offset, method, colour in ((-0.18, "VPT (B)", "tab:blue"),
                                   (0.18, "VPTSP-G (B)", "tab:red")):  # fmt: skip
        means, errs = [], []
        for i, (condition, _) in enumerate(CONDITIONS):
            cell = cells.get((method, condition), {})
            m, s, n = stats(cell, "map")
            means.append(m)
            errs.append(0 if n < 2 else s)
            for value in cell.get("map", []):  # each seed as a dot
                bars.plot(i + offset, 100 * value, "k.", ms=4, zorder=3)
        bars.bar(x + offset, means, 0.36, yerr=errs, color=colour, alpha=0.75, label=method,
                 capsize=3)  # fmt: skip
    bars.set_xticks(x, [c for c, _ in CONDITIONS], rotation=20, ha="right")
    bars.set_ylabel("test MAP@R (%), final epoch")
    low = np.nanmin([stats(cells.get((m, c), {}), "map")[0] for m in ("VPT (B)", "VPTSP-G (B)")
                     for c, _ in CONDITIONS] or [40])  # fmt: skip
    high = np.nanmax([stats(cells.get((m, c), {}), "map")[0] for m in ("VPT (B)", "VPTSP-G (B)")
                      for c, _ in CONDITIONS] or [70])  # fmt: skip
    bars.set_ylim(max(0, low - 8), high + 6)
    bars.set_title("VPT (B) against VPTSP-G (B), one change at a time")
    bars.legend(loc="upper center", ncol=2)
    for method, condition, colour, style in (
        ("VPT", "paper", "tab:cyan", "-"), ("VPTSP-G", "paper", "tab:orange", "-"),
        ("VPT (B)", "paper", "tab:blue", "-"), ("VPTSP-G (B)", "paper", "tab:red", "-"),
        ("VPTSP-M", "paper", "tab:olive", "-"), ("VPTSP-M (B)", "paper", "tab:green", "-"),
        ("VPT (B)", "paper, k=1", "tab:blue", "--"), ("VPTSP-G (B)", "paper, k=1", "tab:red", "--"),
    ):  # fmt: skip
        cell = cells.get((method, condition))
        if not cell or not cell.get("curves"):
            continue
        length = min(len(c) for c in cell["curves"])
        stack = 100 * np.array([[v if v is not None else np.nan for v in c[:length]]
                                for c in cell["curves"]], dtype=float)  # fmt: skip
        epochs = np.arange(1, length + 1)
        name = method if condition == "paper" else f"{method}, k = 1"
        curves.plot(epochs, np.nanmean(stack, 0), color=colour, linestyle=style,
                    label=f"{name} ({seeds(len(stack))})")  # fmt: skip
        if len(stack) > 1:
            curves.fill_between(epochs, np.nanmin(stack, 0), np.nanmax(stack, 0), color=colour,
                                alpha=0.15)  # fmt: skip
        shares = [[v for v in s[:length]] for s in cell["o_share"] if all(v is not None for v in s)]
        if shares:
            share.plot(epochs, 100 * np.mean(shares, 0), color=colour, linestyle=style,
                       label=f"{name} ({seeds(len(shares))})")  # fmt: skip
    curves.set_xlabel("epoch")
    curves.set_ylabel("test MAP@R (%)")
    curves.set_title("the paper's recipe (k = 2; dashed: k = 1): test MAP@R per epoch")
    curves.legend(loc="lower right")
    share.set_xlabel("epoch")
    share.set_ylabel("O's share of Q (%)")
    share.set_title("the paper's recipe: α‖O‖ / (α‖O‖ + (1−α)‖P‖)")
    share.legend(loc="lower right")
    fig.tight_layout()
    path = output / "study.png"
    fig.savefig(path, dpi=110)
    return path


# The epochs the mechanism table shows (0: the untrained model).
MECHANISM_EPOCHS = (0, 1, 2, 4, 8, 12)


def mechanism_curves(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per row label, seeds × epochs (0..E) arrays of validation MAP@R, O's share of Q
    and cos(P, O); NaN where a value is missing (VPT has no O share)."""
    runs = finished_runs(folder)
    untrained = {(r["label"], r["seed"]): r["summary"]["metrics"]["map@r"] for r in runs
                 if r["trained_epochs"] == 0}  # fmt: skip
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run["trained_epochs"] == 0:
            continue
        start = (run["summary"].get("method_state") or {}).get("start") or {}
        records = run["epochs"]
        curve = rows[run["label"]]
        curve["seeds"].append(run["seed"])
        curve["map"].append([untrained.get((run["label"], run["seed"]), np.nan)]
                            + [e.get("map@r", np.nan) for e in records])  # fmt: skip
        curve["o_share"].append([start.get("o_share", np.nan)]
                                + [e.get("state.o_share", np.nan) for e in records])  # fmt: skip
        curve["cos_p_o"].append([start.get("cos_p_o", np.nan)]
                                + [e.get("state.cos_p_o", np.nan) for e in records])  # fmt: skip
    out = {}
    for label, curve in rows.items():
        length = min(len(c) for c in curve["map"])
        out[label] = {k: np.array([c[:length] for c in curve[k]], dtype=float)
                      for k in ("map", "o_share", "cos_p_o")}  # fmt: skip
        out[label]["seeds"] = np.array(curve["seeds"])
    return out


def _at(stack: np.ndarray, epoch: int, scale: float = 100, digits: int = 1) -> str:
    if epoch >= stack.shape[1] or np.isnan(stack[:, epoch]).all():
        return "—"
    values = scale * stack[:, epoch]
    m = np.nanmean(values)
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {np.nanstd(values, ddof=1):.{digits}f}"


def mechanism_table(curves: dict) -> str:
    head = " | ".join(f"epoch {e}" for e in MECHANISM_EPOCHS)
    lines = [f"| row | seeds | {head} |", "|---|---|" + "---|" * len(MECHANISM_EPOCHS)]

    def row(name: str, c: dict, key: str, scale: float = 100, digits: int = 1) -> str:
        cells = " | ".join(_at(c[key], e, scale, digits) for e in MECHANISM_EPOCHS)
        return f"| {name} | {len(c['seeds'])} | {cells} |"

    lines += [row(f"{label}: validation MAP@R", c, "map") for label, c in curves.items()]
    for label, c in curves.items():
        if not np.isnan(c["o_share"]).all():
            lines.append(row(f"{label}: O's share of Q (%)", c, "o_share"))
            lines.append(row(f"{label}: cos(P, O)", c, "cos_p_o", 1, 2))
    return "\n".join(lines)


def mechanism_figure(curves: dict, output: Path) -> Path:
    fig, (val, share, cosine) = plt.subplots(1, 3, figsize=(16, 4.6))
    colours = {"VPT (B) (L6, N10)": "tab:blue", "VPTSP-G (B)": "tab:red",
               "VPTSP-M (B)": "tab:green"}  # fmt: skip
    for label, c in curves.items():
        colour = colours.get(label)
        epochs = np.arange(c["map"].shape[1])
        for axis, key, scale in ((val, "map", 100), (share, "o_share", 100),
                                 (cosine, "cos_p_o", 1)):  # fmt: skip
            stack = scale * c[key]
            if np.isnan(stack).all():
                continue
            with warnings.catch_warnings():  # an epoch no seed has (yet) is a gap, not a value
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, low, high = (np.nanmean(stack, 0), np.nanmin(stack, 0),
                                   np.nanmax(stack, 0))  # fmt: skip
            axis.plot(epochs, mean, color=colour, marker=".",
                      label=f"{label} ({seeds(len(stack))})")  # fmt: skip
            if len(stack) > 1:
                axis.fill_between(epochs, low, high, color=colour, alpha=0.15)
    for axis, ylabel, title in (
        (val, "validation MAP@R (%)", "validation classes, epoch 0 = untrained (band: seeds)"),
        (share, "O's share of Q (%)", "α‖O‖ / (α‖O‖ + (1−α)‖P‖), from initialisation"),
        (cosine, "mean cos(P_c, O_c)", "cosine between each class's P and O"),
    ):
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        axis.set_title(title)
        axis.legend(loc="best")
    fig.suptitle("The mechanism arm: the fair protocol's settings for 12 epochs, validation "
                 "scored every epoch")  # fmt: skip
    fig.tight_layout()
    path = output / "mechanism.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", type=Path)
    parser.add_argument("--bridge", type=Path)
    parser.add_argument("--fair", type=Path)
    parser.add_argument("--mechanism", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    cells = collect(args)
    args.output.mkdir(parents=True, exist_ok=True)
    text = ("## The paper's protocol\n\n" + paper_table(cells) + "\n\n## One change at a time\n\n"
            + table(cells) + "\n")  # fmt: skip
    curves = mechanism_curves(args.mechanism) if args.mechanism else {}
    if curves:
        text += "\n## The mechanism (validation classes)\n\n" + mechanism_table(curves) + "\n"
    (args.output / "tables.md").write_text(text)
    print(text)
    print(f"figure: {figure(cells, args.output)}")
    if curves:
        print(f"figure: {mechanism_figure(curves, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
