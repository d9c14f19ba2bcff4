"""One Table-1-layout table and trade-off plot from several reports' ``report.csv``.

Why: a report is made from run directories, and the reference table's runs are not
committed (only its report). A grid added later (the method zoo) is reported from
its own runs; this puts both reports' rows in one table, ordered by test R@1, with
each row's place, and draws the R@1-vs-tunable-parameters plot over all of them.
It reads the reports' aggregated numbers as they are: nothing is re-run or
re-averaged, and every row keeps its own n and the way its settings were chosen.

    python benchmarks/combined_table.py results/table1-glyphs/report.csv \\
        results/table1-glyphs-zoo/report.csv --output results/table1-glyphs-zoo/combined
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from dmlbench.store import plots
from dmlbench.store.report import table1, to_markdown


def combined(reports: list[Path]) -> pd.DataFrame:
    """The reports' rows, the first report's reference rows (untrained, zero-shot) last,
    the trained rows by test R@1, best first; a row present in two reports is refused."""
    frames = []
    for path in reports:
        frame = pd.read_csv(path)
        frame["source"] = path.parent.name
        frames.append(frame)
    agg = pd.concat(frames, ignore_index=True)
    twice = agg[agg.duplicated(["dataset", "backbone", "row"], keep=False)]
    if not twice.empty:
        raise ValueError(f"rows in more than one report: {sorted(set(twice['row']))}")
    reference = agg.get("is_reference", pd.Series(False, index=agg.index)).fillna(False)
    reference = reference.astype(bool)
    trained = agg[~reference].sort_values("metrics.recall@1:mean", ascending=False)
    return pd.concat([trained, agg[reference]], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+", help="report.csv files")
    parser.add_argument("--output", type=Path, required=True, help="a new or own folder")
    args = parser.parse_args(argv)
    for path in args.reports:
        if not path.is_file():
            print(f"error: {path}: no such report.csv", file=sys.stderr)
            return 2
    try:
        agg = combined(args.reports)
    except ValueError as e:
        print(f"error: {e}; keep each row in one report", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    parts = ["# Combined table", "",
             "Rows of " + ", ".join(f"`{p}`" for p in args.reports) + ", trained rows by "
             "test R@1 (final epoch), the untrained references last. `place`: the row's "
             "rank by mean R@1 among the trained rows; `from`: the report it comes from.",
             ""]  # fmt: skip
    for (dataset, backbone), part in agg.groupby(["dataset", "backbone"], sort=False):
        (table,) = table1(part).values()
        reference = part.get("is_reference", pd.Series(False, index=part.index))
        places = [str(i + 1) if not r else "—" for i, r in enumerate(reference.fillna(False))]
        table.insert(0, "place", places)
        table.insert(2, "from", part["source"].to_list())
        title = f"{dataset}, {backbone}"
        stem = f"{dataset}-tradeoff"
        figure = plots.tradeoff(part, args.output / "plots", stem, title)[:1]
        parts += [f"## {title}", "", to_markdown(table), ""]
        parts += [f"![{f.stem}](plots/{f.name})" for f in figure] + [""]
    (args.output / "combined.md").write_text("\n".join(parts))
    agg.to_csv(args.output / "combined.csv", index=False)
    print(f"{len(agg)} rows: {args.output / 'combined.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
