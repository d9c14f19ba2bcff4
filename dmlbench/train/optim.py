"""The run's optimizer and learning-rate schedule, from its config."""

from __future__ import annotations

import math

import torch

from dmlbench.config import RunConfig


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


def cosine_schedule(total_steps: int, warmup_steps: int, floor: float = 0.0):
    """lr factor per step: linear warm-up, then a cosine from 1 down to ``floor`` at the end."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def epoch_cosine_schedule(steps_per_epoch: int, period: int, floor: float, warmup_steps: int = 0):
    """lr factor per step that changes once per epoch: torch's CosineAnnealingLR with
    ``T_max = period`` and ``eta_min = floor × lr``, stepped after each epoch, as the
    VPTSP reference schedules (with T_max 50 over CUB's 15 epochs the last epoch
    still runs at 0.82 × lr). Written as a closed form over steps so the run's one
    per-step scheduler (and its checkpoint) serves both schedules."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        epoch = step // steps_per_epoch
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / period))

    return factor
