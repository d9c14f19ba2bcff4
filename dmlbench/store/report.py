"""``dmlbench report``: the paper's tables and plots from the run store.

Runs are grouped by (dataset, backbone, row) where the row is the run's
``label`` (set by sweeps, e.g. "VPT (L12, N10)") or its method with the
options it was given; seeds are aggregated as mean ± std (n). Metrics are
shown in percent as the paper does. The Table-1 layout sets deltas against
the full fine-tuning row of the same dataset and backbone in brackets.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from dmlbench.errors import UserError
from dmlbench.store.results import NO_MODEL, load, unreadable_runs

FULL_FT = "full-ft"
GROUP = ["dataset", "backbone", "row"]
# Runs scored on validation classes (tuning, `--split val`) are reported as a dataset
# of their own, so no table mixes them with the test split or passes them off as it.
VALIDATION = " (validation classes)"
# The maxima over epochs on the test split that the VPTSP reference records: shown
# only beside the paper's numbers, which are such maxima (with its MAP@R variant).
BEST_ON_TEST = ("best_on_test.recall@1", "best_on_test.map@r_paper")


@dataclass
class Runs:
    finished: pd.DataFrame
    failed: pd.DataFrame  # run_dir, row, error


def _row_name(record: pd.Series) -> str:
    label = record.get("config.label")
    if isinstance(label, str) and label:
        return label
    name = record.get("method_label") or record.get("method")
    options = sorted(
        (k.removeprefix("config.method_options."), record[k])
        for k in record.index
        if k.startswith("config.method_options.") and k != "config.method_options.bias"
        and not (isinstance(record[k], float) and math.isnan(record[k]))
    )  # fmt: skip
    return f"{name} ({', '.join(f'{k}={v}' for k, v in options)})" if options else str(name)


def collect(path: str | Path, filters: dict[str, str] | None = None) -> Runs:
    frame = load(path)
    if frame.empty:
        raise UserError(f"no runs under {path}; run `dmlbench run` or `dmlbench sweep` first")
    frame = frame.copy()
    frame["row"] = frame.apply(_row_name, axis=1)
    for key, value in (filters or {}).items():
        column = key if key in frame.columns else f"config.{key}"
        if column not in frame.columns:
            raise UserError(f"--filter {key}={value}: no such column; e.g. method, dataset, seed")
        frame = frame[frame[column].astype(str) == value]
    if frame.empty:
        raise UserError(f"no runs under {path} match the filters {filters}")
    if "split" in frame.columns:  # never averaged with, nor titled as, test runs
        validation = frame["split"].eq("val")
        frame.loc[validation, "dataset"] = frame.loc[validation, "dataset"] + VALIDATION
    finished = frame[frame["status"] == "finished"]
    failed = frame[frame["status"] != "finished"]
    errors = failed.get("error", pd.Series([""] * len(failed), index=failed.index))
    failed = pd.DataFrame({"run_dir": failed["run_dir"], "row": failed["row"],
                           "status": failed["status"], "error": errors.fillna("")})  # fmt: skip
    broken = [
        {"run_dir": str(d), "row": "—", "status": "incomplete", "error": reason}
        for d, reason in unreadable_runs(path)
    ]
    if broken:
        failed = pd.concat([failed, pd.DataFrame(broken)], ignore_index=True)
    return Runs(finished, failed)


def _is_full_ft(frame: pd.DataFrame) -> pd.Series:
    return frame["method"].eq(FULL_FT)


def aggregate(finished: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, backbone, row): mean, std and n of each number."""
    metrics = [c for c in finished.columns if c.startswith("metrics.recall@")]
    metrics += [c for c in ("metrics.map@r", "metrics.r_precision") if c in finished.columns]
    metrics += [c for c in BEST_ON_TEST if c in finished.columns]
    numbers = metrics + ["params.tunable", "params.tunable_pct_of_backbone", "memory.peak_mb",
                         "memory.rss_growth_mb", "inference.gflops_per_image",
                         "inference.extra_tokens", "inference.stored_mb",
                         "time.wall_seconds"]  # fmt: skip
    numbers = [c for c in numbers if c in finished.columns]
    grouped = finished.groupby(GROUP, sort=False)
    mean = grouped[numbers].mean()
    std = grouped[numbers].std(ddof=1).fillna(0.0)
    out = mean.add_suffix(":mean").join(std.add_suffix(":std"))
    out["n"] = grouped.size()
    out["is_full_ft"] = grouped["method"].first().eq(FULL_FT)
    if "time.epochs" in finished.columns:  # untrained heads, zero-shot rows: reference levels
        out["is_reference"] = grouped["time.epochs"].max().eq(0)
    if "config.selected_by" in finished.columns:  # how each row's settings were chosen
        out["selected_by"] = grouped["config.selected_by"].first()
    if "memory.peak_kind" in finished.columns:  # measured (CUDA) or estimated, per row
        out["memory.peak_kind"] = grouped["memory.peak_kind"].agg(_one_kind)
    return out.reset_index()


