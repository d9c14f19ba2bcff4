"""The report's figures: what they show and where, read back from the figure objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmlbench.store import plots


@pytest.fixture
def figures(monkeypatch) -> list:
    """Every figure a plot function saves (still written to disk)."""
    seen = []
    real = plots._save

    def keep(fig, folder, stem):
        seen.append(fig)
        return real(fig, folder, stem)

    monkeypatch.setattr(plots, "_save", keep)
    return seen


def rows(scores: list[float], params: list[float], reference=()) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame({
        "row": [f"row {i}" for i in range(n)],
        "params.tunable:mean": params,
        "metrics.recall@1:mean": np.array(scores) / 100,
        "memory.peak_mb:mean": np.linspace(100, 500, n),
        "is_full_ft": [i == 0 for i in range(n)],
        "is_reference": [i in reference for i in range(n)],
    })  # fmt: skip


def test_main_range_leaves_out_a_far_row_only():
    scores = np.array([64.1, 64.6, 65.0, 65.4, 66.1, 67.9, 71.4, 5.4])
    low, high = plots.main_range(scores)
    # quartiles 64.475 and 66.55: IQR 2.075, fences 3 IQR = 6.225 beyond them
    assert low == pytest.approx(64.475 - 6.225) and high == pytest.approx(66.55 + 6.225)
    assert ((scores < low) | (scores > high)).tolist() == [False] * 7 + [True]


def test_styles_are_unique_for_forty_rows():
    pairs = [plots.style(i) for i in range(40)]
    assert len(set(pairs)) == 40
    assert plots.style(0) != plots.style(10)  # the colour repeats, the marker does not


def test_tick_labels_read_as_counts():
    assert [plots._count(v) for v in (50, 2e4, 1e5, 2.5e6)] == ["50", "20k", "100k", "2.5M"]


def test_tradeoff_axis_ignores_a_far_row_and_draws_references_as_lines(figures, tmp_path):
    scores = [71.4, 64.1, 67.9, 65.4, 64.6, 65.0, 64.6, 5.4]
    params = [2.85e6, 7e4, 6.5e5, 1.7e5, 7e4, 8e4, 6e4, 6e4]
    paths = plots.tradeoff(rows(scores, params, reference=(6,)), tmp_path, "t", "title")
    assert [p.name for p in paths] == ["t.png", "t.pdf"]
    ax, key = figures[0].axes
    low, high = ax.get_ylim()
    assert 60 < low < 64.1 and 71.4 < high < 75  # 5.4 does not stretch it
    assert ax.get_xscale() == "log"
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and dotted[0].get_ydata()[0] == pytest.approx(64.6)
    text = key.texts[0].get_text().splitlines()
    assert len(text) == 8 and text[7].endswith("row 7: 5.4 (off the scale)")
    assert text[6].endswith("(reference, dotted)")
    labels = [t.get_text() for t in ax.texts]
    assert "8" in labels  # the off-scale row's number at the axis edge
    assert sorted(n for t in labels for n in t.split()) == sorted(map(str, range(1, 9)))


def test_convergence_gives_every_row_its_own_style_and_an_outside_legend(figures, tmp_path):
    runs = []
    for i in range(12):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        records = [{"epoch": e, "train_seconds": 1.0, "recall@1": 0.5 + 0.01 * (e + i)}
                   for e in (1, 2, 3)]  # fmt: skip
        (run_dir / "epochs.jsonl").write_text("\n".join(map(json.dumps, records)))
        runs.append({"row": f"row {i}", "run_dir": str(run_dir)})
    plots.convergence(pd.DataFrame(runs), tmp_path / "out", "c", "title")
    by_epoch = figures[0].axes[0]
    styles = {(line.get_color(), line.get_marker()) for line in by_epoch.get_lines()}
    assert len(by_epoch.get_lines()) == 12 and len(styles) == 12
    (legend,) = figures[0].legends
    assert [t.get_text() for t in legend.get_texts()] == [f"row {i}" for i in range(12)]
    assert by_epoch.get_legend() is None  # outside the axes, not over the lines
    assert all(float(t).is_integer() for t in by_epoch.get_xticks())
    assert Path(tmp_path / "out" / "c.pdf").stat().st_size > 1000


def test_close_reference_lines_share_one_label_and_long_names_wrap(figures, tmp_path):
    scores = [90.9, 88.6, 88.15, 88.2]
    params = [2.85e6, 5.7e4, 5.7e4, 5.7e4]
    data = rows(scores, params, reference=(2, 3))
    data.loc[3, "row"] = "vit_glyph_patch8_48.dmlbench_glyphs_v2 (zero-shot, no head at all)"
    plots.tradeoff(data, tmp_path, "t", "title")
    ax, key = figures[0].axes
    labels = [t.get_text() for t in ax.texts]
    assert "3 4" in labels and "3" not in labels and "4" not in labels  # one label, not two
    lines = key.texts[0].get_text().splitlines()
    assert max(map(len, lines)) <= plots.KEY_WIDTH
    assert lines[3].startswith(" 4  vit_glyph") and lines[4].startswith("    ")
    assert "(reference, dotted)" in " ".join(lines[3:])


def test_runs_evaluated_once_draw_no_convergence_figure(figures, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = [{"epoch": 1, "train_seconds": 1.0}, {"epoch": 2, "train_seconds": 1.0,
                                                     "recall@1": 0.7}]  # fmt: skip
    (run_dir / "epochs.jsonl").write_text("\n".join(map(json.dumps, records)))
    runs = pd.DataFrame([{"row": "row 0", "run_dir": str(run_dir)}])
    assert plots.convergence(runs, tmp_path / "out", "c", "title") == []
    assert not figures and not (tmp_path / "out").exists()


def test_memory_bars_say_which_rows_trained_no_model(figures, tmp_path):
    part = rows([71.4, 64.1, 30.0], [2.85e6, 7e4, 0.0])
    part.loc[2, "memory.peak_mb:mean"] = np.nan  # a raw-pixel row: nothing on the device
    plots.memory_bars(part, tmp_path, "m", "title")
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.texts] == ["100 (100%)", "300 (300%)", "no model trained"]
    assert ax.texts[2].xy == (0, 2)
