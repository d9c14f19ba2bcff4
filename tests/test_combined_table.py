"""benchmarks/combined_table.py: rows of two reports in one table, ordered by test R@1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import benchmark_script

ROOT = Path(__file__).parents[1]


def _split_report(tmp_path: Path) -> tuple[Path, Path]:
    """The committed reference report cut in two: its first 10 rows, and the rest."""
    report = pd.read_csv(ROOT / "results" / "table1-glyphs" / "report.csv")
    first, second = tmp_path / "base" / "report.csv", tmp_path / "zoo" / "report.csv"
    for path, part in ((first, report.iloc[:10]), (second, report.iloc[10:])):
        path.parent.mkdir()
        part.to_csv(path, index=False)
    return first, second


def test_rows_of_two_reports_in_one_order_with_places_and_sources(tmp_path):
    first, second = _split_report(tmp_path)
    out = tmp_path / "combined"
    combined_table = benchmark_script("combined_table")
    assert combined_table.main([str(first), str(second), "--output", str(out)]) == 0
    text = (out / "combined.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    body = [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]
    report = pd.read_csv(ROOT / "results" / "table1-glyphs" / "report.csv")
    trained = report[~report["is_reference"].astype(bool)]
    assert len(body) == len(report)
    # trained rows first, by R@1 (best first), numbered 1..n; the references after, unnumbered
    expected = trained.sort_values("metrics.recall@1:mean", ascending=False)["row"].to_list()
    assert [b[1] for b in body[: len(trained)]] == expected
    assert [b[0] for b in body] == [str(i) for i in range(1, len(trained) + 1)] + ["—"] * (
        len(report) - len(trained)
    )
    sources = dict(zip(report["row"], ["base"] * 10 + ["zoo"] * (len(report) - 10), strict=True))
    assert all(b[2] == sources[b[1]] for b in body)
    assert (out / "plots" / "glyphs-tradeoff.png").is_file()


def test_a_row_in_two_reports_is_refused_in_one_line(tmp_path, capsys):
    first, _ = _split_report(tmp_path)
    out = tmp_path / "combined"
    combined_table = benchmark_script("combined_table")
    assert combined_table.main([str(first), str(first), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rows in more than one report" in err[0]
    assert not out.exists()