def _one_kind(kinds: pd.Series) -> str | None:
    """A row's memory kind: its runs' one kind, "mixed", or None where no run has a
    training step to measure (zero-shot and embedding rows)."""
    kinds = kinds.dropna()
    return None if kinds.empty else kinds.iloc[0] if kinds.nunique() == 1 else "mixed"


def memory_header(part: pd.DataFrame) -> str:
    """The memory column says what its figures are."""
    kinds = set(part.get("memory.peak_kind", pd.Series(dtype=str)).dropna())
    if kinds and all(k.startswith("estimated") for k in kinds):
        return "peak memory (estimated)"
    if kinds and all(k.startswith("measured (CUDA") for k in kinds):
        return "peak memory (CUDA, measured)"
    if kinds and all(k.startswith("measured (host") for k in kinds):
        return "peak memory (host RSS growth)"
    return "peak memory (measured on CUDA / estimated; see run summaries)"


def _fmt(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean * scale:.{digits}f}"
    return f"{text} ± {std * scale:.{digits}f}" if n > 1 else text


def _delta(value: float, reference: float | None, scale: float = 100.0) -> str:
    if reference is None or math.isnan(value) or math.isnan(reference):
        return ""
    return f" ({(value - reference) * scale:+.1f})"


def _selection(r: pd.Series) -> str:
    """How the row's settings were chosen: on validation by `dmlbench tune`, or not."""
    selected = r.get("selected_by")
    if isinstance(selected, str) and selected:
        # "validation, 6 trials of 4 epochs: lr 0.00044, images_per_class 1" (the study name
        # that follows in brackets is for finding the study, not for reading)
        return "selected on " + selected.split(" (")[0]
    return "not tuned"


