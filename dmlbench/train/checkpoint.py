"""Checkpoints a killed run resumes from, bit for bit.

A checkpoint holds what changes during training and nothing else: the
model's state without its frozen parameters (a PEFT checkpoint is the size
of the method, not of the backbone), the optimizer, scheduler and AMP scaler,
every RNG state, the sampler's order and cursor, and the epoch records so
far. The frozen backbone is referenced by a hash of its tensors; resuming
onto other weights is refused.

Files are written to a temporary name and renamed (a kill mid-write leaves
the previous checkpoint intact), and only the newest ``keep`` are kept.
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

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{9})\.pt$")


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


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary files of a killed write are ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def save_checkpoint(run_dir: Path, global_step: int, payload: dict[str, Any], keep: int) -> Path:
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{global_step:09d}.pt"
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
        fault_point("checkpoint-write")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_latest(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint (a corrupt newest one falls back to the one before)."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - a torn or foreign file: try the previous one
            continue
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
