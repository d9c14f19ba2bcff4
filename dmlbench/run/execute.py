"""One benchmark run: config → data → model → method → training → evaluation → run directory.

Data flows one way: the dataset spec gives records, the sampler gives
class-balanced batches, the method prepares the model, the trainer fits it,
the evaluator scores unseen classes, and the run store keeps everything.
:func:`execute` reads top to bottom, one phase per call.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dmlbench.config import RunConfig, resolve, to_yaml
from dmlbench.data.image_cache import cached_records
from dmlbench.data.sampling import ResumableMPerClassSampler
from dmlbench.data.spec import DatasetSpec, get_dataset
from dmlbench.errors import UserError
from dmlbench.method import Method
from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.nn.model import EmbeddingModel, build_model
from dmlbench.registry import get_method
from dmlbench.run.costs import estimate_for_run, inference_summary, memory_summary
from dmlbench.run.data import (
    build_loaders,
    evaluate_model,
    evaluation_order,
    split_records,
    usable_records,
)
from dmlbench.run.lock import RUN_LOCK, Lock, holder, try_lock
from dmlbench.run.record import Progress, best_over_epochs, epoch_line
from dmlbench.store.embeddings import EvalSet, save_eval_sets
from dmlbench.store.loggers import Loggers, check_installed, make_loggers
from dmlbench.store.plots import run_curves
from dmlbench.store.results import RunWriter, new_run_dir
from dmlbench.train import distributed
from dmlbench.train.checkpoint import (
    backbone_hash,
    check_backbone,
    fault_point,
    load_latest,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from dmlbench.train.distributed import DistContext
from dmlbench.train.meter import PeakMemory, Stopwatch, count_parameters
from dmlbench.train.optim import build_optimizer, build_scheduler
from dmlbench.train.seeding import seed_everything
from dmlbench.train.trainer import EpochProgress, Trainer, autocast_dtype

CHECKPOINT_FORMAT = 2


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    main_process: bool = True  # False on ranks other than 0 of a torchrun run


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def prepare(config: RunConfig, require_data: bool = True) -> tuple[RunConfig, DatasetSpec, Method]:
    """Validate everything that can be validated before any heavy work."""
    dataset = get_dataset(config.dataset, config.data_root)
    get_method(config.method).from_values(config.method_options)  # the user's options first
    resolved = resolve(config, dataset)
    method = get_method(config.method).from_values(resolved.method_options)
    if require_data and not dataset.is_present():
        raise UserError(dataset.missing_message())
    return resolved, dataset, method


def check_output_folder(output: str) -> None:
    """The folder run directories go into can be made and written (its nearest existing
    ancestor is a writable folder); else one line, before anything is prepared."""
    import os

    folder = Path(output).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a folder" if not existing.is_dir() else "is not writable"
        raise UserError(f"output {output}: {existing} {what}; give another --output")


def create_run_dir(config: RunConfig) -> Path:
    """A new run directory under ``config.output`` holding the resolved config.

    ``dmlbench sweep`` creates it before starting the run's process (which then
    continues it with ``--resume``), so the run's log file can live inside it.
    """
    dataset = config.dataset.replace(":", "_").replace("/", "_")
    try:
        run_dir = new_run_dir(Path(config.output), f"{config.method}-{dataset}-s{config.seed}")
    except OSError as e:
        raise UserError(
            f"output {config.output}: cannot create a run directory there ({e.strerror or e}); "
            "give a writable folder with a shorter path (--output)"
        ) from None
    RunWriter(run_dir).write_config(to_yaml(config))
    return run_dir


@dataclass
class Session:
    """Everything one run holds while it trains."""

    config: RunConfig
    dataset: DatasetSpec
    method: Method
    device: torch.device
    ctx: DistContext
    echo: Callable[..., None]
    generator: torch.Generator
    model: EmbeddingModel
    trainer: Trainer
    sampler: ResumableMPerClassSampler
    train_loader: Any
    eval_sets: list
    eval_records: list  # each evaluation set's records, in evaluation order
    eval_names: list[str]
    skipped_images: int
    writer: RunWriter | None = None
    frozen_hash: str = ""
    progress: Progress = field(default_factory=Progress)
    resumed_now: bool = False
    summary: dict = field(default_factory=dict)
    wall: Stopwatch = field(default_factory=Stopwatch)
    on_epoch: Callable[[dict], None] | None = None
    loggers: Loggers = field(default_factory=lambda: Loggers([]))
    owner: Lock | None = None  # the run directory's lock, held while this process trains it

    @property
    def amp(self) -> torch.dtype | None:
        return self.trainer.amp_dtype


def execute(
    config: RunConfig,
    echo=print,
    resume: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> RunResult:
    """Run ``config``; with ``resume`` (a run directory), continue that run from
    its newest checkpoint (or from the start if it never wrote one). ``on_epoch``
    sees each epoch's record (a tuner's pruner may stop the run by raising)."""
    session = build(config, echo)
    session.on_epoch = on_epoch
    open_run_dir(session, resume)
    try:
        restore(session, resume)
        start(session)
        with record_failure(session), PeakMemory(session.device) as memory:
            train_epochs(session)
        return finish(session, memory.result())
    finally:
        if session.owner is not None:
            session.owner.release()


def build(config: RunConfig, echo) -> Session:
    """Data, model, method and trainer, from the config (nothing written yet)."""
    config, dataset, method = prepare(config)
    check_installed(config.log)
    check_output_folder(config.output)  # before minutes of data and model preparation
    device = pick_device(config.device)
    ctx = distributed.from_environment(device.type)
    if ctx.enabled:
        if (problem := method.processes_problem()) is not None:
            raise UserError(
                f"method {config.method} cannot train on several processes (torchrun): "
                f"{problem}; run it in one process"
            )
        if device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
        if not ctx.is_main:
            echo = _silent
    generator = seed_everything(config.seed)
    view = split_records(dataset, config)
    records, skipped = usable_records(dataset, config, view.records)
    if config.image_cache and dataset.scan_key() is not None:  # not for generated data
        records = cached_records(records, config.image_cache)
    classes = len({r.label for r in records if r.split == view.train_split})
    weights = None if config.weights == "none" else config.weights  # "none": random init
    model = build_model(config.backbone, weights, config.embedding_dim, classes, config.proxy_init)
    try:
        method.setup(model)
    except ValueError as e:
        raise UserError(f"method {config.method}: {e}") from None
    train_loader, eval_sets, steps_per_epoch = build_loaders(
        dataset, view, config, model, device, generator, records, ctx
    )
    model.to(device)
    optimizer = build_optimizer(config, method.param_groups(model, config.lr, config.proxy_lr))
    trainer = Trainer(
        model,
        method,
        ProxyAnchorLoss(config.loss_alpha, config.loss_margin, config.loss_positive_divisor),
        optimizer,
        build_scheduler(config, optimizer, steps_per_epoch),
        device,
        autocast_dtype(config.amp, device),
        config.grad_clip or None,  # 0: no clipping
        ctx,
    )
    return Session(config, dataset, method, device, ctx, echo, generator, model, trainer,
                   train_loader.sampler, train_loader, eval_sets,
                   evaluation_order(view, records), list(view.eval_splits), skipped)  # fmt: skip


def open_run_dir(s: Session, resume: Path | None) -> None:
    """A new run directory (rank 0 makes it, the others learn its name), or the one resumed;
    rank 0 holds its lock, before writing anything in it, until the run ends (a second
    process training it is refused)."""
    device_text = str(s.device) + (f" ×{s.ctx.world} processes" if s.ctx.enabled else "")
    if resume is not None:
        s.writer = RunWriter(Path(resume), enabled=s.ctx.is_main)
        _own(s)
        if not (s.writer.run_dir / "environment.json").exists():  # made by `dmlbench sweep`
            s.writer.write_environment(device_text)
    elif s.ctx.is_main:
        s.writer = RunWriter(create_run_dir(s.config))
        _own(s)
        s.writer.write_environment(device_text)
        distributed.broadcast(str(s.writer.run_dir), s.ctx)
    else:
        s.writer = RunWriter(Path(distributed.broadcast(None, s.ctx)), enabled=False)


def _own(s: Session) -> None:
    if not s.ctx.is_main:
        return
    s.owner = try_lock(s.writer.run_dir / RUN_LOCK)
    if s.owner is None:
        raise UserError(
            f"{s.writer.run_dir}: {holder(s.writer.run_dir / RUN_LOCK)} is training this run "
            "now; wait for it to end (or stop it), then resume"
        )


def restore(s: Session, resume: Path | None) -> None:
    """Put back everything the newest checkpoint of a resumed run holds."""
    s.frozen_hash = backbone_hash(s.model)
    payload = None
    if resume is not None:  # one process (rank 0) moves a bad checkpoint aside
        payload = load_latest(s.writer.run_dir, announce=s.echo, move_bad=s.ctx.is_main)
    if payload is not None:
        try:
            _put_back(s, payload)
        except (KeyError, TypeError, AttributeError, RuntimeError) as e:
            # a readable file of the right format whose content is no run state of
            # this run (made by hand, or by another program): data, but not ours
            raise UserError(
                f"{s.writer.run_dir}: its newest checkpoint holds no state this run can take "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); move it "
                "away to resume from the one before"
            ) from None
        s.resumed_now = True
    s.writer.restore_epochs(s.progress.history)


def _put_back(s: Session, payload: dict) -> None:
    check_backbone(s.model, payload, s.writer.run_dir)
    try:
        s.trainer.load_state_dict(_trainer_state(payload))
    except ValueError as e:
        raise UserError(f"{s.writer.run_dir}: {e}; was the run's config.yaml edited?") from None
    s.sampler.load_state_dict(payload["sampler"])
    stored = dict(payload["progress"])
    stored.pop("open_epoch", None)
    s.progress = Progress(**stored)
    if payload["epoch_progress"] is not None:
        s.progress.open_epoch = EpochProgress(**payload["epoch_progress"])
    per_rank = payload.get("rng_per_rank")
    same_world = isinstance(per_rank, list) and len(per_rank) == s.ctx.world
    set_rng_state(per_rank[s.ctx.rank] if same_world else payload["rng"])
    s.generator.set_state(payload["generator"])


def _trainer_state(payload: dict) -> dict:
    if "trainer" in payload:
        return payload["trainer"]
    keys = ("model", "optimizer", "scheduler", "scaler")  # format 1 (dmlbench 0.1)
    return {**{k: payload[k] for k in keys}, "step": payload["global_step"]}


def start(s: Session) -> None:
    """Announce the run and write its first summary (status "running")."""
    config, params = s.config, count_parameters(s.model)
    s.echo(
        f"run {s.writer.run_dir}: {config.method} on {s.dataset.name}, backbone "
        f"{config.backbone}, {params.tunable:,} tunable of {params.total:,} parameters, "
        f"device {s.device}"
        + (f"; resumed at epoch {s.progress.epoch}, step {s.sampler.step}" if s.resumed_now else "")
    )
    s.progress.resumed += s.resumed_now
    if not s.resumed_now:
        s.progress.method_state = s.method.state_report(s.model)
    if config.log and s.ctx.is_main:
        resumed_at = s.trainer.step if s.resumed_now else None
        s.loggers = make_loggers(config, s.writer.run_dir, resumed_at, s.echo)
    s.summary = {
        "status": "running",
        "method": config.method,
        "method_label": s.method.label,
        "method_options": dataclasses.asdict(s.method.options),
        "dataset": s.dataset.name,
        "split": config.split,
        "backbone": config.backbone,
        "backbone_hash": s.frozen_hash,
        "seed": config.seed,
        "skipped_bad_images": s.skipped_images,
        "resumed": s.progress.resumed,
        "params": {
            "tunable": params.tunable,
            "total": params.total,
            "backbone": params.backbone,
            "tunable_pct_of_backbone": params.tunable_pct_of_backbone,
        },
    }
    s.writer.write_summary(s.summary)
    s.loggers.start(dataclasses.asdict(config), s.summary)


def train_epochs(s: Session) -> None:
    """The remaining epochs (or, with 0 epochs, one evaluation of the untrained head)."""
    config = s.config
    if config.epochs == 0:
        s.progress.metrics = evaluate(s, final=True)
        s.writer.append_epoch({"epoch": 0, **s.progress.metrics})
        s.loggers.epoch({"epoch": 0, **s.progress.metrics})
    for epoch in range(s.progress.epoch + 1, config.epochs + 1):
        epoch_progress = s.progress.open_epoch
        if epoch_progress is None:  # a fresh epoch (else: continue the stored one)
            s.sampler.begin_epoch(epoch)
        s.progress.open_epoch = None
        record = s.trainer.train_epoch(
            s.train_loader,
            epoch,
            total=s.sampler.batches_left(),
            progress=epoch_progress,
            on_step=lambda p: _after_step(s, p),
        )
        metrics = s.progress.metrics
        if epoch == config.epochs or (config.eval_every and epoch % config.eval_every == 0):
            metrics = evaluate(s, final=epoch == config.epochs)
            record.update(metrics)
        if state := s.method.state_report(s.model):  # per epoch: how the method's state moves
            record.update({f"state.{key}": value for key, value in state.items()})
        s.progress.finish_epoch(record, metrics)
        save(s, None)
        s.writer.append_epoch(record)
        s.loggers.epoch(record)
        s.echo(epoch_line(record, s.dataset.recall_ks))
        if s.on_epoch is not None:
            s.on_epoch(record)


def evaluate(s: Session, final: bool = False) -> dict:
    """Metrics on the evaluation sets; the final evaluation also keeps the embeddings
    (unless ``save_embeddings`` is off) for ``dmlbench show`` and ``compare``."""
    model = s.method.inference_model(s.model)
    metrics, embedded = evaluate_model(
        model, s.dataset, s.eval_sets, s.config, s.device, s.amp, s.ctx
    )
    if final and s.config.save_embeddings and s.ctx.is_main:
        save_eval_sets(s.writer.run_dir, eval_sets(s, embedded))
    return metrics


def eval_sets(s: Session, embedded: list[tuple]) -> list[EvalSet]:
    return [
        EvalSet(name, emb, labels, [str(r.path) for r in records], [r.label for r in records])
        for name, (emb, labels), records in zip(
            s.eval_names, embedded, s.eval_records, strict=True
        )  # fmt: skip
    ]


def _after_step(s: Session, epoch_progress: EpochProgress) -> None:
    s.sampler.step += 1
    if s.loggers:
        s.loggers.step(s.trainer.step, {"train/step_loss": s.trainer.last_loss,
                                        "train/step_lr": s.trainer.last_lr})  # fmt: skip
    fault_point("step")
    every = s.config.checkpoint_every
    if every and s.sampler.batches_left() > 0 and s.trainer.step % every == 0:
        save(s, epoch_progress)


def save(s: Session, epoch_progress: EpochProgress | None) -> None:
    """A checkpoint of everything training changes (see dmlbench.train.checkpoint)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "backbone_hash": s.frozen_hash,
        "trainer": s.trainer.state_dict(),
        "sampler": s.sampler.state_dict(),
        "generator": s.generator.get_state(),
        "progress": {
            **dataclasses.asdict(s.progress),
            "wall_seconds": s.progress.wall_seconds + s.wall.elapsed(),
        },
        "epoch_progress": dataclasses.asdict(epoch_progress) if epoch_progress else None,
        "rng": rng_state(),
    }
    if s.ctx.enabled:  # each rank's own (dropout, drop-path draw from them); "rng": rank 0's
        payload["rng_per_rank"] = distributed.gather_objects(payload["rng"], s.ctx)
    if s.ctx.is_main:
        save_checkpoint(s.writer.run_dir, s.trainer.step, payload, s.config.keep_checkpoints)
    distributed.barrier(s.ctx)


