"""``dmlbench eval``: the same metrics for a backbone with no training, or for embeddings
computed anywhere else.

* A backbone's pooled features (the final norm's CLS token, L2-normalised; no
  head, no proxies): the zero-shot row every comparison needs.
* Precomputed embeddings (``.npy``, ``.safetensors``, ``.pt``), one row per
  image of the dataset's evaluation sets in the order ``--dump-order``
  writes (queries first, then the gallery), L2-normalised here: DINOv2, CLIP
  or a user's own model, scored exactly as dmlbench's runs.

Each evaluation is stored as a run directory (config, summary, one epoch
record) like ``dmlbench run``'s, so it appears in ``dmlbench report``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from dmlbench.config import RunConfig
from dmlbench.data.spec import DatasetSpec, get_dataset
from dmlbench.errors import UserError
from dmlbench.nn.backbone import create_backbone
from dmlbench.run.data import eval_loaders, evaluation_order, score, split_records, usable_records
from dmlbench.store.embeddings import EvalSet, save_eval_sets
from dmlbench.store.results import NO_MODEL, RunWriter, new_run_dir
from dmlbench.textfile import read_text
from dmlbench.train.meter import Stopwatch
from dmlbench.train.trainer import compute_embeddings

EMBEDDING_KEYS = ("embeddings", "embedding", "features")


def _view(dataset: DatasetSpec, config: RunConfig):
    view = split_records(dataset, config)
    records, skipped = usable_records(dataset, config, view.records)
    return view, records, skipped


def dump_order(dataset_name: str, split: str, path: Path, data_root: str | None = None) -> int:
    """Write the evaluation order (index, set, path, label) as CSV; returns the row count."""
    dataset = get_dataset(dataset_name, data_root)
    config = RunConfig(dataset=dataset_name, data_root=data_root, split=split)
    view, records, _ = _view(dataset, config)
    rows = 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "set", "path", "label"])
        for split_name, items in zip(view.eval_splits, evaluation_order(view, records),
                                     strict=True):  # fmt: skip
            for record in items:
                writer.writerow([rows, split_name, str(record.path), record.label])
                rows += 1
    return rows


def load_embeddings(path: Path) -> np.ndarray:
    """An N × E float array from .npy, .safetensors or .pt (a tensor, or a dict holding
    one under 'embeddings'); anything else is one line naming the file."""
    if not path.is_file():
        raise UserError(f"--embeddings {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            array = _pick(tensors, path)
        elif suffix in (".pt", ".pth"):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            array = _pick(loaded, path) if isinstance(loaded, dict) else loaded
            array = array.float().numpy() if torch.is_tensor(array) else np.asarray(array)
        else:
            raise UserError(f"--embeddings {path}: use a .npy, .safetensors or .pt file")
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"--embeddings {path}: cannot read it ({type(e).__name__})") from None
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise UserError(
            f"--embeddings {path}: expected a 2-D array (images × dimensions), got shape "
            f"{tuple(array.shape)}"
        )
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise UserError(f"--embeddings {path}: row {bad} holds NaN or infinite values")
    return array


def _pick(tensors: dict, path: Path):
    for key in EMBEDDING_KEYS:
        if key in tensors:
            return tensors[key]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise UserError(
        f"--embeddings {path}: {len(tensors)} tensors and none named "
        f"{' or '.join(EMBEDDING_KEYS)}; store one, or name it 'embeddings'"
    )


def load_labels(path: Path) -> np.ndarray:
    """One label per row: .npy, or a text/CSV file (first column; a header is skipped)."""
    if not path.is_file():
        raise UserError(f"--labels {path}: no such file")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False).reshape(-1)
    lines = [line.split(",")[0].strip() for line in read_text(path).splitlines() if line.strip()]
    if lines and lines[0].lower() in ("label", "labels", "class"):
        lines = lines[1:]
    return np.array(lines)


def evaluate_with_labels(path: Path, labels_path: Path, config: RunConfig, label: str | None):
    """Embeddings scored against labels given beside them (no dataset): one set, each
    image searched among the others."""
    array = _normalise(load_embeddings(path))
    labels = load_labels(labels_path)
    if len(labels) != len(array):
        raise UserError(
            f"--labels {labels_path}: {len(labels)} labels for {len(array)} embedding rows; "
            "give one label per row"
        )
    dataset = _LabelledSet(f"labels:{labels_path.name}")
    watch = Stopwatch()
    metrics = score(dataset, [(array, labels)], config.seed)
    extra = {"embeddings": str(path), "labels": str(labels_path), "dimensions": array.shape[1]}
    return _store(config, dataset, "embeddings", label or path.stem, metrics, watch, extra)


class _LabelledSet(DatasetSpec):
    """What scoring needs of a dataset, for embeddings that come with their labels."""

    def __init__(self, name: str):
        self.name = name


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise UserError(f"embedding row {int(np.flatnonzero(norms == 0)[0])} is all zeros")
    return x / norms


def evaluate_embeddings(path: Path, config: RunConfig, label: str | None = None):
    """Score a file of embeddings on the dataset's evaluation sets; a run directory."""
    dataset = get_dataset(config.dataset, config.data_root)
    view, records, _ = _view(dataset, config)
    sets = evaluation_order(view, records)
    array = load_embeddings(path)
    expected = sum(len(s) for s in sets)
    if len(array) != expected:
        raise UserError(
            f"--embeddings {path}: {len(array)} rows, but {dataset.name}'s {config.split} "
            f"evaluation has {expected} images; write them in the order of "
            f"`dmlbench eval --dataset {config.dataset} --split {config.split} --dump-order FILE`"
        )
    array = _normalise(array)
    embedded, start = [], 0
    for items in sets:
        labels = np.array([r.label for r in items])
        embedded.append((array[start : start + len(items)], labels))
        start += len(items)
    watch = Stopwatch()
    metrics = score(dataset, embedded, config.seed)
    extra = {"embeddings": str(path), "dimensions": int(array.shape[1])}
    return _store(config, dataset, "embeddings", label or path.stem, metrics, watch, extra,
                  _eval_sets(view, sets, [e[0] for e in embedded]))  # fmt: skip


