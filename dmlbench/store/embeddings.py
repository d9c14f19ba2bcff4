"""A run's final embeddings, kept beside its summary for `dmlbench show` and `compare`.

Stored as float16 safetensors (half the bytes of float32; cosine similarities of
unit vectors change by < 1e-3, far below any rank decision that matters for a
picture) with the integer labels, plus ``eval_order.csv`` naming the image of
every row, so the file is usable outside dmlbench too.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmlbench.atomic import atomic_path, write_text_atomic

EMBEDDINGS_FILE = "embeddings.safetensors"
ORDER_FILE = "eval_order.csv"


@dataclass
class EvalSet:
    """One evaluation set of a run: its name (test, val, query, gallery), the unit
    embeddings in evaluation order, integer labels, and each row's image and class."""

    name: str
    embeddings: np.ndarray
    labels: np.ndarray
    paths: list[str]
    classes: list[str]


def save_eval_sets(run_dir: Path, sets: list[EvalSet]) -> Path:
    """Write ``embeddings.safetensors`` and ``eval_order.csv`` (each atomically)."""
    from safetensors.numpy import save_file

    tensors = {}
    for item in sets:
        tensors[item.name] = np.ascontiguousarray(item.embeddings, dtype=np.float16)
        tensors[f"{item.name}.labels"] = np.ascontiguousarray(item.labels, dtype=np.int64)
    path = run_dir / EMBEDDINGS_FILE
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"sets": ",".join(s.name for s in sets)})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "set", "path", "label"])
    index = 0
    for item in sets:
        for image, label in zip(item.paths, item.classes, strict=True):
            writer.writerow([index, item.name, image, label])
            index += 1
    write_text_atomic(run_dir / ORDER_FILE, text.getvalue())
    return path


def has_eval_sets(run_dir: Path) -> bool:
    return (run_dir / EMBEDDINGS_FILE).is_file() and (run_dir / ORDER_FILE).is_file()


def load_eval_sets(run_dir: Path) -> list[EvalSet]:
    """The sets :func:`save_eval_sets` wrote, embeddings as float32."""
    from safetensors import safe_open

    with safe_open(str(run_dir / EMBEDDINGS_FILE), framework="numpy") as f:
        names = (f.metadata() or {}).get("sets", "").split(",")
        arrays = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    rows: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in names}
    with open(run_dir / ORDER_FILE, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            paths, classes = rows[row["set"]]
            paths.append(row["path"])
            classes.append(row["label"])
    return [
        EvalSet(name, arrays[name].astype(np.float32), arrays[f"{name}.labels"], *rows[name])
        for name in names
    ]
