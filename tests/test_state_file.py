"""Checkpoints and pretraining state are data: nothing in a run directory runs code.

A crafted pickle (``__reduce__`` writing a marker file) is put where each
command looks for state; no command may create the marker. Unreadable
checkpoints are announced and moved aside, never deleted.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlbench.state_file import CorruptState, load_state, save_state
from dmlbench.train.checkpoint import list_checkpoints
from tests.conftest import tiny_run_cli_args
from tests.test_checkpoint import only_run_dir, run_cli
from tests.test_pretrain import CLI_TINY


class WritesAFile:
    """Unpickling this creates ``marker``: what a crafted checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def crafted_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"trainer": WritesAFile(marker)}))


def test_state_round_trips_every_kind_of_value_exactly(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "optimizer": optimizer.state_dict(),  # int keys, a tuple of betas, None values
        "half": torch.arange(4, dtype=torch.bfloat16),
        "records": [{"epoch": 1, "loss": float("nan"), "score": np.float64(0.25)}],
        "looks_like_a_tag": {"__tuple__": [1]},
        "empty": {},
    }
    save_state(tmp_path / "s", state)
    back = load_state(tmp_path / "s")
    assert back["python"] == state["python"]
    assert back["numpy"][0] == "MT19937" and back["numpy"][1].dtype == np.uint32
    assert np.array_equal(back["numpy"][1], state["numpy"][1])
    assert back["numpy"][2:] == state["numpy"][2:]
    assert torch.equal(back["torch"], state["torch"])
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sorted(back["optimizer"]["state"]) == [0, 1]
    assert torch.equal(
        back["optimizer"]["state"][1]["exp_avg"], state["optimizer"]["state"][1]["exp_avg"]
    )
    assert back["half"].dtype == torch.bfloat16 and back["half"].tolist() == [0, 1, 2, 3]
    assert back["records"][0]["score"] == 0.25 and np.isnan(back["records"][0]["loss"])
    assert back["looks_like_a_tag"] == {"__tuple__": [1]} and back["empty"] == {}
    optimizer.load_state_dict(back["optimizer"])  # what a resumed run does with it


def test_what_is_not_data_is_refused_when_written(tmp_path):
    with pytest.raises(TypeError, match=r"state\.bad: a WritesAFile"):
        save_state(tmp_path / "s", {"bad": WritesAFile(tmp_path / "m")})
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 9, pickle.dumps({"a": 1})])
def test_a_file_that_is_no_state_file_is_corrupt_not_code(tmp_path, content):
    (tmp_path / "s").write_bytes(content)
    with pytest.raises(CorruptState):
        load_state(tmp_path / "s")


def test_a_truncated_state_file_is_corrupt(tmp_path):
    save_state(tmp_path / "s", {"x": torch.ones(100)})
    blob = (tmp_path / "s").read_bytes()
    (tmp_path / "s").write_bytes(blob[: len(blob) - 7])
    with pytest.raises(CorruptState):
        load_state(tmp_path / "s")


@pytest.fixture(scope="module")
def finished_run(glyph_folder, tmp_path_factory) -> Path:
    """A finished 2-epoch run with a checkpoint per step (made once; tests take copies)."""
    args = tiny_run_cli_args(glyph_folder, tmp_path_factory.mktemp("made") / "runs")
    args += ["--checkpoint-every", "1", "--keep-checkpoints", "99"]
    args[args.index("--epochs") + 1] = "2"
    done = run_cli(args)
    assert done.returncode == 0, done.stderr[-2000:]
    return only_run_dir(Path(args[args.index("--output") + 1]))


@pytest.fixture
def checkpointed_run(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "runs" / finished_run.name))


def as_killed(run_dir: Path) -> Path:
    """The run's summary set back to "running", as if killed after its last checkpoint."""
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    return run_dir


def _as_old_format(run_dir: Path) -> list[Path]:
    """Rewrite every checkpoint as dmlbench ≤ 0.2 did (torch.save), the new files gone."""
    old = []
    for path in list_checkpoints(run_dir):
        torch.save(load_state(path), path.with_suffix(".pt"))
        path.unlink()
        old.append(path.with_suffix(".pt"))
    return old


def test_a_crafted_pickle_checkpoint_runs_no_code_on_resume_or_show(checkpointed_run, tmp_path):
    marker = tmp_path / "code-ran"
    for path in list_checkpoints(checkpointed_run):
        path.unlink()
    (checkpointed_run / "embeddings.safetensors").unlink(missing_ok=True)  # show needs state
    crafted_pickle(checkpointed_run / "checkpoints" / "step-000000009.pt", marker)
    for command in (["show"], ["run", "--resume"]):
        if command == ["run", "--resume"]:
            as_killed(checkpointed_run)
        before = {p: p.read_bytes() for p in checkpointed_run.rglob("*") if p.is_file()}
        refused = run_cli([*command, str(checkpointed_run)])
        assert refused.returncode == 2, refused.stderr[-2000:]
        (line,) = refused.stderr.strip().splitlines()
        assert "step-000000009.pt: a state file of dmlbench's old format, a pickle" in line
        assert "dmlbench convert-state" in line and "--trust" in line
        assert not marker.exists()
        assert {p: p.read_bytes() for p in checkpointed_run.rglob("*") if p.is_file()} == before


