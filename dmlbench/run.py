"""One benchmark run: config → data → model → method → training → evaluation → run directory.

Data flows one way: the dataset spec gives records, the sampler gives
class-balanced batches, the method prepares the model, the trainer fits it,
the evaluator scores unseen classes, and the run store keeps everything.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from dmlbench import distributed
from dmlbench.backbone import backbone_data_config, build_model
from dmlbench.checkpoint import (
    backbone_hash,
    check_backbone,
    fault_point,
    frozen_names,
    load_latest,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trained_state,
)
from dmlbench.config import RunConfig, resolve, to_yaml
from dmlbench.data.image_cache import cached_records
from dmlbench.data.image_list import ImageListDataset
from dmlbench.data.sampling import ResumableMPerClassSampler
from dmlbench.data.spec import DatasetSpec, get_dataset
from dmlbench.data.transforms import test_transform, train_transform
from dmlbench.data.verify import bad_images_cached, scan_memo_path
from dmlbench.distributed import SINGLE, DistContext, gather_shards
from dmlbench.errors import UserError
from dmlbench.evaluate import retrieval_metrics
from dmlbench.losses import ProxyAnchorLoss
from dmlbench.meter import PeakMemory, Stopwatch, count_parameters, peak_memory_mb
from dmlbench.method import Method
from dmlbench.registry import get_method
from dmlbench.results import RunWriter, new_run_dir
from dmlbench.seeding import seed_everything
from dmlbench.trainer import (
    EpochProgress,
    Trainer,
    autocast_dtype,
    compute_embeddings,
    cosine_schedule,
    epoch_cosine_schedule,
)


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


def build_optimizer(config: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """The run's optimizer; a "proxies" group decays at ``proxy_weight_decay`` (default:
    the run's weight decay) unless the method set its own."""
    proxy_decay = config.weight_decay
    if config.proxy_weight_decay is not None:
        proxy_decay = config.proxy_weight_decay
    groups = [
        {"weight_decay": proxy_decay, **g} if g.get("name") == "proxies" else g for g in groups
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    config: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The run's learning-rate schedule, stepped after every optimizer step."""
    total_steps = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.lr_schedule == "cosine-epochs":
        period = config.cosine_epochs or config.epochs
        factors = [
            epoch_cosine_schedule(steps_per_epoch, period, config.lr_min / g["lr"], warmup)
            for g in optimizer.param_groups
        ]
    else:
        factors = [
            cosine_schedule(total_steps, warmup, config.lr_min / g["lr"])
            for g in optimizer.param_groups
        ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def _loader(dataset, config, device, sampler=None, batch_size=None, generator=None):
    workers = config.num_workers
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size or config.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=sampler is not None,
        generator=generator,
        persistent_workers=workers > 0,
    )


def evaluate_model(
    model, spec: DatasetSpec, eval_sets, config, device, amp, ctx: DistContext = SINGLE
) -> dict:
    """Retrieval metrics on the unseen classes (on rank 0; other ranks get {})."""
    watch = Stopwatch()
    embedded = [
        gather_shards(*compute_embeddings(model, loader, device, amp), ctx) for loader in eval_sets
    ]
    if not ctx.is_main:
        return {}
    embed_seconds = watch.elapsed()
    if len(embedded) == 1:
        ((q, ql),) = embedded
        metrics = retrieval_metrics(q, ql, ks=spec.recall_ks)
    else:
        (q, ql), (g, gl) = embedded
        metrics = retrieval_metrics(q, ql, g, gl, ks=spec.recall_ks)
    images = sum(len(e[0]) for e in embedded)
    metrics["eval_images_per_s"] = images / embed_seconds if embed_seconds else float("nan")
    metrics["eval_seconds"] = watch.elapsed()
    return metrics


def usable_records(spec: DatasetSpec, config: RunConfig) -> tuple[list, int]:
    """The records, minus unreadable images if ``skip_bad_images`` (how many were skipped)."""
    records = spec.records()
    key = spec.scan_key()
    if key is None:
        return records, 0
    bad = bad_images_cached(records, key)
    if not bad:
        return records, 0
    if not config.skip_bad_images:
        listing = scan_memo_path(key)
        raise UserError(
            f"dataset {spec.name}: {len(bad)} unreadable image(s), e.g. {bad[0][0]} "
            f"({bad[0][1]}); all listed in {listing}; fix or remove them, or pass "
            "--skip-bad-images"
        )
    dropped = {path for path, _ in bad}
    return [r for r in records if r.path not in dropped], len(bad)


def build_loaders(
    spec: DatasetSpec,
    config: RunConfig,
    model,
    device,
    generator,
    records,
    ctx: DistContext = SINGLE,
):
    """Class-balanced training batches and the evaluation sets; checks they fit the config."""
    data_cfg = backbone_data_config(model.backbone)
    size, mean, std = data_cfg["input_size"][-1], data_cfg["mean"], data_cfg["std"]
    train_set = ImageListDataset(
        [r for r in records if r.split == spec.train_split],
        train_transform(spec.transform, size, mean, std),
    )
    if len(train_set.classes) != model.spec.num_classes:
        raise UserError(
            f"dataset {spec.name}: {len(train_set.classes)} training classes found, "
            f"{model.spec.num_classes} expected"
        )
    classes_per_batch = config.batch_size // config.images_per_class
    if classes_per_batch > len(train_set.classes):
        raise UserError(
            f"batch_size/images_per_class = {classes_per_batch} classes per batch, but the "
            f"training split has only {len(train_set.classes)}; lower batch_size"
        )
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch < 1:
        raise UserError(
            f"batch_size {config.batch_size} exceeds the {len(train_set)} training images"
        )
    if config.batch_size % ctx.world:
        raise UserError(
            f"batch_size {config.batch_size} is not divisible by the {ctx.world} processes"
        )
    sampler = ResumableMPerClassSampler(
        train_set.targets,
        m=config.images_per_class,
        batch_size=config.batch_size,
        steps_per_epoch=steps_per_epoch,
        seed=config.seed,
        rank=ctx.rank,
        world=ctx.world,
        kind=config.sampler,
    )
    train_loader = _loader(
        train_set,
        config,
        device,
        sampler=sampler,
        batch_size=config.batch_size // ctx.world,
        generator=generator,
    )
    test_tf = test_transform(spec.transform, size, mean, std)
    eval_sets = []
    for split in spec.eval_splits:
        items = ImageListDataset([r for r in records if r.split == split], test_tf)
        if ctx.enabled:  # rank r embeds items r, r+N, …; rank 0 puts them back in order
            items = torch.utils.data.Subset(items, range(ctx.rank, len(items), ctx.world))
        eval_sets.append(_loader(items, config, device, batch_size=config.eval_batch_size))
    return train_loader, eval_sets, steps_per_epoch


def create_run_dir(config: RunConfig) -> Path:
    """A new run directory under ``config.output`` holding the resolved config.

    ``dmlbench sweep`` creates it before starting the run's process (which then
    continues it with ``--resume``), so the run's log file can live inside it.
    """
    dataset = config.dataset.replace(":", "_").replace("/", "_")
    run_dir = new_run_dir(Path(config.output), f"{config.method}-{dataset}-s{config.seed}")
    RunWriter(run_dir).write_config(to_yaml(config))
    return run_dir


def execute(config: RunConfig, echo=print, resume: Path | None = None) -> RunResult:
    """Run ``config``; with ``resume`` (a run directory), continue that run from
    its newest checkpoint (or from the start if it never wrote one)."""
    config, spec, method = prepare(config)
    device = pick_device(config.device)
    ctx = distributed.from_environment(device.type)
    if ctx.enabled:
        if not method.distributed:
            raise UserError(
                f"method {config.method} does not support several processes (torchrun) yet; "
                "run it in one process"
            )
        if device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
        if not ctx.is_main:
            echo = _silent
    generator = seed_everything(config.seed)
    weights = None if config.weights == "none" else config.weights  # "none": random init
    model = build_model(
        config.backbone, weights, config.embedding_dim, spec.num_train_classes, config.proxy_init
    )
    try:
        method.setup(model)
    except ValueError as e:
        raise UserError(f"method {config.method}: {e}") from None

    records, skipped = usable_records(spec, config)
    if config.image_cache and spec.scan_key() is not None:  # not for generated data
        records = cached_records(records, config.image_cache)
    train_loader, eval_sets, steps_per_epoch = build_loaders(
        spec, config, model, device, generator, records, ctx
    )
    sampler: ResumableMPerClassSampler = train_loader.sampler

    model.to(device)
    optimizer = build_optimizer(config, method.param_groups(model, config.lr, config.proxy_lr))
    scheduler = build_scheduler(config, optimizer, steps_per_epoch)
    loss_fn = ProxyAnchorLoss(config.loss_alpha, config.loss_margin, config.loss_positive_divisor)
    amp = autocast_dtype(config.amp, device)
    clip = config.grad_clip or None  # 0: no clipping
    trainer = Trainer(model, method, loss_fn, optimizer, scheduler, device, amp, clip, ctx)

    device_text = str(device) + (f" ×{ctx.world} processes" if ctx.enabled else "")
    if resume is not None:
        writer = RunWriter(Path(resume), enabled=ctx.is_main)
        if not (writer.run_dir / "environment.json").exists():  # prepared by `dmlbench sweep`
            writer.write_environment(device_text)
    elif ctx.is_main:
        writer = RunWriter(create_run_dir(config))
        writer.write_environment(device_text)
        distributed.broadcast(str(writer.run_dir), ctx)
    else:
        writer = RunWriter(Path(distributed.broadcast(None, ctx)), enabled=False)
    params = count_parameters(model)
    frozen_hash = backbone_hash(model)
    resumed = load_latest(writer.run_dir) if resume is not None else None
    progress = Progress()
    if resumed is not None:
        check_backbone(model, resumed, writer.run_dir)
        progress = _restore(resumed, model, optimizer, scheduler, trainer, sampler)
        generator.set_state(resumed["generator"])
    writer.restore_epochs(progress.history)
    echo(
        f"run {writer.run_dir}: {config.method} on {spec.name}, backbone {config.backbone}, "
        f"{params.tunable:,} tunable of {params.total:,} parameters, device {device}"
        + (f"; resumed at epoch {progress.epoch}, step {sampler.step}" if resumed else "")
    )
    summary: dict = {
        "status": "running",
        "method": config.method,
        "method_label": method.label,
        "method_options": dataclasses.asdict(method.options),
        "dataset": spec.name,
        "backbone": config.backbone,
        "backbone_hash": frozen_hash,
        "seed": config.seed,
        "skipped_bad_images": skipped,
        "resumed": progress.resumed + (resumed is not None),
        "params": {
            "tunable": params.tunable,
            "total": params.total,
            "backbone": params.backbone,
            "tunable_pct_of_backbone": params.tunable_pct_of_backbone,
        },
    }
    progress.resumed = summary["resumed"]
    if resumed is None:
        progress.method_state = method.state_report(model)
    writer.write_summary(summary)

    def checkpoint(epoch_progress: EpochProgress | None) -> None:
        payload = {
            "format": 1,
            "backbone_hash": frozen_hash,
            "model": trained_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "sampler": sampler.state_dict(),
            "generator": generator.get_state(),
            "global_step": trainer.step,
            "progress": {
                **dataclasses.asdict(progress),
                "wall_seconds": progress.wall_seconds + wall.elapsed(),
            },
            "epoch_progress": dataclasses.asdict(epoch_progress) if epoch_progress else None,
            "rng": rng_state(),
        }
        if ctx.is_main:
            save_checkpoint(writer.run_dir, trainer.step, payload, config.keep_checkpoints)
        distributed.barrier(ctx)

    def after_step(epoch_progress: EpochProgress) -> None:
        sampler.step += 1
        fault_point("step")
        mid_epoch = sampler.batches_left() > 0
        if mid_epoch and config.checkpoint_every and trainer.step % config.checkpoint_every == 0:
            checkpoint(epoch_progress)

    wall = Stopwatch()
    metrics: dict = dict(progress.metrics)
    try:
        with PeakMemory(device) as memory:
            if config.epochs == 0:  # evaluation only: the untrained head on the backbone
                metrics = evaluate_model(model, spec, eval_sets, config, device, amp, ctx)
                writer.append_epoch({"epoch": 0, **metrics})
            for epoch in range(progress.epoch + 1, config.epochs + 1):
                epoch_progress = progress.open_epoch
                if epoch_progress is None:  # a fresh epoch (else: continue the stored one)
                    sampler.begin_epoch(epoch)
                progress.open_epoch = None
                record = trainer.train_epoch(
                    train_loader,
                    epoch,
                    total=sampler.batches_left(),
                    progress=epoch_progress,
                    on_step=after_step,
                )
                if epoch == config.epochs or (config.eval_every and epoch % config.eval_every == 0):
                    metrics = evaluate_model(model, spec, eval_sets, config, device, amp, ctx)
                    record.update(metrics)
                progress.finish_epoch(record, metrics)
                checkpoint(None)
                writer.append_epoch(record)
                echo(_epoch_line(record, spec.recall_ks))
    except BaseException as e:
        e.run_dir = writer.run_dir  # for the one-line message of the CLI
        # Ctrl-C, or a scheduler's preemption signal: resumable, not a failure.
        stopped = isinstance(e, KeyboardInterrupt | SystemExit)
        summary.update(
            status="interrupted" if stopped else "failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
        )
        summary["wall_seconds"] = progress.wall_seconds + wall.elapsed()
        writer.write_summary(summary)
        raise
    memory_result = memory.result()
    train_seconds, train_images = progress.train_seconds, progress.train_images
    summary.update(
        status="finished",
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        metrics={
            k: v for k, v in metrics.items() if k not in ("eval_seconds", "eval_images_per_s")
        },
        memory={**memory_result, "peak_mb": peak_memory_mb(memory_result)},
        time={
            "wall_seconds": progress.wall_seconds + wall.elapsed(),
            "train_seconds": train_seconds,
            "train_images_per_s": train_images / train_seconds if train_seconds else float("nan"),
            "eval_images_per_s": metrics.get("eval_images_per_s"),
            "epochs": config.epochs,
        },
    )
    best = best_over_epochs(progress.history)
    if best is not None:
        summary["best_on_test"] = best
    end_state = method.state_report(model)
    if end_state or progress.method_state:
        summary["method_state"] = {"start": progress.method_state, "end": end_state}
    if resumed is not None:
        summary["memory"]["note"] = "peak since the last resume"
    if ctx.enabled:
        summary["processes"] = ctx.world
        summary["memory"]["note"] = "rank 0"
    writer.write_summary(summary)
    distributed.shutdown(ctx)
    return RunResult(writer.run_dir, summary, ctx.is_main)


def _silent(*_args, **_kwargs) -> None:
    """What ranks other than 0 print."""


@dataclass
class Progress:
    """The run's bookkeeping that a checkpoint carries besides tensors."""

    epoch: int = 0  # completed epochs
    history: list = dataclasses.field(default_factory=list)  # epoch records so far
    metrics: dict = dataclasses.field(default_factory=dict)  # the newest evaluation
    train_seconds: float = 0.0
    train_images: int = 0
    wall_seconds: float = 0.0
    resumed: int = 0
    open_epoch: EpochProgress | None = None  # an epoch interrupted mid-way
    method_state: dict = dataclasses.field(default_factory=dict)  # the method's report at start

    def finish_epoch(self, record: dict, metrics: dict) -> None:
        self.epoch = record["epoch"]
        self.history.append(record)
        self.metrics = dict(metrics)
        self.train_seconds += record["train_seconds"]
        self.train_images += record["train_images"]


def _restore(checkpoint: dict, model, optimizer, scheduler, trainer, sampler) -> Progress:
    """Put every piece of training state back as it was when ``checkpoint`` was written."""
    missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
    frozen = frozen_names(model)
    if unexpected or set(missing) - frozen:
        raise UserError(
            "the checkpoint does not fit this method's model (missing "
            f"{sorted(set(missing) - frozen)[:3]}, unexpected {sorted(unexpected)[:3]}); "
            "was the run's config.yaml edited?"
        )
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    trainer.scaler.load_state_dict(checkpoint["scaler"])
    trainer.step = checkpoint["global_step"]
    sampler.load_state_dict(checkpoint["sampler"])
    stored = dict(checkpoint["progress"])
    stored.pop("open_epoch", None)
    progress = Progress(**stored)
    if checkpoint["epoch_progress"] is not None:
        progress.open_epoch = EpochProgress(**checkpoint["epoch_progress"])
    set_rng_state(checkpoint["rng"])
    return progress


BEST_METRICS = ("recall@1", "map@r", "map@r_paper")


def best_over_epochs(history: list[dict]) -> dict | None:
    """Each metric's maximum over the evaluated epochs, and where it was reached.

    This is what the VPTSP reference code records (and the paper reports): a
    choice made on the test split. dmlbench reports the final epoch; this
    figure exists only to line results up with such papers, is labelled so,
    and is never used to choose anything.
    """
    evaluated = [r for r in history if "recall@1" in r]
    if not evaluated:
        return None
    best: dict = {
        "note": "maximum over the evaluated epochs on the test split, as the VPTSP reference "
        "reports; not the final epoch, never used for any choice",
        "epochs_evaluated": len(evaluated),
    }
    for key in BEST_METRICS:
        top = max(evaluated, key=lambda r: r.get(key, float("-inf")))
        if key in top:
            best[key], best[f"{key}_epoch"] = top[key], top["epoch"]
    return best


def _epoch_line(record: dict, ks) -> str:
    line = (
        f"epoch {record['epoch']}: loss {record['loss']:.4f}, "
        f"{record['train_images_per_s']:.0f} img/s"
    )
    if "map@r" in record:
        recalls = " ".join(f"R@{k} {record[f'recall@{k}']:.4f}" for k in ks)
        line += f" | {recalls} MAP@R {record['map@r']:.4f} RP {record['r_precision']:.4f}"
    return line
