"""The training loop. It sees a model, a plugin object, a loss and batches;
what the plugin does to the model is the plugin's business."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dmlbench.distributed import SINGLE, DistContext, gather_batch
from dmlbench.meter import Stopwatch
from dmlbench.progress import progress as progress_bar


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class EpochProgress:
    """What an epoch has accumulated so far; a checkpoint stores it so a
    resumed epoch reports the same loss and throughput as an uninterrupted one."""

    loss_sum: float = 0.0
    images: int = 0
    seconds: float = 0.0


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for ``amp`` on ``device`` (None = full fp32)."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


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


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        plugin,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        grad_clip: float | None = None,
        ctx: DistContext = SINGLE,
    ):
        self.model, self.plugin, self.loss_fn = model, plugin, loss_fn
        self.ctx = ctx
        # Several processes: the forward pass goes through DDP (which averages
        # the gradients of what trains); plugin hooks still see the plain model.
        self.forward_model = model
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.forward_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.device, self.amp_dtype, self.grad_clip = device, amp_dtype, grad_clip
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.step = 0

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_epoch(
        self,
        batches: Iterable,
        epoch: int,
        total: int | None = None,
        progress: EpochProgress | None = None,
        on_step: Callable[[EpochProgress], None] | None = None,
    ) -> dict:
        """One pass over ``batches``; ``progress`` continues an interrupted epoch,
        ``on_step`` is called after every optimizer step (checkpoints)."""
        self.model.train()
        progress = progress or EpochProgress()
        done_before = progress.seconds
        watch = Stopwatch()
        bar = progress_bar(
            batches,
            total=total,
            desc=f"epoch {epoch}",
            unit="batch",
            leave=False,
            disable=not self.ctx.is_main,
        )
        for x, y in bar:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with self._autocast():
                embeddings = self.forward_model(x)
                proxies = self.plugin.proxies(self.model, x, y)
                embeddings, y = gather_batch(embeddings, y, self.ctx)  # the global batch
                loss = self.loss_fn(embeddings, y, proxies)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"loss is {loss.item()} at step {self.step} (epoch {epoch})")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
                nn.utils.clip_grad_norm_(trainable, self.grad_clip)
            grad_scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.plugin.after_step(self.model, self.optimizer, grad_scale)
            self.scheduler.step()
            self.step += 1
            progress.loss_sum += loss.item() * len(y)
            progress.images += len(y)
            progress.seconds = done_before + watch.elapsed()
            bar.set_postfix(
                loss=f"{loss.item():.4f}", img_s=f"{progress.images / progress.seconds:.0f}"
            )
            if on_step is not None:
                on_step(progress)
        seconds = progress.seconds
        return {
            "epoch": epoch,
            "loss": progress.loss_sum / max(1, progress.images),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_images": progress.images,
            "train_seconds": seconds,
            "train_images_per_s": progress.images / seconds if seconds else float("nan"),
        }


@torch.no_grad()
def compute_embeddings(
    model: nn.Module, loader: Iterable, device: torch.device, amp_dtype: torch.dtype | None = None
) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    chunks, labels = [], []
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    for x, y in progress_bar(loader, desc="embedding", unit="batch", leave=False):
        with autocast:
            chunks.append(model(x.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(chunks).numpy(), torch.cat(labels).numpy()
