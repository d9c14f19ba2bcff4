"""torchrun on the CPU (gloo, 2 processes) trains like one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def epoch_records(output) -> list[dict]:
    (run_dir,) = [p for p in output.iterdir() if p.is_dir()]  # one results directory
    lines = (run_dir / "epochs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_two_gloo_processes_match_one_process(glyph_folder, tmp_path):
    args = [
        # the small glyph ViT: the folder recipe's ViT-S at 224² took 90 s and tested no more
        "run", "--dataset", f"folder:{glyph_folder}", "--backbone", "vit_glyph_patch8_48",
        "--weights", "none",
        "--method", "full-ft", "--epochs", "2", "--batch-size", "8", "--images-per-class", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "dmlbench", *args, "--output", str(tmp_path / "one")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    # --standalone: a local rendezvous on a free port (no fixed port to collide on).
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = subprocess.run(
        [*launcher, "-m", "dmlbench", *args, "--output", str(tmp_path / "two")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("result (full-ft") == 1  # only rank 0 reports
    single, double = epoch_records(tmp_path / "one"), epoch_records(tmp_path / "two")
    assert [r["train_images"] for r in double] == [24, 24]  # the global batch, not a share
    for a, b in zip(single, double, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * abs(a["loss"])
    # Evaluation gathered on rank 0: the same queries, the same neighbours.
    assert double[-1]["queries"] == single[-1]["queries"] == 24
    assert abs(double[-1]["map@r"] - single[-1]["map@r"]) < 1e-6
