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
        fig.savefig(path, bbox_inches="tight", dpi=150)
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


def tradeoff(part: pd.DataFrame, folder: Path, stem: str, title: str) -> list[Path]:
    """R@1 against tunable parameters (log x); marker area ∝ peak memory; Pareto front."""
    params = part["params.tunable:mean"].to_numpy(float)
    scores = 100 * part["metrics.recall@1:mean"].to_numpy(float)
    memory = part["memory.peak_mb:mean"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sizes = 40 + 400 * memory / max(np.nanmax(memory), 1e-9)
    ax.scatter(params, scores, s=sizes, alpha=0.6)
    for x, y, name in zip(params, scores, part["row"], strict=True):
        ax.annotate(name, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = pareto_front(params, scores)
    ax.plot(params[front], scores[front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("tunable parameters")
    ax.set_ylabel("R@1 (%)")
    ax.set_title(f"{title}\n(marker area ∝ peak memory)", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, folder, stem)


def memory_bars(
    part: pd.DataFrame, folder: Path, stem: str, title: str, label: str = "peak memory"
) -> list[Path]:
    """The accelerator figure per row (``label`` says measured or estimated)."""
    full = part[part["is_full_ft"]]
    reference = full["memory.peak_mb:mean"].iloc[0] if len(full) else None
    values = part["memory.peak_mb:mean"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(part) + 1.5))
    ax.barh(part["row"], values)
    for y, value in enumerate(values):
        text = f"{value:.0f} MB" + (f" ({100 * value / reference:.0f}%)" if reference else "")
        ax.annotate(text, (value, y), fontsize=7, xytext=(3, -3), textcoords="offset points")
    ax.invert_yaxis()
    ax.set_xlabel(f"{label}, MB" + (", % of full fine-tuning" if reference else ""))
    ax.set_title(title, fontsize=9)
    return _save(fig, folder, stem)


def _curves(run_dir: Path) -> pd.DataFrame:
    lines = (run_dir / "epochs.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    frame = pd.DataFrame(records)
    frame["wall"] = frame.get("train_seconds", pd.Series(0.0, index=frame.index)).cumsum()
    return frame


def convergence(finished: pd.DataFrame, folder: Path, stem: str, title: str) -> list[Path]:
    """R@1 against epoch and against training time; mean over seeds, min–max as a band."""
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    for row, runs in finished.groupby("row", sort=False):
        curves = []
        for run_dir in runs["run_dir"]:
            try:
                frame = _curves(Path(run_dir))
            except (OSError, ValueError):
                continue
            if "recall@1" in frame:
                curves.append(frame.dropna(subset=["recall@1"]))
        if not curves:
            continue
        joined = pd.concat(curves)
        joined["recall@1"] *= 100
        stats = joined.groupby("epoch").agg(
            mean=("recall@1", "mean"), low=("recall@1", "min"), high=("recall@1", "max"),
            wall=("wall", "mean"),
        )  # fmt: skip
        (line,) = by_epoch.plot(stats.index, stats["mean"], marker="o", ms=3, label=row)
        color = line.get_color()
        by_epoch.fill_between(stats.index, stats["low"], stats["high"], alpha=0.2, color=color)
        by_time.plot(stats["wall"], stats["mean"], marker="o", ms=3, color=color)
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training time (s)")
    for ax in (by_epoch, by_time):
        ax.set_ylabel("R@1 (%)")
    by_epoch.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, folder, stem)
