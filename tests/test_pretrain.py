"""``dmlbench pretrain``: a killed pretraining continues where it stopped, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from dmlbench.errors import UserError
from dmlbench.train.pretrain import pretrain, state_path
from dmlbench.train.pretrain_config import PretrainConfig

TINY = dict(classes=4, images_per_class=2, batch_size=4, epochs=3, bf16=False)
CLI_TINY = ["--classes", "4", "--images-per-class", "2", "--batch-size", "4", "--epochs", "3",
            "--no-bf16"]  # fmt: skip


def _pretrain_cli(output, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    command = [sys.executable, "-m", "dmlbench", "pretrain", *CLI_TINY, "--output", str(output)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_a_killed_pretraining_resumes_to_the_uninterrupted_result(tmp_path):
    whole = tmp_path / "whole.safetensors"
    record = pretrain(PretrainConfig(**TINY), whole, "test")
    assert record["epochs_done"] == 3 and not state_path(whole).exists()

    killed = tmp_path / "killed.safetensors"
    out = _pretrain_cli(killed, {"DMLBENCH_KILL_AT": "pretrain-epoch:2"})
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert state_path(killed).exists()  # two epochs done, the third not begun
    out = _pretrain_cli(killed)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stdout + out.stderr and "after epoch 2/3" in out.stdout + out.stderr
    assert not state_path(killed).exists()

    a, b = load_file(str(whole)), load_file(str(killed))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    import json

    resumed = json.loads(killed.with_suffix(".json").read_text())
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in record["history"]]


def test_a_state_from_other_settings_is_refused_in_one_line(tmp_path):
    output = tmp_path / "b.safetensors"
    out = _pretrain_cli(output, {"DMLBENCH_KILL_AT": "pretrain-epoch:1"})
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    refused = r"pretrain-state\.safetensors: .*settings lr.*delete the file"
    with pytest.raises(UserError, match=refused):
        pretrain(PretrainConfig(**{**TINY, "lr": 5e-4}), output, "test")


def test_stop_after_keeps_the_state_and_the_same_command_continues(tmp_path):
    """``--stop-after N`` is how the shipped backbone (the epoch-14 save of a 20-epoch
    schedule) is re-made; a later run without it finishes the schedule."""
    whole = pretrain(PretrainConfig(**TINY), tmp_path / "whole.safetensors", "test")
    output = tmp_path / "stopped.safetensors"
    first = pretrain(PretrainConfig(**TINY, stop_after=1), output, "test")
    assert first["epochs_done"] == 1 and state_path(output).exists()
    again = pretrain(PretrainConfig(**TINY, stop_after=1), output, "test")  # nothing to do
    assert again["epochs_done"] == 1
    last = pretrain(PretrainConfig(**TINY), output, "test")
    assert last["epochs_done"] == 3 and not state_path(output).exists()
    assert [h["loss"] for h in last["history"]] == [h["loss"] for h in whole["history"]]
    with pytest.raises(ValueError, match="stop_after must be in 1..epochs"):
        PretrainConfig(**TINY, stop_after=4)
