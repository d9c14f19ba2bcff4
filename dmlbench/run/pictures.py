"""``dmlbench show`` and ``dmlbench compare``: what a run retrieves, as pictures.

A metric says how often retrieval fails; a grid says how: which queries fail
and what they retrieve instead (the similar class, the same font, the damaged
copy). ``show`` draws random, worst and best queries of one run; ``compare``
draws the queries one run gets right at rank 1 and the other gets wrong.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmlbench.data.spec import get_dataset
from dmlbench.errors import UserError
from dmlbench.eval.retrieval import QueryRanking, rank_queries
from dmlbench.run.stored import StoredRun, finished_run, thumbnail
from dmlbench.store.grids import Cell, GridRow, draw_grid

SHOW_FOLDER = "pictures"


def ranking(run: StoredRun, k: int) -> QueryRanking:
    query, reference = run.query_and_reference()
    if reference is None:
        return rank_queries(query.embeddings, query.labels, k=k)
    return rank_queries(query.embeddings, query.labels, reference.embeddings,
                        reference.labels, k=k)  # fmt: skip


class _Pictures:
    """Thumbnails and captions of one run's queries and neighbours."""

    def __init__(self, run: StoredRun, ranked: QueryRanking):
        self.run, self.ranked = run, ranked
        self.query, reference = run.query_and_reference()
        self.reference = reference or self.query
        self.caption = get_dataset(run.config.dataset, run.config.data_root).class_caption

    def query_cell(self, q: int, note: str) -> Cell:
        label = self.caption(self.query.classes[q])
        return Cell(thumbnail(self.query.paths[q]), f"query {label}\n{note}")

    def neighbour_cells(self, q: int, k: int) -> list[Cell]:
        cells = []
        for rank in range(min(k, self.ranked.neighbours.shape[1])):
            n = int(self.ranked.neighbours[q, rank])
            correct = bool(self.ranked.correct[q, rank])
            text = f"#{rank + 1}  {self.ranked.similarities[q, rank]:.2f}"
            if not correct:
                text += f"\n{self.caption(self.reference.classes[n])}"
            cells.append(Cell(thumbnail(self.reference.paths[n]), text, correct))
        return cells


def _scored(ranked: QueryRanking) -> np.ndarray:
    """Queries that can match something (a lone query has no AP)."""
    return np.flatnonzero(np.isfinite(ranked.average_precision))


def pick_queries(ranked: QueryRanking, how: str, n: int, seed: int) -> np.ndarray:
    """``random`` (seeded), ``worst`` or ``best`` by AP@R (ties: lower index first)."""
    candidates = _scored(ranked)
    if how == "random":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(candidates, size=min(n, len(candidates)), replace=False))
    ap = ranked.average_precision[candidates]
    order = np.argsort(ap if how == "worst" else -ap, kind="stable")
    return candidates[order[:n]]


def show(
    run_dir: Path, queries: int = 8, k: int = 5, seed: int = 0, echo: Callable = print
) -> list[Path]:
    """Three grids in ``RUN_DIR/pictures``: random, worst and best queries."""
    _check_counts(queries, k)
    run = finished_run(run_dir, echo)
    ranked = ranking(run, k)
    pictures = _Pictures(run, ranked)
    metrics = run.summary.get("metrics", {})
    headline = (
        f"{run.name} on {run.summary.get('dataset')} ({run.summary.get('split', 'test')} "
        f"classes): R@1 {100 * metrics.get('recall@1', float('nan')):.1f}, "
        f"MAP@R {100 * metrics.get('map@r', float('nan')):.1f}"
    )
    paths = []
    for how in ("random", "worst", "best"):
        chosen = pick_queries(ranked, how, queries, seed)
        rows = [
            GridRow(
                pictures.query_cell(q, f"AP@R {ranked.average_precision[q]:.2f}"),
                [pictures.neighbour_cells(q, k)],
            )
            for q in chosen
        ]
        title = f"{headline}\n{how} {len(rows)} queries" + (f" (seed {seed})" * (how == "random"))
        path = Path(run_dir) / SHOW_FOLDER / f"retrieval-{how}.png"
        with warnings.catch_warnings():  # a class caption's character missing from the font
            warnings.simplefilter("ignore", UserWarning)
            paths.append(draw_grid(rows, path, title, [f"top {k}"]))
    return paths


