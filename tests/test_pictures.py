"""`dmlbench show` and `dmlbench compare` on runs whose retrieval is known by construction.

Runs come from `dmlbench eval --embeddings` with hand-made embeddings (one axis
per class), so which query is right at rank 1 is known without training; one
tiny training run checks the stored embeddings and their recomputation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dmlbench.cli import main
from dmlbench.eval.retrieval import QueryRanking
from dmlbench.run.pictures import pick_queries
from dmlbench.store.embeddings import load_eval_sets
from tests.conftest import TINY_BACKBONE


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def order_rows(glyph_csv, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("order") / "order.csv"
    result = cli("eval", "--dataset", f"folder:{glyph_csv}", "--dump-order", out)
    assert result.exit_code == 0, result.output
    with open(out) as f:
        return list(csv.DictReader(f))


# Rows moved in pairs onto an axis no class uses: each retrieves its partner (another
# class) at rank 1 and nobody else retrieves them first. So run B is wrong on exactly
# these 4 queries and run A (one axis per class) is right on all.
SWAPPED = [(0, 6), (12, 18)]


def embeddings_run(rows, root: Path, name: str, swapped=()) -> Path:
    labels = sorted({r["label"] for r in rows})
    x = np.zeros((len(rows), len(labels) + len(swapped)), dtype=np.float32)
    for i, r in enumerate(rows):
        x[i, labels.index(r["label"])] = 1.0
    for extra, pair in enumerate(swapped):
        for i in pair:
            assert rows[pair[0]]["label"] != rows[pair[1]]["label"]
            x[i] = 0.0
            x[i, len(labels) + extra] = 1.0
    x += np.random.default_rng(0).normal(0, 0.01, x.shape).astype(np.float32)
    np.save(root / f"{name}.npy", x)
    return root / f"{name}.npy"


def stored_dir(result) -> Path:
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1].split("stored in ")[1])


@pytest.fixture(scope="module")
def two_runs(order_rows, glyph_csv, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pictures")
    dirs = []
    for name, swapped in (("perfect", ()), ("swapped", SWAPPED)):
        path = embeddings_run(order_rows, root, name, swapped)
        dirs.append(stored_dir(cli("eval", "--embeddings", path, "--dataset",
                                   f"folder:{glyph_csv}", "--output", root / "runs")))  # fmt: skip
    return dirs[0], dirs[1]


@pytest.fixture
def drawn(monkeypatch) -> dict[str, list]:
    """The rows of every grid drawn, by file name (the PNGs are still written)."""
    import dmlbench.run.pictures as pictures

    seen: dict[str, list] = {}
    real = pictures.draw_grid

    def record(rows, path, title, group_titles):
        seen[path.name] = rows
        return real(rows, path, title, group_titles)

    monkeypatch.setattr(pictures, "draw_grid", record)
    return seen


def frames(row) -> list[list[bool | None]]:
    return [[cell.correct for cell in group] for group in row.groups]


def test_final_embeddings_are_stored_in_evaluation_order(two_runs, order_rows):
    (test_set,) = load_eval_sets(two_runs[0])
    assert test_set.name == "test" and len(test_set.paths) == len(order_rows) == 24
    assert test_set.classes == [r["label"] for r in order_rows]
    assert test_set.embeddings.dtype == np.float32  # stored as float16, read back as float32
    assert sorted(set(test_set.labels.tolist())) == [0, 1, 2, 3]


def test_show_draws_three_grids_with_right_frames(two_runs, drawn):
    result = cli("show", two_runs[1], "--queries", 4, "--k", 3)
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.output.strip().splitlines()]
    assert [p.name for p in paths] == [f"retrieval-{h}.png" for h in ("random", "worst", "best")]
    assert all(p.parent == two_runs[1] / "pictures" and p.stat().st_size > 10_000 for p in paths)
    # the 4 worst queries are the swapped rows: rank 1 is their partner, of another class
    worst = drawn["retrieval-worst.png"]
    assert len(worst) == 4 and all(frames(row)[0][0] is False for row in worst)
    assert all(row.query.correct is None for row in worst)  # the query itself: no verdict
    best = drawn["retrieval-best.png"]
    assert all(frames(row) == [[True, True, True]] for row in best)
    ap = {name: [float(row.query.caption.split("AP@R ")[1]) for row in drawn[name]]
          for name in ("retrieval-worst.png", "retrieval-best.png")}  # fmt: skip
    assert max(ap["retrieval-worst.png"]) < min(ap["retrieval-best.png"])
    width, height = Image.open(paths[2]).size
    assert width > 300 and 4 * 80 < height < 4 * 250  # 4 rows of 1 + 3 cells


def test_pick_queries_orders_by_average_precision():
    ap = np.array([0.5, np.nan, 0.1, 0.9, 0.1])
    ranked = QueryRanking(np.zeros((5, 1), int), np.zeros((5, 1)), np.zeros((5, 1), bool), ap)
    assert pick_queries(ranked, "worst", 3, 0).tolist() == [2, 4, 0]  # ties: lower index
    assert pick_queries(ranked, "best", 2, 0).tolist() == [3, 0]
    random = pick_queries(ranked, "random", 10, 0)
    assert sorted(random.tolist()) == [0, 2, 3, 4]  # a lone query (NaN) is never drawn


def test_compare_counts_both_ways(two_runs, drawn):
    a, b = two_runs
    result = cli("compare", a, b, "--k", 2)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    counts = {line[:19].strip(): int(line[19:28]) for line in lines if "%" in line}
    assert counts == {"A right, B wrong": 4, "B right, A wrong": 0, "both right": 20,
                      "both wrong": 0}  # fmt: skip
    (grid,) = [Path(line) for line in lines if line.endswith(".png")]
    assert grid.name == "a_right_b_wrong.png" and grid.parent == a / "pictures" / f"vs-{b.name}"
    rows = drawn["a_right_b_wrong.png"]
    assert len(rows) == 4  # A: its class at ranks 1-2; B: the swapped partner at rank 1
    assert all(frames(row)[0] == [True, True] and frames(row)[1][0] is False for row in rows)
    reverse = cli("compare", b, a, "--out", b / "elsewhere")
    assert "B right, A wrong       4" in reverse.output
    assert (b / "elsewhere" / "b_right_a_wrong.png").is_file()


def test_show_and_compare_refuse_what_they_cannot_read(two_runs, glyph_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("method: linear-probe\n")
    (unfinished / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    folder = f"folder:{glyph_folder}"
    other = stored_dir(cli("eval", "--backbone", TINY_BACKBONE, "--weights", "none",
                           "--dataset", folder, "--output", tmp_path / "r"))  # fmt: skip
    cases = [
        (("show", empty), "no config.yaml there"),
        (("show", unfinished), "the run is interrupted, not finished"),
        (("show", two_runs[0], "--queries", 0), "--queries 0"),
        (("compare", two_runs[0], other), "evaluated on different datasets"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert message in line
    assert not (unfinished / "pictures").exists()


def test_a_trained_run_keeps_or_recomputes_its_embeddings(glyph_folder, tmp_path):
    args = ["run", "--dataset", f"folder:{glyph_folder}", "--backbone", TINY_BACKBONE,
            "--weights", "none", "--epochs", 1, "--batch-size", 8, "--images-per-class", 2,
            "--output", tmp_path / "runs"]  # fmt: skip
    kept = stored_dir(cli(*args))
    dropped = stored_dir(cli(*args, "--no-save-embeddings"))
    assert (kept / "embeddings.safetensors").is_file()
    assert not (dropped / "embeddings.safetensors").exists()
    result = cli("show", dropped, "--queries", 2)
    assert result.exit_code == 0, result.output
    assert "no stored embeddings; computing them from its checkpoint" in result.output
    assert "warning" not in result.output  # the recomputed R@1 equals the summary's
    (first,) = load_eval_sets(kept)
    (again,) = load_eval_sets(dropped)  # same seed: the same model, so the same embeddings
    np.testing.assert_allclose(again.embeddings, first.embeddings, atol=2e-3)
    assert again.classes == first.classes
