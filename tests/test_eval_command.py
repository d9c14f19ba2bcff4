"""`dmlbench eval`: a backbone with no training, and embeddings made elsewhere."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import save_file

from dmlbench.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["eval", *args])


@pytest.fixture
def order(glyph_csv, tmp_path) -> tuple[str, list[dict]]:
    """The evaluation order of the tiny CSV dataset (its test half)."""
    dataset = f"folder:{glyph_csv}"
    out = tmp_path / "order.csv"
    result = run("--dataset", dataset, "--dump-order", str(out))
    assert result.exit_code == 0, result.output
    with open(out) as f:
        return dataset, list(csv.DictReader(f))


def one_hot_embeddings(rows: list[dict]) -> np.ndarray:
    """Perfect embeddings: one axis per class, plus a little noise."""
    labels = sorted({r["label"] for r in rows})
    x = np.zeros((len(rows), len(labels)), dtype=np.float32)
    for i, r in enumerate(rows):
        x[i, labels.index(r["label"])] = 1.0
    return x + np.random.default_rng(0).normal(0, 0.01, x.shape).astype(np.float32)


@pytest.mark.parametrize("suffix", [".npy", ".safetensors", ".pt"])
def test_saved_embeddings_are_scored_and_stored(order, tmp_path, suffix):
    dataset, rows = order
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    x = one_hot_embeddings(rows)
    path = tmp_path / f"emb{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    elif suffix == ".safetensors":
        save_file({"embeddings": x}, str(path))
    else:
        torch.save(torch.from_numpy(x), path)
    result = run("--embeddings", str(path), "--dataset", dataset, "--output", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("stored in ")[1])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics"]["recall@1"] == 1.0 and summary["metrics"]["map@r"] == 1.0
    assert summary["metrics"]["nmi"] == pytest.approx(1.0)
    from dmlbench.store.report import render

    assert "| emb |" in render(tmp_path / "r")  # the report lists it like a run


def test_embeddings_with_labels_need_no_dataset(tmp_path):
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    np.save(tmp_path / "e.npy", x)
    (tmp_path / "l.csv").write_text("label\na\na\nb\nb\n")
    result = run("--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "l.csv"),
                 "--output", str(tmp_path / "r"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "R@1 1.0000" in result.output


def test_a_backbone_is_scored_untrained(glyph_folder, tmp_path):
    result = run("--backbone", "vit_glyph_patch8_48", "--weights", "none", "--dataset",
                 f"folder:{glyph_folder}", "--output", str(tmp_path / "r"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "vit_glyph_patch8_48 (zero-shot)" in result.output and "MAP@R" in result.output


@pytest.mark.parametrize("make,message", [
    (lambda x: x[:-1], "rows, but folder:"),
    (lambda x: x.reshape(-1), "expected a 2-D array"),
    (lambda x: np.where(np.arange(len(x))[:, None] == 2, np.nan, x), "row 2 holds NaN"),
])  # fmt: skip
def test_wrong_embeddings_are_one_line(order, tmp_path, make, message):
    dataset, rows = order
    np.save(tmp_path / "bad.npy", make(one_hot_embeddings(rows)))
    result = run("--embeddings", str(tmp_path / "bad.npy"), "--dataset", dataset,
                 "--output", str(tmp_path / "r"))  # fmt: skip
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: --embeddings") and message in line
    assert not (tmp_path / "r").exists()  # nothing stored


def test_eval_needs_exactly_one_source():
    result = run("--dataset", "glyphs")
    assert result.exit_code == 2 and "give one of --backbone, --embeddings" in result.output
