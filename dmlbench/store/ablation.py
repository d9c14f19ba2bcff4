"""``dmlbench report --vs KEY``: each row's metric against one config key, for any grid.

An ablation (epochs 4 vs 16, images per class, VPTSP's α) is a grid whose rows
keep their label while one key changes. Runs are grouped by (dataset, backbone,
row, value of KEY); each group's metric is its seeds' mean with their standard
deviation and count, as a table (rows × values) and a plot (one line per row,
the seeds' spread as error bars). ``--curves`` draws the per-epoch metric of
every row on one axis instead, labelled with the split it was read on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from dmlbench.errors import UserError
from dmlbench.store.plots import FONT, WIDE, _save, plt, style

METRIC_NAMES = {"map@r": "MAP@R", "recall@1": "R@1", "r_precision": "R-precision"}


def key_column(frame: pd.DataFrame, key: str) -> str:
    """The run-store column of a config key: ``opt.alpha`` → the method option."""
    column = (f"config.method_options.{key.removeprefix('opt.')}" if key.startswith("opt.")
              else f"config.{key}")  # fmt: skip
    if column not in frame.columns:
        known = sorted(c.removeprefix("config.").replace("method_options.", "opt.")
                       for c in frame.columns if c.startswith("config."))  # fmt: skip
        raise UserError(f"--vs {key}: no run has that config key; e.g. {', '.join(known[:8])}")
    return column


def vs_frame(finished: pd.DataFrame, key: str, metric: str) -> pd.DataFrame:
    """Per (dataset, backbone, row, value): mean, std and n of ``metric`` in percent."""
    column, measured = key_column(finished, key), f"metrics.{metric}"
    if measured not in finished.columns:
        raise UserError(f"--metric {metric}: no run has it; use {', '.join(METRIC_NAMES)}")
    runs = finished.dropna(subset=[measured]).copy()
    runs["value"] = runs[column].map(_plain)
    grouped = runs.groupby(["dataset", "backbone", "row", "value"], sort=False)[measured]
    out = grouped.agg(mean="mean", std="std", n="size").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out[["mean", "std"]] *= 100
    return out.sort_values(["dataset", "backbone", "value"], key=_sortable, kind="stable")


def _plain(value):
    """A config value as a table cell and a plot coordinate (NaN: the key was unset)."""
    if isinstance(value, float) and math.isnan(value):
        return "unset"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sortable(column: pd.Series) -> pd.Series:
    if column.name != "value":
        return column
    numeric = pd.to_numeric(column, errors="coerce")
    return numeric if numeric.notna().all() else column.astype(str)


def vs_table(frame: pd.DataFrame, key: str, metric: str) -> str:
    """A markdown table per (dataset, backbone): rows × values, "mean ± std (n)"."""
    parts = []
    for (dataset, backbone), part in frame.groupby(["dataset", "backbone"], sort=False):
        numbers = zip(part["mean"], part["std"], part["n"], strict=True)
        cells = part.assign(cell=[f"{m:.1f} ± {s:.1f} ({n})" for m, s, n in numbers])
        table = cells.pivot(index="row", columns="value", values="cell").fillna("—")
        table = table.reindex(index=list(dict.fromkeys(part["row"])))
        header = f"### {dataset}, {backbone}: {METRIC_NAMES.get(metric, metric)} (%) by {key}"
        lines = [header, "", "| row | " + " | ".join(map(str, table.columns)) + " |",
                 "|---|" + "---|" * len(table.columns)]  # fmt: skip
        lines += [f"| {row} | " + " | ".join(values) + " |" for row, values in
                  zip(table.index, table.to_numpy().tolist(), strict=True)]  # fmt: skip
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def vs_plot(frame: pd.DataFrame, key: str, metric: str, folder: Path) -> list[Path]:
    """One figure per (dataset, backbone): each row's mean against the key's value,
    error bars one standard deviation over seeds (none where n = 1)."""
    paths = []
    for (dataset, backbone), part in frame.groupby(["dataset", "backbone"], sort=False):
        values = list(dict.fromkeys(part["value"]))
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        positions = {v: (v if numeric else i) for i, v in enumerate(values)}
        fig, ax = plt.subplots(figsize=(WIDE * 0.6, 3.2))
        for i, (row, line) in enumerate(part.groupby("row", sort=False)):
            colour, marker = style(i)
            x = [positions[v] for v in line["value"]]
            ax.errorbar(x, line["mean"], yerr=line["std"].where(line["n"] > 1, 0.0), label=row,
                        color=colour, marker=marker, ms=4, lw=1.2, capsize=3)  # fmt: skip
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        elif len(values) <= 8:
            ax.set_xticks(values, [str(v) for v in values])
        ax.set_xlabel(key, fontsize=FONT + 0.5)
        ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%)", fontsize=FONT + 0.5)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.25)
        ax.set_title(f"{dataset}, {backbone}: mean ± std over seeds", fontsize=FONT + 1)
        ax.legend(fontsize=FONT - 0.5, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
        fig.tight_layout()
        stem = f"vs-{key}-{metric}-{dataset}-{backbone}"
        paths += _save(fig, folder, _safe(stem))
    return paths


def epoch_records(run_dir: Path) -> pd.DataFrame:
    lines = (Path(run_dir) / "epochs.jsonl").read_text().splitlines()
    return pd.DataFrame([json.loads(line) for line in lines if line.strip()])


def render_ablation(runs: Path, key: str | None, curves: bool, metric: str,
                    output: Path | None, filters: dict) -> str:  # fmt: skip
    """The --vs table (and plot) and/or the --curves plot of the runs under ``runs``."""
    from dmlbench.store.report import collect

    finished = collect(runs, filters).finished
    if finished.empty:
        raise UserError(f"no finished runs under {runs}")
    text, paths = "", []
    if key is not None:
        frame = vs_frame(finished, key, metric)
        text = vs_table(frame, key, metric)
        if output is not None:
            paths += vs_plot(frame, key, metric, Path(output))
            (Path(output) / f"vs-{_safe(key)}-{_safe(metric)}.md").write_text(text)
    if curves and output is not None:
        paths += curves_plot(finished, metric, Path(output))
    return text + "".join(f"wrote {p}\n" for p in paths if p.suffix == ".png")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)


def curves_plot(finished: pd.DataFrame, metric: str, folder: Path) -> list[Path]:
    """Per (dataset, backbone): every row's per-epoch ``metric``, mean over seeds with a
    min–max band, on one axis; the split it was read on is in the title (validation
    rows are their own dataset in the report)."""
    paths = []
    for (dataset, backbone), part in finished.groupby(["dataset", "backbone"], sort=False):
        fig, ax = plt.subplots(figsize=(WIDE * 0.6, 3.2))
        drawn = 0
        for row, runs in part.groupby("row", sort=False):
            frames = []
            for run_dir in runs["run_dir"]:
                try:
                    records = epoch_records(run_dir)
                except (OSError, ValueError):
                    continue
                if metric in records:
                    frames.append(records.dropna(subset=[metric])[["epoch", metric]])
            if not frames or max(len(f) for f in frames) < 2:
                continue
            stats = pd.concat(frames).groupby("epoch")[metric].agg(["mean", "min", "max"]) * 100
            colour, marker = style(drawn)
            drawn += 1
            ax.plot(stats.index, stats["mean"], label=row, color=colour, marker=marker, ms=3.5)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.15)
        if not drawn:
            plt.close(fig)
            continue
        split = "validation classes" if dataset.endswith("(validation classes)") else "test classes"
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=FONT + 0.5)
        ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%), {split}", fontsize=FONT + 0.5)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.25)
        ax.set_title(f"{dataset}, {backbone}: mean over seeds, band min–max", fontsize=FONT)
        ax.legend(fontsize=FONT - 0.5, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
        fig.tight_layout()
        stem = f"curves-{metric}-{dataset}-{backbone}"
        paths += _save(fig, folder, _safe(stem))
    return paths
