"""The run store: one directory per run, every file written atomically.

Layout of ``<root>/<run-id>/``: ``config.yaml`` (resolved), ``epochs.jsonl``
(one JSON object per epoch), ``summary.json`` (final metrics, parameters,
memory, time, status) and ``environment.json`` (versions, device, git commit).
A run directory is created exclusively and never reused, so no earlier
result is ever overwritten.
"""

from __future__ import annotations

import json
import platform
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from dmlbench.atomic import write_json_atomic, write_text_atomic

DEFAULT_ROOT = Path("results/runs")
NO_MODEL = "—"  # the backbone of a run that scored embeddings computed elsewhere
LEADING_COLUMNS = (
    "method",
    "dataset",
    "seed",
    "status",
    "metrics.recall@1",
    "metrics.map@r",
    "params.tunable",
    "memory.peak_mb",
    "time.wall_seconds",
)


def new_run_dir(root: Path, label: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    run_dir = Path(root) / f"{stamp}-{safe}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


class RunWriter:
    """Writes a run's files; ``enabled=False`` (ranks other than 0) writes nothing."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled
        self._epochs: list[str] = []

    def write_config(self, config_yaml: str) -> None:
        if self.enabled:
            write_text_atomic(self.run_dir / "config.yaml", config_yaml)

    def restore_epochs(self, records: list[dict[str, Any]]) -> None:
        """Start from the records a checkpoint holds (a resumed run drops the
        records written after its checkpoint: they are trained again)."""
        self._epochs = [json.dumps(r, sort_keys=True, default=float) for r in records]
        if self.enabled and (records or (self.run_dir / "epochs.jsonl").exists()):
            text = "\n".join(self._epochs) + "\n" if self._epochs else ""
            write_text_atomic(self.run_dir / "epochs.jsonl", text)

    def append_epoch(self, record: dict[str, Any]) -> None:
        # Rewrite the whole (small) file atomically: a crash never leaves a torn line.
        self._epochs.append(json.dumps(record, sort_keys=True, default=float))
        if self.enabled:
            write_text_atomic(self.run_dir / "epochs.jsonl", "\n".join(self._epochs) + "\n")

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            write_json_atomic(self.run_dir / "summary.json", summary)

    def write_environment(self, device: str) -> None:
        if self.enabled:
            write_json_atomic(self.run_dir / "environment.json", environment(device))


def environment(device: str) -> dict[str, Any]:
    import faiss
    import pytorch_metric_learning
    import timm
    import torch

    import dmlbench

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "faiss": faiss.__version__,
        "dmlbench": dmlbench.__version__,
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def unreadable_runs(path: str | Path = DEFAULT_ROOT) -> list[tuple[Path, str]]:
    """Run directories under ``path`` that :func:`load` leaves out, with the reason:
    a killed process can leave a directory without (or with a torn) summary or
    config. Nothing is modified; the caller only reports them."""
    import yaml

    found = []
    path = Path(path)
    candidates = {p.parent for p in path.rglob("config.yaml")} | {
        p.parent for p in path.rglob("summary.json")
    }
    for run_dir in sorted(candidates):
        for name in ("config.yaml", "summary.json"):
            file = run_dir / name
            if not file.exists():
                found.append((run_dir, f"no {name}"))
                break
            try:
                text = file.read_text()
                data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
                if not isinstance(data, dict):
                    raise ValueError("not a mapping")
            except (OSError, ValueError, yaml.YAMLError) as e:
                found.append((run_dir, f"{name} unreadable ({type(e).__name__})"))
                break
    return found


def load(path: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """All runs under ``path``, at any depth (or one run directory), one flat row per run.

    Summary keys come first (``metrics.recall@1``, ``params.tunable`` …), then
    ``config.*`` keys; ``run_dir`` says where each row came from. Unreadable
    run directories are skipped, never modified.
    """
    import yaml

    path = Path(path)
    run_dirs = (
        [path]
        if (path / "summary.json").exists()
        else sorted(p.parent for p in path.rglob("summary.json"))
    )
    rows = []
    for run_dir in run_dirs:
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
            config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError):
            continue  # listed by unreadable_runs()
        if not isinstance(summary, dict) or not isinstance(config, dict):
            continue
        rows.append({"run_dir": str(run_dir), **summary, "config": config})
    frame = pd.json_normalize(rows)  # nested keys become "metrics.recall@1", "config.lr" …
    if frame.empty:
        return frame
    # The columns a reader looks for first, then everything else, run_dir last.
    first = [c for c in LEADING_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in first and c != "run_dir"]
    return frame[first + rest + ["run_dir"]]