def evaluate_backbone(config: RunConfig, label: str | None = None):
    """Score a backbone's pooled features, untrained; a run directory."""
    from dmlbench.run.execute import pick_device

    dataset = get_dataset(config.dataset, config.data_root)
    view, records, _ = _view(dataset, config)
    backbone_name = config.backbone or dataset.recipe.backbone
    weights = config.weights or "pretrained"
    backbone = create_backbone(backbone_name, None if weights == "none" else weights)
    device = pick_device(config.device)
    backbone.to(device).eval()
    model = _Normalised(backbone)
    watch = Stopwatch()
    loaders = eval_loaders(dataset, view, config, backbone, device, records)
    embedded = [compute_embeddings(model, loader, device) for loader in loaders]
    metrics = score(dataset, embedded, config.seed)
    params = sum(p.numel() for p in backbone.parameters())
    extra = {"backbone": backbone_name, "weights": weights, "parameters": params}
    config = RunConfig(**{**config.__dict__, "backbone": backbone_name, "weights": weights})
    sets = _eval_sets(view, evaluation_order(view, records), [e[0] for e in embedded])
    return _store(config, dataset, "zero-shot", label or f"{backbone_name} (zero-shot)",
                  metrics, watch, extra, sets)  # fmt: skip


def _eval_sets(view, order: list[list], arrays: list[np.ndarray]) -> list[EvalSet]:
    """What ``dmlbench show`` reads, as a training run stores it."""
    classes = sorted({r.label for items in order for r in items})
    index = {c: i for i, c in enumerate(classes)}
    return [
        EvalSet(name, array, np.array([index[r.label] for r in items], dtype=np.int64),
                [str(r.path) for r in items], [r.label for r in items])
        for name, items, array in zip(view.eval_splits, order, arrays, strict=True)
    ]  # fmt: skip


class _Normalised(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.backbone(images), dim=-1)


def _store(config: RunConfig, dataset: DatasetSpec, kind: str, label: str, metrics: dict,
           watch: Stopwatch, extra: dict, sets: list[EvalSet] | None = None):  # fmt: skip
    run_dir = new_run_dir(Path(config.output), f"{kind}-{dataset.name}-{config.split}")
    writer = RunWriter(run_dir)
    if sets is not None and config.save_embeddings:
        save_eval_sets(run_dir, sets)
    record = {**config.__dict__, "method": kind, "label": label, "epochs": 0}
    writer.write_config(yaml.safe_dump(record, sort_keys=False))
    writer.write_environment("cpu")
    writer.append_epoch({"epoch": 0, **metrics})
    summary = {
        "status": "finished",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "method": kind,
        "method_label": label,
        "dataset": dataset.name,
        "backbone": config.backbone or extra.get("backbone", NO_MODEL),
        "seed": config.seed,
        "split": config.split,
        "metrics": metrics,
        "params": {"tunable": 0, "total": extra.get("parameters", 0),
                   "backbone": extra.get("parameters", 0), "tunable_pct_of_backbone": 0.0},
        "time": {"wall_seconds": watch.elapsed(), "epochs": 0},
        "evaluated": extra,
    }  # fmt: skip
    writer.write_summary(summary)
    return run_dir, summary
