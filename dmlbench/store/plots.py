"""The report's figures (matplotlib, PNG and PDF): trade-off, memory, convergence."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.png", folder / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=200)
    plt.close(fig)
    return paths


def pareto_front(params: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats with fewer (or equal) parameters."""
    order = np.lexsort((-scores, params))
    front, best = [], -np.inf
    for i in order:
        if scores[i] > best:
            front.append(i)
            best = scores[i]
    return np.array(front, dtype=int)


# Sized for a two-column paper's full width and readable on a screen at 100%.
WIDE = 7.0
FONT = 7.5
COLOURS = plt.get_cmap("tab10").colors
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def style(i: int) -> tuple[tuple, str]:
    """The i-th (colour, marker) pair: unique for 40 rows (lcm of 10 colours and 8
    markers), so no two lines share both even when colours repeat."""
    return COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]


def main_range(scores: np.ndarray) -> tuple[float, float]:
    """The span of the bulk of the rows: beyond 3 interquartile ranges (at least 2
    points) from the quartiles a row is drawn at the axis edge, not allowed to
    stretch the axis (one random-init row would squash every other row to a line)."""
    finite = scores[np.isfinite(scores)]
    if len(finite) == 0:
        return -np.inf, np.inf
    q1, q3 = np.percentile(finite, [25, 75])
    spread = 3 * max(q3 - q1, 2.0)
    return q1 - spread, q3 + spread


def _count(value: float, _pos=None) -> str:
    """10000 → 10k, 2500000 → 2.5M: tick labels a reader takes in at a glance."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _number_markers(ax, x: np.ndarray, y: np.ndarray, shown: np.ndarray) -> None:
    """Each shown point's row number on its marker; points closer than a marker's
    width on screen share one label beside them ("7 8 9"), so numbers never overlap."""
    ax.figure.canvas.draw()  # fixes the limits, so screen positions are final
    index = np.flatnonzero(shown)
    screen = ax.transData.transform(np.column_stack([x[index], y[index]]))
    radius = 11.0 * ax.figure.dpi / 100  # pixels
    clusters: list[list[int]] = []
    for k in np.argsort(x[index], kind="stable"):
        for cluster in clusters:
            if np.hypot(*(screen[cluster].mean(axis=0) - screen[k])) < radius:
                cluster.append(k)
                break
        else:
            clusters.append([k])
    for cluster in clusters:
        numbers = sorted(index[c] + 1 for c in cluster)
        if len(cluster) == 1:
            ax.annotate(str(numbers[0]), (x[index[cluster[0]]], y[index[cluster[0]]]),
                        ha="center", va="center", fontsize=FONT - 1, fontweight="bold",
                        zorder=4)  # fmt: skip
            continue
        top = max(cluster, key=lambda c: y[index[c]])
        ax.annotate(" ".join(map(str, numbers)), (x[index[top]], y[index[top]]),
                    xytext=(10, 8), textcoords="offset points", fontsize=FONT - 1,
                    fontweight="bold", zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#999999", "lw": 0.6},
                    arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.6})  # fmt: skip


def tradeoff(part: pd.DataFrame, folder: Path, stem: str, title: str) -> list[Path]:
    """R@1 against tunable parameters (log x), one numbered marker per row with the key
    beside the axes; marker area ∝ peak memory; the Pareto front; untrained reference
    rows as horizontal lines; rows far below the rest at the axis edge, value in the key."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    data = part.reset_index(drop=True)
    params = data["params.tunable:mean"].to_numpy(float)
    scores = 100 * data["metrics.recall@1:mean"].to_numpy(float)
    memory = data["memory.peak_mb:mean"].to_numpy(float)
    reference = data.get("is_reference", pd.Series(False, index=data.index)).fillna(False)
    reference = reference.to_numpy(bool) | (params <= 0)  # 0 parameters: no place on log-x
    low, high = main_range(scores[~reference])
    off = ~reference & ((scores < low) | (scores > high))
    shown = ~reference & ~off
    if not shown.any():  # only reference rows: nothing to place on a parameter axis
        return []
    layout = {"width_ratios": [1.45, 1.0], "wspace": 0.05}
    fig, (ax, key) = plt.subplots(1, 2, figsize=(WIDE, 3.4), gridspec_kw=layout)
    sizes = 60 + 340 * memory / max(np.nanmax(memory[~reference], initial=0), 1e-9)
    front = pareto_front(params[shown], scores[shown])
    on_front = np.zeros(len(data), bool)
    on_front[np.flatnonzero(shown)[front]] = True
    ax.scatter(params[shown], scores[shown], s=sizes[shown], alpha=0.55, zorder=3,
               c=["#d95f02" if f else "#1f77b4" for f in on_front[shown]],
               edgecolors="white", linewidths=0.6)  # fmt: skip
    ordered = np.flatnonzero(shown)[np.argsort(params[shown], kind="stable")]
    front_points = [i for i in ordered if on_front[i]]
    ax.plot(params[front_points], scores[front_points], "--", color="#d95f02", lw=1, zorder=2,
            label="Pareto front")  # fmt: skip
    visible = scores[shown]
    levels = scores[reference & np.isfinite(scores)]
    in_view = np.concatenate([visible, levels[(levels >= low) & (levels <= high)]])
    pad = max(1.0, 0.08 * (in_view.max() - in_view.min())) if len(in_view) else 1.0
    y_low, y_high = (in_view.min() - pad, in_view.max() + pad) if len(in_view) else (0, 100)
    ax.set_ylim(y_low, y_high)
    ax.set_xscale("log")
    _number_markers(ax, params, scores, shown)
    lines: list[str] = []
    levels_shown: list[tuple[float, int]] = []
    for number, i in enumerate(range(len(data)), start=1):
        name, value = data.loc[i, "row"], scores[i]
        if shown[i]:
            lines.append(f"{number:>2}  {name}: {value:.1f}")
        elif off[i]:
            edge = y_low if value < low else y_high
            ax.plot(params[i], edge, "v" if value < low else "^", color="#7f7f7f", ms=7,
                    clip_on=False, zorder=4)  # fmt: skip
            ax.annotate(str(number), (params[i], edge), xytext=(6, 3 if value < low else -9),
                        textcoords="offset points", fontsize=FONT - 1, color="#7f7f7f")  # fmt: skip
            lines.append(f"{number:>2}  {name}: {value:.1f} (off the scale)")
        elif y_low <= value <= y_high:
            ax.axhline(value, ls=":", lw=1, color="#7f7f7f", zorder=1)
            levels_shown.append((value, number))
            lines.append(f"{number:>2}  {name}: {value:.1f} (reference, dotted)")
        else:
            lines.append(f"{number:>2}  {name}: {value:.1f} (reference, off the scale)")
    _number_levels(ax, levels_shown)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_count))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel("tunable parameters (log scale)", fontsize=FONT + 0.5)
    ax.set_ylabel("R@1 (%)", fontsize=FONT + 0.5)
    ax.grid(alpha=0.25, which="major")
    ax.legend(fontsize=FONT - 0.5, loc="lower right")
    ax.set_title(f"{title}: marker area ∝ peak memory", fontsize=FONT + 1)
    key.axis("off")
    wrapped = _wrapped(lines)
    # the key's lines set the height (a 7-pt line is ~0.12 in): ~20 rows fit in 3.4 in,
    # a larger table (the method zoo's ~30) gets a taller figure, not a clipped key
    fig.set_size_inches(WIDE, max(3.4, 0.14 * len(wrapped) + 0.3))
    key.text(0.0, 1.0, "\n".join(wrapped), va="top", ha="left", fontsize=FONT - 0.5,
             family="monospace", transform=key.transAxes)  # fmt: skip
    return _save(fig, folder, stem)