@dataclass
class Comparison:
    a_only: int  # queries run A gets right at rank 1 and run B wrong
    b_only: int
    both: int
    neither: int
    paths: list[Path]


def compare(
    run_a: Path,
    run_b: Path,
    queries: int = 8,
    k: int = 3,
    seed: int = 0,
    out: Path | None = None,
    echo: Callable = print,
) -> Comparison:
    """Counts of rank-1 agreement both ways, and a grid of each disagreement."""
    _check_counts(queries, k)
    a, b = finished_run(run_a, echo), finished_run(run_b, echo)
    _check_comparable(a, b)
    ranked_a, ranked_b = ranking(a, k), ranking(b, k)
    scored = _scored(ranked_a)
    right_a, right_b = ranked_a.correct[scored, 0], ranked_b.correct[scored, 0]
    groups = {
        "a_right_b_wrong": scored[right_a & ~right_b],
        "b_right_a_wrong": scored[right_b & ~right_a],
    }
    out = Path(out) if out is not None else Path(run_a) / SHOW_FOLDER / f"vs-{Path(run_b).name}"
    pictures_a, pictures_b = _Pictures(a, ranked_a), _Pictures(b, ranked_b)
    names = [f"A: {a.name}", f"B: {b.name}"]
    if names[0][3:] == names[1][3:]:
        names = [f"A: {a.name} ({Path(run_a).name})", f"B: {b.name} ({Path(run_b).name})"]
    paths = []
    rng = np.random.default_rng(seed)
    for stem, members in groups.items():
        chosen = np.sort(rng.choice(members, size=min(queries, len(members)), replace=False))
        rows = [
            GridRow(
                pictures_a.query_cell(
                    q,
                    f"AP@R {ranked_a.average_precision[q]:.2f} | "
                    f"{ranked_b.average_precision[q]:.2f}",
                ),  # fmt: skip
                [pictures_a.neighbour_cells(q, k), pictures_b.neighbour_cells(q, k)],
            )
            for q in chosen
        ]
        winner, loser = ("A", "B") if stem.startswith("a") else ("B", "A")
        title = (
            f"{names[0]}   vs   {names[1]}\n{winner} right at rank 1, {loser} wrong: "
            f"{len(members)} queries ({len(rows)} shown, seed {seed})"
        )
        if rows:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                paths.append(draw_grid(rows, out / f"{stem}.png", title, names))
    return Comparison(
        a_only=len(groups["a_right_b_wrong"]),
        b_only=len(groups["b_right_a_wrong"]),
        both=int((right_a & right_b).sum()),
        neither=int((~right_a & ~right_b).sum()),
        paths=paths,
    )


def _check_counts(queries: int, k: int) -> None:
    if queries < 1:
        raise UserError(f"--queries {queries}: show at least 1 query")
    if k < 1:
        raise UserError(f"--k {k}: show at least 1 neighbour")


def _check_comparable(a: StoredRun, b: StoredRun) -> None:
    """Same dataset, split and evaluation images in the same order, else one line."""
    for key in ("dataset", "split"):
        if a.summary.get(key) != b.summary.get(key):
            raise UserError(
                f"{a.run_dir} and {b.run_dir} were evaluated on different {key}s "
                f"({a.summary.get(key)} vs {b.summary.get(key)}); compare runs of one benchmark"
            )
    same = len(a.sets) == len(b.sets) and all(
        x.name == y.name and x.classes == y.classes for x, y in zip(a.sets, b.sets, strict=False)
    )
    if not same:
        raise UserError(
            f"{a.run_dir} and {b.run_dir}: their evaluation sets differ (another version of "
            "the dataset or of its validation split?); compare runs on the same images"
        )
