"""Crash safety: a run killed with SIGKILL anywhere resumes to the same result, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmlbench.state_file import load_state, save_state
from dmlbench.train.checkpoint import list_checkpoints

EPOCHS = 3  # 3 steps per epoch on the tiny folder: 9 steps


def run_cli(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "dmlbench", *args], capture_output=True, text=True, env=env
    )


def run_args(folder: Path, output: Path, method: str) -> list[str]:
    return [
        "run",
        "--dataset", f"folder:{folder}",
        # the small glyph ViT (6 blocks, 48²): the folder recipe's ViT-S at 224² made
        # these subprocess runs ten times slower and tested nothing more
        "--backbone", "vit_glyph_patch8_48",
        "--weights", "none",
        "--method", method,
        "--epochs", str(EPOCHS),
        "--batch-size", "8",
        "--images-per-class", "2",
        "--checkpoint-every", "1",
        "--keep-checkpoints", "3",
        "--output", str(output),
    ]  # fmt: skip


def only_run_dir(output: Path) -> Path:
    (run_dir,) = [p for p in output.iterdir() if p.is_dir()]
    return run_dir


def final_result(run_dir: Path) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Epoch records without timings, and the trained tensors of the last checkpoint."""
    timing = ("seconds", "_per_s")
    records = [
        {k: v for k, v in json.loads(line).items() if not k.endswith(timing)}
        for line in (run_dir / "epochs.jsonl").read_text().splitlines()
    ]
    last = load_state(list_checkpoints(run_dir)[-1])
    return records, last["trainer"]["model"]


def assert_same_final_result(run_dir: Path, reference: tuple[list[dict], dict]) -> None:
    """The run ends with the reference's epoch records and trained tensors, bit for bit."""
    records, state = final_result(run_dir)
    ref_records, ref_state = reference
    assert records == ref_records  # losses and every metric, exactly
    assert state.keys() == ref_state.keys()
    for name, tensor in ref_state.items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(state[name], tensor), name


@pytest.fixture(scope="module")
def reference(glyph_folder, tmp_path_factory):
    """Uninterrupted runs, one per method under test."""
    cache = {}

    def get(method: str):
        if method not in cache:
            out = tmp_path_factory.mktemp(f"reference-{method}")
            done = run_cli(run_args(glyph_folder, out, method))
            assert done.returncode == 0, done.stderr[-2000:]
            cache[method] = final_result(only_run_dir(out))
        return cache[method]

    return get


@pytest.mark.parametrize(
    "method, kill_at",
    [
        ("linear-probe", "step:2"),  # mid-epoch, between checkpoints of the first epoch
        ("linear-probe", "step:3"),  # the last step of an epoch, before its evaluation
        ("linear-probe", "checkpoint-write:5"),  # inside the write of a checkpoint
        ("vptsp-g", "step:5"),  # host prompt bank, memory P, GRU dropout
        ("vpt", "checkpoint-write:4"),
    ],
)
def test_killed_and_resumed_run_equals_an_uninterrupted_one(
    glyph_folder, tmp_path, reference, method, kill_at
):
    killed = run_cli(run_args(glyph_folder, tmp_path, method), {"DMLBENCH_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_dir = only_run_dir(tmp_path)
    assert not (run_dir / "checkpoints").exists() or all(
        not p.name.endswith(".tmp") or p.name.startswith(".")
        for p in (run_dir / "checkpoints").iterdir()
    )
    resumed = run_cli(["run", "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at epoch" in resumed.stdout
    assert_same_final_result(run_dir, reference(method))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed"] == 1


def test_checkpoints_hold_only_what_trains_and_keep_the_newest(glyph_folder, tmp_path):
    args = run_args(glyph_folder, tmp_path, "vpt")
    args[args.index("--epochs") + 1] = "1"
    done = run_cli(args)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = only_run_dir(tmp_path)
    files = list_checkpoints(run_dir)
    assert [p.name for p in files] == [f"step-{s:09d}.safetensors" for s in (1, 2, 3)]
    state = load_state(files[-1])["trainer"]["model"]
    # VPT on the glyph ViT (6 blocks): the deep prompts (a tensor per block), the head
    # and the proxies; no backbone tensor.
    assert sorted(state) == sorted([
        *[f"backbone.vpt_prompts.tokens.{i}" for i in range(6)],
        "head.norm.bias", "head.norm.weight", "head.proj.bias", "head.proj.weight",
        "proxies",
    ])  # fmt: skip
    assert not any(k.startswith("backbone.blocks") for k in state)


def test_resume_refuses_other_backbone_weights_and_keeps_the_run(glyph_folder, tmp_path):
    killed = run_cli(
        run_args(glyph_folder, tmp_path, "linear-probe"), {"DMLBENCH_KILL_AT": "step:4"}
    )
    assert killed.returncode == -signal.SIGKILL
    run_dir = only_run_dir(tmp_path)
    newest = list_checkpoints(run_dir)[-1]
    payload = load_state(newest)
    payload["backbone_hash"] = "0" * 16
    save_state(newest, payload)
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    refused = run_cli(["run", "--resume", str(run_dir)])
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "hash 0000000000000000" in line and "weights the run started from" in line
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_resume_of_a_finished_run_changes_nothing(glyph_folder, tmp_path, tiny_run_args):
    done = run_cli(tiny_run_args)
    assert done.returncode == 0
    run_dir = only_run_dir(tmp_path / "runs")
    before = (run_dir / "summary.json").read_bytes()
    again = run_cli(["run", "--resume", str(run_dir)])
    assert again.returncode == 0 and "already finished" in again.stdout
    assert (run_dir / "summary.json").read_bytes() == before
    flags = run_cli(["run", "--resume", str(run_dir), "--epochs", "5"])
    assert flags.returncode == 2 and "drop --epochs" in flags.stderr
