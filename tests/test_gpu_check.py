"""benchmarks/gpu_check.py's code paths on the CPU (the GPU figures need a GPU)."""

from __future__ import annotations

import pytest

from dmlbench.data.public.base import UNCHECKED_COUNTS_ENV
from tests.conftest import benchmark_script


def test_memory_rows_measure_beside_the_estimate_and_never_overwrite(tmp_path, capsys):
    from dmlbench.cost.memory import StepShape, estimate_step_memory
    from dmlbench.registry import get_method

    script = benchmark_script("gpu_check")
    output = tmp_path / "gpu" / "check.md"
    argv = [
        "--device",
        "cpu",
        "--steps",
        "2",
        "--backbone",
        "vit_glyph_patch8_48",
        "--batch",
        "8",
        "--rows",
        "Linear probe",
        "--skip-runs",
        "--output",
        str(output),
    ]
    assert script.main(argv) == 0
    assert script.main(argv) == 0  # a second check writes beside the first
    assert output.is_file() and (tmp_path / "gpu" / "check-1.md").is_file()
    (row,) = [line for line in output.read_text().splitlines() if line.startswith("| Linear")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    shape = StepShape(
        backbone="vit_glyph_patch8_48",
        batch=8,
        amp="fp16",
        optimizer="sgd",
        num_classes=100,
        images_per_class=2,
        proxy_init="reference",
    )
    estimate = estimate_step_memory(get_method("linear-probe")(), shape)
    assert cells[1] == "ok" and cells[2] == f"{estimate.peak_mb:,.0f}"
    assert float(cells[6]) > 0  # img/s of the timed steps
    assert "cuda" not in capsys.readouterr().err


def test_the_end_to_end_runs_go_through_on_the_cpu(tmp_path, monkeypatch):
    """The VPTSP-G run on the generated CUB folder and VPTSP-G under torchrun (gloo
    here, NCCL on a GPU): both rows finish, the first with its R@1."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    output = tmp_path / "check.md"
    argv = ["--device", "cpu", "--steps", "1", "--backbone", "vit_glyph_patch8_48",
            "--batch", "8", "--rows", "Linear probe", "--output", str(output)]  # fmt: skip
    assert benchmark_script("gpu_check").main(argv) == 0
    lines = output.read_text().splitlines()
    (single,) = [line for line in lines if line.startswith("| VPTSP-G end to end")]
    (ranks,) = [line for line in lines if line.startswith("| VPTSP-G under torchrun (2")]
    single_cells = [c.strip() for c in single.strip("|").split("|")]
    assert single_cells[1] == "ok" and 0 <= float(single_cells[3]) <= 1
    assert "| ok |" in ranks


def test_the_generated_folder_is_read_as_cub(tmp_path, monkeypatch):
    from dmlbench.data.spec import get_dataset

    script = benchmark_script("gpu_check")
    script.write_generated_cub(tmp_path, classes=200, per_class=2, size=16)
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    records = get_dataset("cub", str(tmp_path)).records()
    assert len(records) == 400
    assert {r.split for r in records} == {"train", "test"}
    assert len({r.label for r in records if r.split == "train"}) == 100


def test_no_cuda_is_one_line_and_exit_2(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert benchmark_script("gpu_check").main(["--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip().startswith("gpu_check: no CUDA device here")
