"""A finished run read back: its config, summary and final embeddings (stored, or
recomputed from its newest checkpoint when the run kept none), and its images."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dmlbench.config import RunConfig, make_config
from dmlbench.data.image_list import load_rgb
from dmlbench.errors import UserError
from dmlbench.store.embeddings import EvalSet, has_eval_sets, load_eval_sets, save_eval_sets


@dataclass
class StoredRun:
    run_dir: Path
    config: RunConfig
    summary: dict
    sets: list[EvalSet]

    @property
    def name(self) -> str:
        return self.summary.get("method_label") or self.config.method

    def query_and_reference(self) -> tuple[EvalSet, EvalSet | None]:
        """Queries searched among themselves (one set), or in a gallery (two sets)."""
        if len(self.sets) == 1:
            return self.sets[0], None
        return self.sets[0], self.sets[1]


def finished_run(run_dir: Path, echo: Callable[[str], None] = print) -> StoredRun:
    """The run in ``run_dir``; one-line errors for a folder that is not a finished run."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: no config.yaml there; pass a run directory")
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{run_dir}: no readable summary.json; the run never started") from None
    status = summary.get("status")
    if status != "finished":
        raise UserError(
            f"{run_dir}: the run is {status}, not finished; continue it with "
            f"`dmlbench run --resume {run_dir}` first"
        )
    config = make_config(run_dir / "config.yaml", {})
    if has_eval_sets(run_dir):
        sets = load_eval_sets(run_dir)
    elif "evaluated" in summary:  # `dmlbench eval`: nothing to recompute from
        raise UserError(
            f"{run_dir}: a `dmlbench eval` run that stored no embeddings (scored with --labels, "
            "without images, or with --no-save-embeddings); nothing to show"
        )
    else:
        echo(f"{run_dir}: no stored embeddings; computing them from its checkpoint")
        sets = recompute_eval_sets(run_dir, config, summary, echo)
    _regenerate_if_gone(config, sets)
    return StoredRun(run_dir, config, summary, sets)


def _regenerate_if_gone(config: RunConfig, sets: list[EvalSet]) -> None:
    """Generated data (glyphs) lives in the cache and may have been cleared: reading the
    dataset's records renders it again, to the same paths."""
    if all(not s.paths or Path(s.paths[0]).is_file() for s in sets):
        return
    from dmlbench.data.spec import get_dataset

    dataset = get_dataset(config.dataset, config.data_root)
    if dataset.scan_key() is None:  # generated, not a user's or public dataset
        dataset.records()


def recompute_eval_sets(run_dir: Path, config: RunConfig, summary: dict, echo) -> list[EvalSet]:
    """Rebuild the run's model, load its newest checkpoint, embed the evaluation sets
    again, check the metric against the summary, and store the embeddings."""
    from dmlbench.run.data import evaluate_model
    from dmlbench.run.execute import _trainer_state, build, eval_sets
    from dmlbench.train.checkpoint import check_backbone, load_latest

    session = build(config, lambda *_a, **_k: None)
    payload = load_latest(run_dir, announce=echo, move_bad=False)  # show only reads
    if payload is not None:
        check_backbone(session.model, payload, run_dir)
        session.trainer.load_state_dict(_trainer_state(payload))
    elif config.epochs:
        raise UserError(
            f"{run_dir}: neither stored embeddings nor a checkpoint; run it again with "
            "--save-embeddings"
        )  # an untrained head (epochs 0) is rebuilt from the seed alone
    model = session.method.inference_model(session.model)
    metrics, embedded = evaluate_model(
        model, session.dataset, session.eval_sets, config, session.device, session.amp
    )
    stored = summary.get("metrics", {}).get("recall@1")
    if stored is not None and abs(metrics["recall@1"] - stored) > 1e-4:
        echo(
            f"warning: recomputed R@1 {metrics['recall@1']:.4f} differs from the summary's "
            f"{stored:.4f} (another device or library version?)"
        )
    sets = eval_sets(session, embedded)
    save_eval_sets(run_dir, sets)
    return sets


def thumbnail(path: str, size: int = 96) -> Image.Image:
    """The image scaled to fit ``size`` × ``size`` (grids of many cells stay small)."""
    if not Path(path).is_file():
        raise UserError(
            f"{path}: image of the run's evaluation set is gone; restore the dataset "
            "(for generated data: run the dataset once, e.g. `dmlbench run --epochs 0`)"
        )
    image = load_rgb(Path(path))
    image.thumbnail((size, size))
    return image
