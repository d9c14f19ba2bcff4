"""Checkpoints a killed run resumes from, bit for bit.

A checkpoint holds what changes during training and nothing else: the
model's state without its frozen parameters (a PEFT checkpoint is the size
of the method, not of the backbone), the optimizer, scheduler and AMP scaler,
every RNG state, the sampler's order and cursor, and the epoch records so
far. The frozen backbone is referenced by a hash of its tensors; resuming
onto other weights is refused.

Files are written to a temporary name and renamed (a kill mid-write leaves
the previous checkpoint intact), and only the newest ``keep`` are kept.

A checkpoint is data, never code (:mod:`dmlbench.state_file`: tensors in
safetensors, the rest as JSON), since run directories are shared and read by
others. Checkpoints of the old pickle format are refused with the command
that converts one the user trusts. A checkpoint that cannot be read is
announced and moved aside (never deleted), and the one before it is used.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dmlbench.atomic import atomic_open
from dmlbench.errors import UserError
from dmlbench.state_file import CorruptState, load_state, state_bytes

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{9})\.safetensors$")
_PICKLED_NAME = re.compile(r"^step-(\d{9})\.pt$")  # dmlbench ≤ 0.2: torch.save pickles
CORRUPT_SUFFIX = ".corrupt"
CONVERT_COMMAND = "dmlbench convert-state"


def frozen_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def backbone_hash(model: nn.Module) -> str:
    """SHA-256 over the names and bytes of the parameters that do not train."""
    digest = hashlib.sha256()
    params = dict(model.named_parameters())
    for name in sorted(frozen_names(model)):
        tensor = params[name].detach().to("cpu", copy=False).contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def trained_state(model: nn.Module) -> dict[str, Any]:
    """``model.state_dict()`` minus frozen parameters: tunable tensors, buffers, extra state."""
    frozen = frozen_names(model)
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def _by_step(run_dir: Path, pattern: re.Pattern) -> list[Path]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if pattern.match(p.name)]
    return sorted(found, key=lambda p: int(pattern.match(p.name).group(1)))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary files of a killed write, files
    moved aside and old-format ones are not listed)."""
    return _by_step(run_dir, _NAME)


def save_checkpoint(run_dir: Path, global_step: int, payload: dict[str, Any], keep: int) -> Path:
    path = checkpoint_dir(run_dir) / f"step-{global_step:09d}.safetensors"
    with atomic_open(path, "wb") as f:
        f.write(state_bytes(payload))
        fault_point("checkpoint-write")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)  # only checkpoints this format's writer made
    return path


def refuse_pickled(path: Path) -> None:
    """An old-format (pickle) state file is never read: one line naming the command
    that converts it, for a file the user trusts."""
    raise UserError(
        f"{path}: a state file of dmlbench's old format, a pickle, which can run code when "
        f"read; if you trust where it came from, convert it with `{CONVERT_COMMAND} {path} "
        "--trust` and run the command again"
    )


def _step(path: Path) -> int:
    return int(re.search(r"step-(\d{9})", path.name).group(1))


def move_aside(path: Path) -> Path:
    """Rename an unreadable file out of the readers' way (kept for inspection)."""
    aside = path.with_name(path.name + CORRUPT_SUFFIX)
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}")
    path.replace(aside)
    return aside


def load_latest(run_dir: Path, announce=print, move_bad: bool = True) -> dict[str, Any] | None:
    """The newest readable checkpoint. An unreadable one is announced (one line naming
    it), moved aside (unless ``move_bad`` is off: a reader that only looks, such as
    ``dmlbench show``) and the one before it used; with none left the run starts over,
    and says so. A newest checkpoint of the old pickle format is refused."""
    found = list_checkpoints(run_dir)
    pickled = _by_step(run_dir, _PICKLED_NAME)
    if pickled and (not found or _step(pickled[-1]) > _step(found[-1])):
        refuse_pickled(pickled[-1])
    for index in range(len(found) - 1, -1, -1):
        path = found[index]
        try:
            return load_state(path)
        except CorruptState as e:
            moved = f"moved aside as {move_aside(path).name}; " if move_bad else ""
            then = (f"using the older {found[index - 1].name}" if index else
                    "no readable checkpoint is left: the run starts again from step 0")  # fmt: skip
            announce(f"{path}: unreadable checkpoint ({e}); {moved}{then}")
    return None


def check_backbone(model: nn.Module, checkpoint: dict[str, Any], run_dir: Path) -> None:
    found = backbone_hash(model)
    if checkpoint["backbone_hash"] != found:
        raise UserError(
            f"{run_dir}: its checkpoint was trained on a backbone with hash "
            f"{checkpoint['backbone_hash']}, but the weights loaded now hash to {found}; "
            "resume with the weights the run started from"
        )


def fault_point(where: str) -> None:
    """Test-only fault injection: ``DMLBENCH_KILL_AT=checkpoint-write:N`` kills the
    process (SIGKILL, no cleanup) the N-th time it reaches ``where``; the
    determinism tests use it to interrupt a run mid-write."""
    setting = os.environ.get("DMLBENCH_KILL_AT", "")
    if not setting.startswith(where + ":"):
        return
    count = _FAULT_COUNTS[where] = _FAULT_COUNTS.get(where, 0) + 1
    if count == int(setting.split(":", 1)[1]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_COUNTS: dict[str, int] = {}
