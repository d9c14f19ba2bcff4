"""dmlbench sweep: the grid, resuming, N at a time, failures that do not stop the rest."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.errors import UserError
from dmlbench.sweep import read_sweep


def grid_file(tmp_path, folder, methods: str) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"output: {tmp_path / 'runs'}\n"
        "base: {backbone: vit_glyph_patch8_48, weights: none, epochs: 1, batch_size: 8,"
        " images_per_class: 2}\n"
        f"methods:\n{methods}"
        f"datasets: ['folder:{folder}']\n"
        "seeds: [0, 1]\n"
    )
    return str(path)


METHODS = "  - {label: Linear probe, method: linear-probe}\n  - {label: 'VPT (L1, N2)', method: vpt, method_options: {layers: 1, prompts: 2}}\n"  # noqa: E501


def test_grid_is_the_product_and_keys_are_stable(glyph_folder, tmp_path):
    planned = read_sweep(tmp_path.joinpath(grid_file(tmp_path, glyph_folder, METHODS)))
    assert [(r.config.label, r.config.seed) for r in planned] == [
        ("Linear probe", 0), ("Linear probe", 1), ("VPT (L1, N2)", 0), ("VPT (L1, N2)", 1)
    ]  # fmt: skip
    assert planned[2].config.method_options == {"layers": 1, "prompts": 2}
    assert len({r.key for r in planned}) == 4
    again = read_sweep(tmp_path.joinpath(grid_file(tmp_path, glyph_folder, METHODS)))
    assert [r.key for r in again] == [r.key for r in planned]


def test_sweep_runs_resumes_and_survives_a_failure(glyph_folder, tmp_path):
    bad = "  - {label: Broken, method: vpt, method_options: {layers: 99}}\n"
    grid = grid_file(tmp_path, glyph_folder, METHODS + bad)
    runner = CliRunner()
    first = runner.invoke(main, ["sweep", grid, "--jobs", "2"])
    assert first.exit_code == 1, first.output
    lines = first.output.strip().splitlines()
    assert sum("finished in" in line for line in lines) == 4
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 2 and "layers=99 exceeds the backbone depth 6" in failed[0]
    assert lines[-1].endswith("4 finished now, 0 already, 2 failed")
    # A run killed after its last checkpoint: its summary still says "running";
    # the sweep resumes it in place (no second run of the same combination).
    runs = sorted((tmp_path / "runs").glob("*/summary.json"))
    assert len(runs) == 4
    summary = json.loads(runs[0].read_text())
    runs[0].write_text(json.dumps({**summary, "status": "running"}))
    dry = runner.invoke(main, ["sweep", grid, "--dry-run"])
    states = [line.rsplit(": ", 1)[1] for line in dry.output.splitlines() if "]: " in line]
    assert states.count("to resume") == 1 and states.count("to run") == 2
    second = runner.invoke(main, ["sweep", grid])
    assert f"resuming {runs[0].parent.name}" in second.output
    assert "1 finished now, 3 already, 2 failed" in second.output
    assert len(list((tmp_path / "runs").glob("*/summary.json"))) == 4
    resumed = json.loads(runs[0].read_text())
    assert resumed["status"] == "finished" and resumed["metrics"] == summary["metrics"]


def test_unknown_grid_key_is_one_line(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("method: [vpt]\n")
    with pytest.raises(UserError, match="unknown key 'method'; valid keys: backbones, base"):
        read_sweep(path)


@pytest.mark.parametrize("name,runs", [("table1-glyphs", 45), ("table1-cub", 33), ("table2", 24)])
def test_every_shipped_sweep_builds(name, runs):
    """Each planned run's method fits its backbone (built on the meta device, no weights)."""
    from pathlib import Path

    import torch

    from dmlbench.backbone import build_model
    from dmlbench.data.spec import get_dataset
    from dmlbench.registry import get_method

    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.yaml"
    planned = read_sweep(path)
    assert len(planned) == runs
    seen = set()
    for run in planned:
        c = run.config
        if (c.method, str(c.method_options), c.backbone, c.dataset) in seen:
            continue
        seen.add((c.method, str(c.method_options), c.backbone, c.dataset))
        classes = get_dataset(c.dataset).num_train_classes
        with torch.device("meta"):
            model = build_model(c.backbone, None, c.embedding_dim, classes)
        get_method(c.method).from_values(c.method_options).setup(model)


def test_committed_reference_result_matches_its_grid():
    """results/table1-glyphs/ is regenerated from benchmarks/table1-glyphs.yaml: every
    row of the grid, with all its seeds and nothing else, so an edited grid without a
    new report fails here."""
    from collections import Counter
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).parents[1]
    planned = read_sweep(root / "benchmarks" / "table1-glyphs.yaml")
    expected = Counter(run.config.label for run in planned)
    table = pd.read_csv(root / "results" / "table1-glyphs" / "report.csv")
    assert dict(zip(table["row"], table["n"], strict=True)) == dict(expected)
    markdown = (root / "results" / "table1-glyphs" / "report.md").read_text()
    for row, r1 in zip(table["row"], table["metrics.recall@1:mean"], strict=True):
        line = next(x for x in markdown.splitlines() if x.startswith(f"| {row} |"))
        assert f"| {100 * r1:.1f} ± " in line
