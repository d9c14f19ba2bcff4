"""benchmarks/vptsp_study.py: the study's tables from hand-made run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import benchmark_script

study = benchmark_script("vptsp_study")


def fake_run(folder: Path, label: str, seed: int, epochs: list[dict], final: dict,
             start: dict | None = None, best: dict | None = None) -> None:  # fmt: skip
    run_dir = folder / f"{label.replace(' ', '_')}-s{seed}-{len(epochs)}"
    run_dir.mkdir(parents=True)
    summary = {"status": "finished", "seed": seed, "method_label": label, "metrics": final}
    if start is not None:
        summary["method_state"] = {"start": start, "end": {}}
    if best is not None:
        summary["best_on_test"] = best
    (run_dir / "summary.json").write_text(json.dumps(summary))
    config = {"label": label, "seed": seed, "epochs": len(epochs)}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "epochs.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))


def test_the_bridge_and_paper_tables_hold_the_runs_means_and_gaps(tmp_path):
    paper, bridge = tmp_path / "paper", tmp_path / "bridge"
    for seed, (vpt, sp) in enumerate([(0.60, 0.62), (0.56, 0.63)]):
        best = {"recall@1": 0.91, "map@r": vpt}
        fake_run(paper, "VPT (B) (L6, N10)", seed, [{"epoch": 1, "map@r": vpt - 0.1}],
                 {"recall@1": 0.9, "map@r": vpt}, best=best)  # fmt: skip
        fake_run(paper, "VPTSP-G (B)", seed, [{"epoch": 1, "map@r": sp - 0.01}],
                 {"recall@1": 0.91, "map@r": sp})  # fmt: skip
    fake_run(bridge, "VPT (B), paper, k=1", 0, [], {"recall@1": 0.915, "map@r": 0.628})
    fake_run(bridge, "VPTSP-G (B), paper, k=1", 0, [], {"recall@1": 0.915, "map@r": 0.623})
    cells = study.collect(study.argparse.Namespace(paper=paper, bridge=bridge, fair=None))
    text = study.table(cells)
    (k1,) = [line for line in text.splitlines() if line.startswith("| paper, k=1 |")]
    assert "| 91.5 / 62.8 | 91.5 / 62.3 | +0.0 / -0.5 | 1 / 1 |" in k1
    (both,) = [line for line in text.splitlines() if line.startswith("| paper |")]
    # VPT (B): MAP@R 60 and 56 → 58.0 ± 2.8; VPTSP-G (B): 62 and 63 → 62.5 ± 0.7; gap +4.5
    assert "| 90.0 ± 0.0 / 58.0 ± 2.8 | 91.0 ± 0.0 / 62.5 ± 0.7 | +1.0 / +4.5 | 2 / 2 |" in both
    rows = study.paper_table(cells).splitlines()
    assert "| VPT (B) | 90.0 ± 0.0 | 58.0 ± 2.8 | 91.0 ± 0.0 | 58.0 ± 2.8 | 2 |" in rows


def test_the_mechanism_starts_at_the_untrained_model_and_the_initial_state(tmp_path):
    """Epoch 0 of a row is its `epochs: 0` run of the same seed; O's share and cos(P, O)
    start at the run's method_state.start."""
    folder = tmp_path / "mechanism"
    for seed, base in enumerate((0.50, 0.52)):
        fake_run(folder, "VPTSP-G (B)", seed, [], {"map@r": base})  # the untrained model
        records = [{"epoch": e, "map@r": base + 0.01 * e, "state.o_share": 0.5 + 0.01 * e,
                    "state.cos_p_o": -0.1} for e in range(1, 13)]  # fmt: skip
        fake_run(folder, "VPTSP-G (B)", seed, records, {"map@r": base + 0.12},
                 start={"o_share": 0.13, "cos_p_o": 0.0})  # fmt: skip
        fake_run(folder, "VPT (B) (L6, N10)", seed, [], {"map@r": base - 0.01})
        fake_run(folder, "VPT (B) (L6, N10)", seed,
                 [{"epoch": e, "map@r": base + 0.02 * e} for e in range(1, 13)],
                 {"map@r": base + 0.24})  # fmt: skip
    curves = study.mechanism_curves(folder)
    assert curves["VPTSP-G (B)"]["map"].shape == (2, 13)
    lines = study.mechanism_table(curves).splitlines()
    assert (
        lines[0] == "| row | seeds | epoch 0 | epoch 1 | epoch 2 | epoch 4 | epoch 8 | epoch 12 |"
    )
    # seeds' MAP@R at epoch 0: 50 and 52 → 51.0 ± 1.4; epoch 12: 62 and 64 → 63.0 ± 1.4
    assert ("| VPTSP-G (B): validation MAP@R | 2 | 51.0 ± 1.4 | 52.0 ± 1.4 | 53.0 ± 1.4 | "
            "55.0 ± 1.4 | 59.0 ± 1.4 | 63.0 ± 1.4 |") in lines  # fmt: skip
    assert ("| VPT (B) (L6, N10): validation MAP@R | 2 | 50.0 ± 1.4 | 53.0 ± 1.4 | 55.0 ± 1.4 | "
            "59.0 ± 1.4 | 67.0 ± 1.4 | 75.0 ± 1.4 |") in lines  # fmt: skip
    assert ("| VPTSP-G (B): O's share of Q (%) | 2 | 13.0 ± 0.0 | 51.0 ± 0.0 | 52.0 ± 0.0 | "
            "54.0 ± 0.0 | 58.0 ± 0.0 | 62.0 ± 0.0 |") in lines  # fmt: skip
    assert ("| VPTSP-G (B): cos(P, O) | 2 | 0.00 ± 0.00 | -0.10 ± 0.00 | -0.10 ± 0.00 | "
            "-0.10 ± 0.00 | -0.10 ± 0.00 | -0.10 ± 0.00 |") in lines  # fmt: skip
    assert not any(line.startswith("| VPT (B) (L6, N10): O's") for line in lines)
    assert study.mechanism_figure(curves, tmp_path).is_file()


@pytest.mark.parametrize("missing", ["paper", "bridge"])
def test_a_missing_arm_folder_leaves_its_cells_empty(tmp_path, missing):
    args = study.argparse.Namespace(paper=None, bridge=None, fair=None)
    setattr(args, missing, tmp_path / "nowhere")
    assert "| paper | " in study.table(study.collect(args))