def table1(agg: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (dataset, backbone): method | tunable (%) | memory (% of full FT) | R@1 | MAP@R."""
    tables = {}
    for (dataset, backbone), part in agg.groupby(["dataset", "backbone"], sort=False):
        full = part[part["is_full_ft"]]
        ref = full.iloc[0] if len(full) else None
        header = memory_header(part)
        rows = []
        for _, r in part.iterrows():
            get = r.get
            memory = get("memory.peak_mb:mean", float("nan"))
            mem_pct = (
                f" ({100 * memory / ref['memory.peak_mb:mean']:.1f}%)" if ref is not None else ""
            )
            recall = r.get("metrics.recall@1:mean", float("nan"))
            map_r = r.get("metrics.map@r:mean", float("nan"))
            rss = get("memory.rss_growth_mb:mean", float("nan"))
            gflops = get("inference.gflops_per_image:mean", float("nan"))
            tokens = get("inference.extra_tokens:mean", float("nan"))
            rows.append({
                "method": r["row"],
                "tunable params": f"{get('params.tunable:mean', 0) / 1e6:.2f}M "
                                  f"({get('params.tunable_pct_of_backbone:mean', 0):.2f}%)",
                header: f"{memory:.0f} MB{mem_pct}" if not math.isnan(memory) else "—",
                "R@1": _fmt(recall, r.get("metrics.recall@1:std", 0), r["n"])
                + ("" if r["is_full_ft"] or ref is None
                   else _delta(recall, ref.get("metrics.recall@1:mean"))),
                "MAP@R": _fmt(map_r, r.get("metrics.map@r:std", 0), r["n"])
                + ("" if r["is_full_ft"] or ref is None
                   else _delta(map_r, ref.get("metrics.map@r:mean"))),
                "RSS growth": f"{rss:.0f} MB" if not math.isnan(rss) else "—",
                "GFLOPs/img": "—" if math.isnan(gflops) else f"{gflops:.2f}"
                + (f" (+{tokens:.0f} tokens)" if tokens and not math.isnan(tokens) else ""),
                "settings": _selection(r),
                "n": int(r["n"]),
            })  # fmt: skip
        tables[(dataset, backbone)] = pd.DataFrame(rows)
    return tables


def table2(agg: pd.DataFrame) -> pd.DataFrame:
    """Rows (method, backbone); columns R@K per dataset, the dataset's own Ks."""
    rows = []
    for (row, backbone), part in agg.groupby(["row", "backbone"], sort=False):
        cells = {"method": row, "backbone": backbone}
        for _, r in part.iterrows():
            for column in sorted(c for c in r.index if c.startswith("metrics.recall@") and
                                 c.endswith(":mean")):  # fmt: skip
                k = column.removeprefix("metrics.recall@").removesuffix(":mean")
                if not math.isnan(r[column]):
                    cells[f"{r['dataset']} R@{k}"] = f"{100 * r[column]:.1f}"
        rows.append(cells)
    return pd.DataFrame(rows).fillna("—")


def paper_tables() -> dict:
    text = resources.files("dmlbench.assets").joinpath("paper_tables.json").read_text()
    return json.loads(text)


def with_paper_table1(table: pd.DataFrame, dataset: str, backbone: str) -> pd.DataFrame:
    """The published numbers of each row, as the method declares them (its TableRow's
    PaperNumbers), as extra columns where the paper ran the row on this dataset and
    backbone."""
    from dmlbench.registry import table_row_methods

    rows = {
        r.label: r.paper
        for _, r in table_row_methods()
        if r.paper is not None and (r.paper.dataset, r.paper.backbone) == (dataset, backbone)
    }
    if not rows:
        return table

    def column(get) -> list:
        return [get(rows[m]) if m in rows else "—" for m in table["method"]]

    table = table.copy()
    table["paper tunable"] = column(lambda p: p.tunable or "—")
    table["paper memory"] = column(lambda p: f"{p.memory} ({p.memory_pct}%)")
    table["paper R@1"] = column(lambda p: p.recall_at_1)
    table["paper MAP@R"] = column(lambda p: p.map_at_r)
    return table


def with_best_on_test(table: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    """Our best-epoch-on-test figures (R@1, paper-style MAP@R) as extra columns, to line
    up with published numbers chosen that way; the headline columns stay the final epoch."""
    table = table.copy()
    by_row = part.set_index("row")
    for column, key in (
        ("R@1 best-on-test", BEST_ON_TEST[0]),
        ("MAP@R best-on-test", BEST_ON_TEST[1]),
    ):
        values = []
        for method, n in zip(table["method"], table["n"], strict=True):
            r = by_row.loc[method] if method in by_row.index else None
            mean = r.get(f"{key}:mean", float("nan")) if r is not None else float("nan")
            std = r.get(f"{key}:std", 0.0) if r is not None else 0.0
            values.append(_fmt(mean, std, n))
        table[column] = values
    return table


# -- rendering -----------------------------------------------------------------
def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub table (pandas' to_markdown needs tabulate, which nothing else here needs)."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# Every character LaTeX treats specially in text, and a few non-ASCII ones our
# labels and cells use, as pdflatex reads them. One pass over the text, so a
# replacement is never escaped again.
_LATEX = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "%": r"\%",
    "#": r"\#",
    "_": r"\_",
    "^": r"\textasciicircum{}",
    "~": r"\textasciitilde{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "→": r"$\rightarrow$",
    "—": "---",
    "–": "--",
}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX typesets it literally (labels are free text: escaped, not forbidden)."""
    return "".join(_LATEX.get(c, c) for c in text)


def _leading_number(cell: str) -> float:
    try:
        return float(str(cell).split()[0].rstrip("M"))
    except (ValueError, IndexError):
        return float("nan")


def to_latex(table: pd.DataFrame, caption: str, best_columns: tuple[str, ...]) -> str:
    """A booktabs table; the best (highest) value of each of ``best_columns`` in bold."""
    best = {}
    for column in best_columns:
        if column in table.columns:
            values = table[column].map(_leading_number)
            if values.notna().any():
                best[column] = values.max()
    header = " & ".join(latex_escape(str(c)) for c in table.columns) + r" \\"
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(caption)}}}",
             r"\begin{tabular}{l" + "r" * (len(table.columns) - 1) + "}", r"\toprule",
             header, r"\midrule"]  # fmt: skip
    for _, row in table.iterrows():
        cells = []
        for column in table.columns:
            text = latex_escape(str(row[column]))
            if column in best and _leading_number(row[column]) == best[column]:
                text = f"\\textbf{{{text}}}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def latex_document(bodies: list[str]) -> str:
    return "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}",
                      r"\usepackage[margin=1.5cm,landscape]{geometry}",
                      r"\begin{document}", *bodies, r"\end{document}", ""])  # fmt: skip


# -- the report ----------------------------------------------------------------
def _title(dataset: str, backbone: str) -> str:
    return f"{dataset}, {backbone}"


def with_model_free_rows_in_each_section(agg: pd.DataFrame) -> pd.DataFrame:
    """A row with no model (raw pixels, embeddings from elsewhere) is a floor for every
    backbone on its dataset: it is listed in each of their sections, as a reference row,
    rather than alone in a section of its own (where it has nothing to be compared with).
    On a dataset with no backbone's runs it stays as it is."""
    free = agg["backbone"].eq(NO_MODEL)
    if not free.any():
        return agg
    parts = [agg[~free]]
    for index in agg.index[free]:
        row = agg.loc[[index]]  # a one-row frame keeps the columns' dtypes
        backbones = agg.loc[~free & agg["dataset"].eq(row["dataset"].item()), "backbone"].unique()
        parts += [row.assign(backbone=b) for b in backbones] or [row]
    return pd.concat(parts, ignore_index=True)


def references_last(agg: pd.DataFrame) -> pd.DataFrame:
    """Trained rows first, in the order they ran, then the rows that trained nothing."""
    if "is_reference" not in agg.columns:
        return agg
    return agg.sort_values("is_reference", kind="stable").reset_index(drop=True)


def render(
    path: str | Path,
    fmt: str = "markdown",
    output: Path | None = None,
    filters: dict[str, str] | None = None,
    with_paper: bool = False,
) -> str:
    """The report as text; with ``output``, also report.<ext>, the CSV and plots there."""
    from dmlbench.store import plots

    runs = collect(path, filters)
    if runs.finished.empty:
        raise UserError(f"no finished runs under {path} ({len(runs.failed)} failed or running)")
    agg = references_last(with_model_free_rows_in_each_section(aggregate(runs.finished)))
    tables1 = table1(agg)
    if with_paper:
        tables1 = {
            k: with_paper_table1(
                with_best_on_test(t, agg[(agg["dataset"] == k[0]) & (agg["backbone"] == k[1])]), *k
            )
            for k, t in tables1.items()
        }
    t2 = table2(agg)
    figures: dict[tuple[str, str], list[Path]] = {}
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        agg.to_csv(output / "report.csv", index=False)
        for (dataset, backbone), part in agg.groupby(["dataset", "backbone"], sort=False):
            # a file name a markdown link and a shell take as it is
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{dataset}-{backbone}").replace("_-", "-")
            title = _title(dataset, backbone)
            chosen = runs.finished[(runs.finished["dataset"] == dataset)
                                   & (runs.finished["backbone"] == backbone)]  # fmt: skip
            figures[(dataset, backbone)] = [
                *plots.tradeoff(part, output / "plots", f"{stem}-tradeoff", title)[:1],
                plots.memory_bars(
                    part, output / "plots", f"{stem}-memory", title, memory_header(part)
                )[0],  # fmt: skip
                *plots.convergence(chosen, output / "plots", f"{stem}-convergence", title)[:1],
            ]
    if fmt == "csv":
        text = agg.to_csv(index=False)
    elif fmt == "latex":
        bodies = [
            to_latex(t, f"Table-1 layout: {_title(*k)}", ("R@1", "MAP@R"))
            for k, t in tables1.items()
        ]
        recall_columns = tuple(c for c in t2.columns if " R@" in c)
        bodies.append(to_latex(t2, "Table-2 layout: R@K per dataset", recall_columns))
        text = latex_document(bodies)
    else:
        parts = ["# dmlbench report", ""]
        for key, table in tables1.items():
            parts += [f"## {_title(*key)}", "", to_markdown(table), ""]
            if with_paper and "paper R@1" in table.columns:
                parts += ["Columns marked *paper* are the published numbers (Ren et al., "
                          "ICLR 2024, Table 1), not runs of this suite. They are each run's best "
                          "epoch on the test split (and MAP@R with the reference code's "
                          "denominator); compare them with our *best-on-test* columns (same "
                          "convention), not with R@1 and MAP@R, which are the final epoch.",
                          ""]  # fmt: skip
            elif with_paper:
                parts += ["*best-on-test* columns: each run's best epoch on the test split "
                          "(MAP@R paper-style), only for comparing with papers that report "
                          "that; R@1 and MAP@R are the final epoch.", ""]  # fmt: skip
            for figure in figures.get(key, []):
                parts.append(f"![{figure.stem}](plots/{figure.name})")
            parts.append("")
        parts += ["## R@K per dataset (Table-2 layout)", "", to_markdown(t2), ""]
        if with_paper:
            paper = pd.DataFrame(paper_tables()["table2"]["rows"])
            parts += ["Published (Ren et al., ICLR 2024, Table 2; R@K as listed there):", "",
                      to_markdown(paper.fillna("—")), ""]  # fmt: skip
        if not runs.failed.empty:
            parts += ["## Failed or unfinished runs", "", to_markdown(runs.failed), ""]
        text = "\n".join(parts)
    if output is not None:
        suffix = {"markdown": "md", "latex": "tex", "csv": "csv"}[fmt]
        (output / f"report.{suffix}").write_text(text)
    return text