KEY_WIDTH = 46  # characters of the key's monospace lines: the key stays beside the axes


def _wrapped(lines: list[str]) -> list[str]:
    """Key lines wrapped under their text (a long row name would widen the figure)."""
    import textwrap

    return [part for line in lines
            for part in textwrap.wrap(line, KEY_WIDTH, subsequent_indent=" " * 4)]  # fmt: skip


def _number_levels(ax, levels: list[tuple[float, int]]) -> None:
    """The row numbers of the dotted reference lines at the left edge; lines closer
    than a label's height share one label ("1 4"), so numbers never overlap."""
    if not levels:
        return
    ax.figure.canvas.draw()
    height = 9.0 * ax.figure.dpi / 100  # pixels
    groups: list[list[tuple[float, int]]] = []
    for value, number in sorted(levels):
        y = ax.transData.transform((1, value))[1]
        if groups and y - ax.transData.transform((1, groups[-1][-1][0]))[1] < height:
            groups[-1].append((value, number))
        else:
            groups.append([(value, number)])
    for group in groups:
        top = max(value for value, _ in group)
        ax.annotate(" ".join(str(n) for _, n in sorted(group, key=lambda g: g[1])),
                    (0.005, top), xycoords=("axes fraction", "data"), xytext=(0, 2),
                    textcoords="offset points", fontsize=FONT - 1, color="#7f7f7f")  # fmt: skip


