"""`dmlbench report --vs KEY` and `--curves`: ablation views of any grid."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from dmlbench.cli import main


def make_run(root, name, label, seed, epochs, alpha, map_r, curve):
    run = root / name
    run.mkdir(parents=True)
    config = {"method": "vptsp-g", "label": label, "dataset": "glyphs", "backbone": "vit",
              "seed": seed, "epochs": epochs, "method_options": {"alpha": alpha}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"status": "finished", "method": "vptsp-g", "dataset": "glyphs", "backbone": "vit",
               "seed": seed, "metrics": {"recall@1": 0.9, "map@r": map_r}}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    lines = [json.dumps({"epoch": e + 1, "map@r": v}) for e, v in enumerate(curve)]
    (run / "epochs.jsonl").write_text("\n".join(lines) + "\n")


def test_vs_a_method_option_gives_mean_std_and_n_per_value(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a", "VPTSP-G", 0, 4, 0.5, 0.50, [0.4, 0.5])
    make_run(root, "b", "VPTSP-G", 1, 4, 0.5, 0.54, [0.42, 0.54])
    make_run(root, "c", "VPTSP-G", 0, 4, 0.9, 0.60, [0.5, 0.6])
    make_run(root, "d", "VPT", 0, 4, 0.1, 0.58, [0.5, 0.58])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["report", str(root), "--vs", "opt.alpha", "--output",
                                       str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "### glyphs, vit: MAP@R (%) by opt.alpha"
    assert lines[2] == "| row | 0.1 | 0.5 | 0.9 |"
    # seeds 0 and 1 at α 0.5: mean 52.0, sample std √((2² + 2²) / 1) = 2.83
    assert "| VPTSP-G | — | 52.0 ± 2.8 (2) | 60.0 ± 0.0 (1) |" in lines
    assert "| VPT | 58.0 ± 0.0 (1) | — | — |" in lines
    assert (out / "vs-opt.alpha-map_r-glyphs-vit.png").is_file()
    assert (out / "vs-opt.alpha-map_r.md").read_text().startswith("### glyphs, vit")


def test_curves_and_an_unknown_key_and_a_real_grid(glyph_folder, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"output: {tmp_path / 'runs'}\n"
        "base: {backbone: vit_glyph_patch8_48, weights: none, batch_size: 8,"
        " images_per_class: 2, eval_every: 1}\n"
        "methods:\n"
        "  - {label: LP, method: linear-probe, epochs: 1}\n"
        "  - {label: LP, method: linear-probe, epochs: 2}\n"
        f"datasets: ['folder:{glyph_folder}']\n"
        "seeds: [0]\n"
    )
    swept = CliRunner().invoke(main, ["sweep", str(grid)])
    assert swept.exit_code == 0, swept.output
    out = tmp_path / "out"
    args = ["report", str(tmp_path / "runs"), "--vs", "epochs", "--metric", "recall@1"]
    result = CliRunner().invoke(main, [*args, "--curves", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "| row | 1 | 2 |" in result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("| LP |")]
    assert row.count("(1)") == 2  # one seed at each number of epochs
    plots = sorted(p.name for p in out.glob("*.png"))
    assert len(plots) == 2 and plots[0].startswith("curves-recall_1-folder_")
    assert plots[1].startswith("vs-epochs-recall_1-folder_")
    assert all(name.endswith("-vit_glyph_patch8_48.png") for name in plots)
    unknown = CliRunner().invoke(main, ["report", str(tmp_path / "runs"), "--vs", "nope"])
    assert unknown.exit_code == 2 and "--vs nope: no run has that config key" in unknown.output