@contextmanager
def record_failure(s: Session) -> Iterator[None]:
    """Any exception marks the run: interrupted (Ctrl-C, a scheduler's preemption
    signal: resumable) or failed; the run directory stays as it is."""
    try:
        yield
    except BaseException as e:
        e.run_dir = s.writer.run_dir  # for the one-line message of the CLI
        stopped = isinstance(e, KeyboardInterrupt | SystemExit)
        # an exception may say what it means for the run (a tuner's "pruned")
        status = getattr(e, "run_status", None) or ("interrupted" if stopped else "failed")
        s.summary.update(
            status=status,
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
            wall_seconds=s.progress.wall_seconds + s.wall.elapsed(),
        )
        s.writer.write_summary(s.summary)
        s.loggers.close("KILLED" if stopped else "FAILED")
        raise


def finish(s: Session, memory: dict) -> RunResult:
    """The final summary: metrics of the last epoch, cost, time, the method's state."""
    p, metrics = s.progress, s.progress.metrics
    estimate = None
    if s.config.estimate_memory and s.ctx.is_main:
        estimate = estimate_for_run(s.config, s.dataset, s.method, s.ctx.world)
    s.summary.update(
        status="finished",
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        metrics={
            k: v for k, v in metrics.items() if k not in ("eval_seconds", "eval_images_per_s")
        },
        memory=memory_summary(memory, estimate),
        inference=inference_summary(s.method.inference_model(s.model)),
        time={
            "wall_seconds": p.wall_seconds + s.wall.elapsed(),
            "train_seconds": p.train_seconds,
            "train_images_per_s": p.train_images / p.train_seconds
            if p.train_seconds
            else float("nan"),
            "eval_images_per_s": metrics.get("eval_images_per_s"),
            "epochs": s.config.epochs,
        },
    )
    best = best_over_epochs(p.history, s.config.split)
    if best is not None:
        s.summary[f"best_on_{s.config.split}"] = best
    end_state = s.method.state_report(s.model)
    if end_state or p.method_state:
        s.summary["method_state"] = {"start": p.method_state, "end": end_state}
    if s.resumed_now:
        s.summary["memory"]["note"] = "peak since the last resume"
    if s.ctx.enabled:
        s.summary["processes"] = s.ctx.world
        s.summary["memory"]["note"] = "rank 0"
    s.writer.write_summary(s.summary)
    if s.loggers:
        s.loggers.finish(s.summary, _artifacts(s))
    distributed.shutdown(s.ctx)
    return RunResult(s.writer.run_dir, s.summary, s.ctx.is_main)


def _artifacts(s: Session) -> list[Path]:
    """What a tracker gets beside the numbers: the run's config, summary and curves."""
    run_dir = s.writer.run_dir
    title = f"{s.method.label} on {s.dataset.name} (seed {s.config.seed})"
    curves = run_curves(s.progress.history, run_dir / "pictures" / "curves.png", title)
    return [run_dir / "config.yaml", run_dir / "summary.json", curves]


def _silent(*_args, **_kwargs) -> None:
    """What ranks other than 0 print."""