def test_a_crafted_pretraining_state_runs_no_code(tmp_path):
    from dmlbench.train.pretrain import state_path

    marker = tmp_path / "code-ran"
    output = tmp_path / "b.safetensors"
    crafted_pickle(state_path(output).with_suffix(".pt"), marker)
    done = run_cli(["pretrain", *CLI_TINY, "--output", str(output)])
    assert done.returncode == 2, done.stderr[-2000:]
    assert "b.pretrain-state.pt: a state file of dmlbench's old format" in done.stderr
    assert not marker.exists() and not output.exists()


def test_convert_state_needs_trust_and_then_the_run_resumes(checkpointed_run):
    old = _as_old_format(as_killed(checkpointed_run))
    refused = run_cli(["run", "--resume", str(checkpointed_run)])
    assert refused.returncode == 2 and "convert-state" in refused.stderr
    untrusted = run_cli(["convert-state", str(old[-1])])
    assert untrusted.returncode == 2 and "--trust" in untrusted.stderr
    assert not old[-1].with_suffix(".safetensors").exists()
    converted = run_cli(["convert-state", str(old[-1]), "--trust"])
    assert converted.returncode == 0, converted.stderr[-2000:]
    assert old[-1].exists()  # the user's file stays where it was
    resumed = run_cli(["run", "--resume", str(checkpointed_run)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at epoch 2" in resumed.stdout


def test_an_unreadable_newest_checkpoint_is_announced_and_moved_aside(checkpointed_run):
    as_killed(checkpointed_run)
    files = list_checkpoints(checkpointed_run)
    newest, before = files[-1], files[-2]
    torn = newest.read_bytes()[:100]
    newest.write_bytes(torn)
    resumed = run_cli(["run", "--resume", str(checkpointed_run)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = [line for line in resumed.stdout.splitlines() if "unreadable checkpoint" in line]
    assert (
        len(lines) == 1 and str(newest) in lines[0] and f"using the older {before.name}" in lines[0]
    )
    aside = newest.with_name(newest.name + ".corrupt")
    assert aside.read_bytes() == torn  # kept, never deleted


def test_with_every_checkpoint_unreadable_the_restart_from_step_0_is_announced(checkpointed_run):
    as_killed(checkpointed_run)
    files = list_checkpoints(checkpointed_run)
    for path in files:
        path.write_bytes(b"torn")
    resumed = run_cli(["run", "--resume", str(checkpointed_run)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    announced = [line for line in resumed.stdout.splitlines() if "unreadable checkpoint" in line]
    assert len(announced) == len(files)
    assert "the run starts again from step 0" in announced[-1]
    assert all(p.with_name(p.name + ".corrupt").read_bytes() == b"torn" for p in files)
    assert "resumed at epoch" not in resumed.stdout


def test_crafted_pth_weights_run_no_code_and_are_one_line(tmp_path):
    """A downloaded .pth is read by timm with torch.load(weights_only=True): the crafted
    object is never built, and the message names the file and the safe format."""
    from dmlbench.errors import UserError
    from dmlbench.nn.backbone import create_backbone

    marker = tmp_path / "code-ran"
    torch.save({"pos_embed": WritesAFile(marker)}, tmp_path / "weights.pth")
    with pytest.raises(UserError, match=r"weights\.pth: holds objects beyond tensors"):
        create_backbone("vit_glyph_patch8_48", str(tmp_path / "weights.pth"), None)
    assert not marker.exists()
    (tmp_path / "weights.yaml").write_text("lr: 1\n")
    with pytest.raises(UserError, match=r"weights\.yaml: not a weights file"):
        create_backbone("vit_glyph_patch8_48", str(tmp_path / "weights.yaml"), None)


def test_a_readable_checkpoint_that_is_no_run_state_is_one_line(checkpointed_run):
    """The right format, foreign content (made by hand or by another program)."""
    as_killed(checkpointed_run)
    newest = list_checkpoints(checkpointed_run)[-1]
    save_state(newest, {"backbone_hash": load_state(newest)["backbone_hash"], "model": {}})
    refused = run_cli(["run", "--resume", str(checkpointed_run)])
    assert refused.returncode == 2, refused.stderr[-2000:]
    (line,) = refused.stderr.strip().splitlines()
    assert "its newest checkpoint holds no state this run can take (KeyError" in line


def test_convert_state_with_trust_still_runs_no_code(tmp_path):
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "step-000000009.pt"
    crafted_pickle(crafted, marker)
    refused = run_cli(["convert-state", str(crafted), "--trust"])
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "step-000000009.pt: holds more than data, not converted" in refused.stderr
    assert refused.stderr.count("\n") <= 1
    assert not marker.exists() and not crafted.with_suffix(".safetensors").exists()
