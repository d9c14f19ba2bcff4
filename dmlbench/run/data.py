"""A run's data plumbing: usable records, class-balanced training batches, the
evaluation sets, and scoring a model on them."""

from __future__ import annotations

import os

import torch

from dmlbench.config import RunConfig
from dmlbench.data.contract import check_dataset_contract, check_files_exist
from dmlbench.data.image_list import ImageListDataset
from dmlbench.data.sampling import ResumableMPerClassSampler
from dmlbench.data.spec import DatasetSpec
from dmlbench.data.splits import SplitView, split_view
from dmlbench.data.transforms import test_transform, train_transform
from dmlbench.data.verify import bad_images_cached, scan_memo_path
from dmlbench.errors import UserError
from dmlbench.eval.clustering import clustering_metrics
from dmlbench.eval.retrieval import retrieval_metrics
from dmlbench.nn.backbone import backbone_data_config
from dmlbench.train.distributed import SINGLE, DistContext, gather_shards
from dmlbench.train.meter import Stopwatch
from dmlbench.train.trainer import compute_embeddings


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
    model, dataset: DatasetSpec, eval_sets, config, device, amp, ctx: DistContext = SINGLE
) -> tuple[dict, list[tuple]]:
    """Retrieval metrics on the unseen classes, and the (embeddings, labels) of each
    evaluation set (on rank 0; other ranks get {} and [])."""
    watch = Stopwatch()
    embedded = [
        gather_shards(*compute_embeddings(model, loader, device, amp), ctx) for loader in eval_sets
    ]
    if not ctx.is_main:
        return {}, []
    embed_seconds = watch.elapsed()
    metrics = score(dataset, embedded, config.seed)
    images = sum(len(e[0]) for e in embedded)
    metrics["eval_images_per_s"] = images / embed_seconds if embed_seconds else float("nan")
    metrics["eval_seconds"] = watch.elapsed()
    return metrics, embedded


def split_records(dataset: DatasetSpec, config: RunConfig) -> SplitView:
    """The images of this run: train + test classes, or train + validation classes
    (the dataset's own, or carved from its training classes); the dataset contract
    checked on the way (:mod:`dmlbench.data.contract`)."""
    records = dataset.records()
    check_dataset_contract(dataset, records)
    view = split_view(records, config.split, dataset.train_split, dataset.eval_splits,
                      dataset.val_split, config.val_fraction, config.val_seed,
                      dataset.name)  # fmt: skip
    check_files_exist(dataset, view.records)
    return view


def usable_records(dataset: DatasetSpec, config: RunConfig, records: list) -> tuple[list, int]:
    """``records`` minus unreadable images if ``skip_bad_images`` (how many were skipped);
    only these images are checked (a validation run never opens a test image)."""
    key = dataset.scan_key()
    if key is None:
        return records, 0
    bad = bad_images_cached(records, key)
    if not bad:
        return records, 0
    if not config.skip_bad_images:
        listing = scan_memo_path(key)
        raise UserError(
            f"dataset {dataset.name}: {len(bad)} unreadable image(s), e.g. {bad[0][0]} "
            f"({bad[0][1]}); all listed in {listing}; fix or remove them, or pass "
            "--skip-bad-images"
        )
    dropped = {path for path, _ in bad}
    return [r for r in records if r.path not in dropped], len(bad)


def build_loaders(
    dataset: DatasetSpec,
    view: SplitView,
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
        [r for r in records if r.split == view.train_split],
        train_transform(dataset.transform, size, mean, std),
    )
    if len(train_set.classes) != model.spec.num_classes:
        raise UserError(
            f"dataset {dataset.name}: {len(train_set.classes)} training classes found, "
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
    eval_sets = eval_loaders(dataset, view, config, model.backbone, device, records, ctx)
    return train_loader, eval_sets, steps_per_epoch


def evaluation_order(view: SplitView, records: list) -> list[list]:
    """The records of each evaluation set, in the order they are embedded (queries, then
    the gallery where there is one): the rows precomputed embeddings must follow."""
    return [[r for r in records if r.split == split] for split in view.eval_splits]


def eval_loaders(dataset, view, config, backbone, device, records, ctx=SINGLE) -> list:
    """One loader per evaluation set, with the backbone's test transform."""
    data_cfg = backbone_data_config(backbone)
    size, mean, std = data_cfg["input_size"][-1], data_cfg["mean"], data_cfg["std"]
    test_tf = test_transform(dataset.transform, size, mean, std)
    loaders = []
    order = evaluation_order(view, records)
    # one label space for the query set and its gallery, or their integer labels
    # would disagree wherever one holds a class the other lacks
    classes = sorted({r.label for items in order for r in items})
    for split_records in order:
        items = ImageListDataset(split_records, test_tf, classes)
        if ctx.enabled:  # rank r embeds items r, r+N, …; rank 0 puts them back in order
            items = torch.utils.data.Subset(items, range(ctx.rank, len(items), ctx.world))
        loaders.append(_loader(items, config, device, batch_size=config.eval_batch_size))
    return loaders


def score(dataset: DatasetSpec, embedded: list[tuple], seed: int = 0) -> dict:
    """Retrieval (and clustering) metrics of embedded evaluation sets: one set searched
    among itself, or queries searched in a gallery."""
    if len(embedded) == 1:
        ((q, ql),) = embedded
        metrics = retrieval_metrics(q, ql, ks=dataset.recall_ks, map_at=dataset.map_at)
        if dataset.cluster_metrics:
            metrics.update(clustering_metrics(q, ql, seed=seed))
        return metrics
    (q, ql), (g, gl) = embedded
    return retrieval_metrics(q, ql, g, gl, ks=dataset.recall_ks, map_at=dataset.map_at)