def memory_bars(
    part: pd.DataFrame, folder: Path, stem: str, title: str, label: str = "peak memory"
) -> list[Path]:
    """The accelerator figure per row (``label`` says measured or estimated); full
    fine-tuning's bar in its own colour and its level as a line, the share beside each."""
    full = part[part["is_full_ft"]]
    reference = full["memory.peak_mb:mean"].iloc[0] if len(full) else None
    values = part["memory.peak_mb:mean"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(WIDE * 0.75, 0.24 * len(part) + 0.9))
    colours = ["#d95f02" if f else "#1f77b4" for f in part["is_full_ft"]]
    ax.barh(part["row"], values, color=colours, height=0.7)
    if reference:
        ax.axvline(reference, color="#d95f02", lw=0.8, ls=":")
    for y, value in enumerate(values):
        if np.isnan(value):  # raw pixels, outside embeddings: no bar, and say why
            ax.annotate("no model trained", (0, y), fontsize=FONT - 1, xytext=(3, 0),
                        va="center", textcoords="offset points", color="#7f7f7f")  # fmt: skip
            continue
        text = f"{value:.0f}" + (f" ({100 * value / reference:.0f}%)" if reference else "")
        ax.annotate(text, (value, y), fontsize=FONT - 1, xytext=(3, 0), va="center",
                    textcoords="offset points",
                    bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none"})  # fmt: skip
    ax.set_xlim(0, 1.22 * np.nanmax(values, initial=1.0))
    ax.invert_yaxis()
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel(f"{label}, MB" + (" (% of full fine-tuning)" if reference else ""),
                  fontsize=FONT + 0.5)  # fmt: skip
    ax.set_title(title, fontsize=FONT + 1)
    return _save(fig, folder, stem)


def _curves(run_dir: Path) -> pd.DataFrame:
    lines = (run_dir / "epochs.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    frame = pd.DataFrame(records)
    frame["wall"] = frame.get("train_seconds", pd.Series(0.0, index=frame.index)).cumsum()
    return frame


def convergence(finished: pd.DataFrame, folder: Path, stem: str, title: str) -> list[Path]:
    """R@1 against epoch and against training time; mean over seeds, min–max as a band.
    Each row has its own colour-and-marker pair; the legend sits below the axes. No
    figure (``[]``) when no run was evaluated at two epochs or more."""
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(WIDE, 3.0))
    drawn = 0
    for row, runs in finished.groupby("row", sort=False):
        curves = []
        for run_dir in runs["run_dir"]:
            try:
                frame = _curves(Path(run_dir))
            except (OSError, ValueError):
                continue
            if "recall@1" in frame and frame["epoch"].max() > 0:  # trained: a curve
                curves.append(frame.dropna(subset=["recall@1"]))
        if not curves or max(len(c) for c in curves) < 2:  # one evaluation is no curve
            continue
        joined = pd.concat(curves)
        joined["recall@1"] *= 100
        stats = joined.groupby("epoch").agg(
            mean=("recall@1", "mean"), low=("recall@1", "min"), high=("recall@1", "max"),
            wall=("wall", "mean"),
        )  # fmt: skip
        colour, marker = style(drawn)
        drawn += 1
        line = dict(color=colour, marker=marker, ms=3.5, lw=1.2)
        by_epoch.plot(stats.index, stats["mean"], label=row, **line)
        by_epoch.fill_between(stats.index, stats["low"], stats["high"], alpha=0.15, color=colour)
        by_time.plot(stats["wall"], stats["mean"], **line)
    from matplotlib.ticker import MaxNLocator

    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set_xlabel("epoch", fontsize=FONT + 0.5)
    by_time.set_xlabel("training time (s)", fontsize=FONT + 0.5)
    for ax in (by_epoch, by_time):
        ax.set_ylabel("R@1 (%)", fontsize=FONT + 0.5)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.25)
    if not drawn:  # runs evaluated once (at the end): nothing to draw
        plt.close(fig)
        return []
    fig.suptitle(f"{title}: mean over seeds, band min–max", fontsize=FONT + 1)
    fig.tight_layout()
    if drawn:
        handles, labels = by_epoch.get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
                   fontsize=FONT - 0.5, frameon=False)  # fmt: skip
    return _save(fig, folder, stem)


def run_curves(history: list[dict], path: Path, title: str) -> Path:
    """One run's training loss and evaluation metrics per epoch (a logger's artifact)."""
    frame = pd.DataFrame(history)
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(7, 2.8))
    if "loss" in frame:
        loss_ax.plot(frame["epoch"], frame["loss"], marker="o", ms=3, color="#444444")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss")
    for (key, label), style in zip(
        (("recall@1", "R@1"), ("map@r", "MAP@R")),
        (("#1f77b4", "o"), ("#d62728", "s")),
        strict=True,
    ):
        if key in frame:
            rows = frame.dropna(subset=[key])
            metric_ax.plot(rows["epoch"], 100 * rows[key], marker=style[1], ms=3,
                           color=style[0], label=label)  # fmt: skip
    metric_ax.set_xlabel("epoch")
    metric_ax.set_ylabel("%")
    if metric_ax.lines:
        metric_ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
