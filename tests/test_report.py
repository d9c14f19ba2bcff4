"""dmlbench report against hand-made run directories with known numbers."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.errors import UserError
from dmlbench.store.report import aggregate, collect, render, table1

CUB, VITS = "cub", "vit_small_patch16_224.augreg_in21k"


def make_run(root, name, method, label, seed, r1, map_r, tunable, memory, status="finished",
             dataset=CUB, backbone=VITS):  # fmt: skip
    run = root / name
    run.mkdir(parents=True)
    config = {"method": method, "label": label, "dataset": dataset, "backbone": backbone,
              "seed": seed, "method_options": {}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"status": status, "method": method, "method_label": method, "dataset": dataset,
               "backbone": backbone, "seed": seed}  # fmt: skip
    if status == "finished":
        summary.update(
            metrics={"recall@1": r1, "recall@2": r1 + 0.05, "map@r": map_r},
            params={"tunable": tunable, "tunable_pct_of_backbone": 100 * tunable / 21_665_664},
            memory={"peak_mb": memory, "peak_kind": "measured (CUDA allocator)"},
            time={"wall_seconds": 10.0},
            best_on_test={"recall@1": r1 + 0.01, "map@r_paper": map_r - 0.02},
        )
    else:
        summary["error"] = "NonFiniteLoss: loss is nan at step 3 (epoch 1)"
    (run / "summary.json").write_text(json.dumps(summary))
    epochs = [{"epoch": e, "train_seconds": 5.0, "recall@1": r1 - 0.1 / e} for e in (1, 2)]
    (run / "epochs.jsonl").write_text("\n".join(json.dumps(e) for e in epochs) + "\n")


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a", "full-ft", "Full fine-tuning", 0, 0.85, 0.50, 21_852_672, 6000)
    make_run(root, "b", "full-ft", "Full fine-tuning", 1, 0.87, 0.52, 21_852_672, 6000)
    make_run(root, "c", "vpt", "VPT (L12, N10)", 0, 0.84, 0.53, 233_088, 2000)
    make_run(root, "d", "vpt", "VPT (L12, N10)", 1, 0.86, 0.55, 233_088, 2400)
    make_run(root, "e", "vpt", "VPT (L12, N10)", 2, 0, 0, 0, 0, status="failed")
    (root / "f").mkdir()
    (root / "f" / "summary.json").write_text("{truncated")  # a corrupt run: skipped, kept
    return root


def test_table1_numbers_means_stds_and_deltas(runs):
    collected = collect(runs)
    assert len(collected.finished) == 4
    assert list(collected.failed["row"]) == ["VPT (L12, N10)", "—"]
    assert list(collected.failed["status"]) == ["failed", "incomplete"]
    assert collected.failed["error"].iloc[1] == "no config.yaml"
    (table,) = table1(aggregate(collected.finished)).values()
    full, vpt = table.iloc[0], table.iloc[1]
    assert full["method"] == "Full fine-tuning" and full["R@1"] == "86.0 ± 1.4"
    # VPT: mean 85.0, std 1.4, 1.0 below full FT; MAP@R 54.0 vs 51.0: +3.0
    assert vpt["R@1"] == "85.0 ± 1.4 (-1.0)" and vpt["MAP@R"] == "54.0 ± 1.4 (+3.0)"
    assert vpt["peak memory (CUDA, measured)"] == "2200 MB (36.7%)" and vpt["n"] == 2
    assert vpt["tunable params"] == "0.23M (1.08%)"
    assert (runs / "f" / "summary.json").read_text() == "{truncated"


def test_markdown_report_with_paper_plots_and_failures(runs, tmp_path):
    out = tmp_path / "report"
    text = render(runs, "markdown", out, with_paper=True)
    assert "| VPT (L12, N10) | 0.23M (1.08%) | 2200 MB (36.7%) | 85.0 ± 1.4 (-1.0) |" in text
    assert "| 0.23M | 2.2G (36.6%) | 85.1 | 51.2 |" in text  # the paper's VPT row, beside ours
    assert "published numbers" in text
    assert "NonFiniteLoss: loss is nan at step 3" in text
    for kind in ("tradeoff", "memory", "convergence"):
        assert (out / "plots" / f"cub-{VITS}-{kind}.png").stat().st_size > 1000
        assert f"plots/cub-{VITS}-{kind}.png" in text
    csv = (out / "report.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,backbone,row,") and len(csv) == 3


def test_latex_is_a_standalone_booktabs_document_with_best_in_bold(runs):
    text = render(runs, "latex")
    assert text.startswith("\\documentclass{article}") and text.rstrip().endswith("\\end{document}")
    assert text.count("\\begin{tabular}") == text.count("\\end{tabular}") == 2
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "\\textbf{86.0 $\\pm$ 1.4}" in text  # best R@1
    assert "\\textbf{54.0 $\\pm$ 1.4 (+3.0)}" in text  # best MAP@R


def test_with_paper_lines_the_papers_best_epoch_up_with_ours(runs):
    """The paper reports each run's best test epoch; --with-paper shows ours the same way
    beside it, while R@1 and MAP@R stay the final epoch."""
    (table,) = table1(aggregate(collect(runs).finished)).values()
    assert "R@1 best-on-test" not in table.columns
    text = render(runs, "markdown", with_paper=True)
    header = next(line for line in text.splitlines() if line.startswith("| method |"))
    assert "| R@1 best-on-test | MAP@R best-on-test |" in header
    vpt = next(line for line in text.splitlines() if line.startswith("| VPT (L12, N10) |"))
    # final-epoch R@1 85.0 ± 1.4; best epoch 86.0 ± 1.4; paper-style MAP@R 52.0 ± 1.4
    assert "| 85.0 ± 1.4 (-1.0) |" in vpt and "| 86.0 ± 1.4 | 52.0 ± 1.4 |" in vpt
    assert "compare them with our *best-on-test* columns" in text


def test_latex_escapes_every_special_character_of_a_label():
    from dmlbench.store.report import latex_escape

    label = r"VPT_{x}^2 ~50% & #1 $5 a\b ±×"
    assert latex_escape(label) == (
        r"VPT\_\{x\}\textasciicircum{}2 \textasciitilde{}50\% \& \#1 \$5 a\textbackslash{}b "
        r"$\pm$$\times$"
    )
    # No special character is left bare: each one that remains opens an escape we wrote.
    escaped = latex_escape("".join(chr(c) for c in range(32, 127)))
    bare = escaped
    for sequence in (r"\textbackslash{}", r"\textasciicircum{}", r"\textasciitilde{}",
                     r"\textless{}", r"\textgreater{}", r"\textbar{}", r"\{", r"\}", r"\$",
                     r"\&", r"\%", r"\#", r"\_"):  # fmt: skip
        bare = bare.replace(sequence, "")
    assert not set(bare) & set("\\{}$&%#_^~")


def test_filter_and_empty_results_are_one_line(runs, tmp_path):
    text = render(runs, "csv", filters={"method": "vpt"})
    assert "Full fine-tuning" not in text and "VPT (L12, N10)" in text
    with pytest.raises(UserError, match="no runs under"):
        render(tmp_path / "nothing")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and result.output.count("\n") == 1


def test_runs_with_different_metric_sets_show_dashes(runs):
    make_run(runs, "g", "linear-probe", "Linear probe", 0, 0.8, 0.4, 187_008, 1000,
             dataset="sop")  # fmt: skip
    text = render(runs, "markdown")
    assert "## sop, " in text and "| Linear probe |" in text
    assert "—" in text.split("Table-2 layout")[1]  # cub columns empty for the sop row


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex not installed")
def test_latex_report_with_hostile_labels_compiles(tmp_path):
    """Where pdflatex exists, the escaped document really compiles (the test above
    checks the escaping itself everywhere)."""
    import subprocess

    import pandas as pd

    from dmlbench.store.report import latex_document, to_latex

    label = r"VPT_{x}^2 ~50% & #1 $5 a\b <|> ±× ≤≥→ — –"
    table = pd.DataFrame({"method": [label], "R@1": ["86.0 ± 1.4"]})
    (tmp_path / "t.tex").write_text(latex_document([to_latex(table, label, ("R@1",))]))
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]


def test_validation_runs_are_a_section_of_their_own_never_averaged_with_test(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a", "full-ft", "Full fine-tuning", 0, 0.80, 0.50, 21_852_672, 6000)
    make_run(root, "b", "full-ft", "Full fine-tuning", 1, 0.90, 0.60, 21_852_672, 6000)
    # the same row and seed, scored on validation classes
    make_run(root, "v", "full-ft", "Full fine-tuning", 0, 0.70, 0.40, 21_852_672, 6000)
    summary = json.loads((root / "v" / "summary.json").read_text())
    (root / "v" / "summary.json").write_text(json.dumps({**summary, "split": "val"}))
    tables = table1(aggregate(collect(root).finished))
    assert set(tables) == {(CUB, VITS), (f"{CUB} (validation classes)", VITS)}
    assert tables[(CUB, VITS)]["R@1"].tolist() == ["85.0 ± 7.1"]
    assert tables[(f"{CUB} (validation classes)", VITS)]["R@1"].tolist() == ["70.0"]
    assert "## cub (validation classes), vit_small" in render(root)


def test_a_row_without_a_training_step_leaves_the_memory_header_to_the_others(runs):
    zero_shot = runs / "z"
    zero_shot.mkdir()
    (zero_shot / "config.yaml").write_text(yaml.safe_dump({"label": "zero-shot"}))
    summary = {"status": "finished", "method": "zero-shot", "dataset": CUB, "backbone": VITS,
               "seed": 0, "metrics": {"recall@1": 0.7, "map@r": 0.3}}  # fmt: skip
    (zero_shot / "summary.json").write_text(json.dumps(summary))
    table = table1(aggregate(collect(runs).finished))[(CUB, VITS)]
    assert "peak memory (CUDA, measured)" in table.columns


def test_a_row_without_a_model_is_a_reference_row_of_every_backbone_on_its_dataset(runs, tmp_path):
    def no_model(name: str, dataset: str) -> None:
        make_run(runs, name, "embeddings", "Raw-pixel kNN (no model)", 0, 0.30, 0.04, 0, 0,
                 dataset=dataset, backbone="—")  # fmt: skip
        summary = json.loads((runs / name / "summary.json").read_text())
        summary["time"]["epochs"] = 0
        (runs / name / "summary.json").write_text(json.dumps(summary))

    no_model("p", CUB)
    no_model("q", "cars")  # a dataset no backbone ran on: a section of its own, no plot
    make_run(runs, "o", "full-ft", "Full fine-tuning", 0, 0.80, 0.45, 5_000_000, 3000,
             backbone="vit_other")  # fmt: skip
    text = render(runs, output=tmp_path / "out")
    sections = text.split("\n## ")
    for header in (f"{CUB}, {VITS}", f"{CUB}, vit_other"):
        (section,) = [s for s in sections if s.startswith(header)]
        rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
        assert rows[-1].startswith("| Raw-pixel kNN (no model) | ") and "| 30.0 (" in rows[-1]
    assert f"{CUB}, —" not in text and "cars, —" in text
    plots = sorted(p.name for p in (tmp_path / "out" / "plots").glob("*tradeoff.png"))
    assert plots == [f"{CUB}-vit_other-tradeoff.png", f"{CUB}-{VITS}-tradeoff.png"]
