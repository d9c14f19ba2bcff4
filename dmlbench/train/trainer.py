"""The training loop. It sees a model, a method object, a loss and batches;
what the method does to the model is the method's business."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dmlbench.progress import progress as progress_bar
from dmlbench.train.checkpoint import frozen_names, trained_state
from dmlbench.train.contract import AUTOGRAD_RULE, FirstStepCheck, raise_dead
from dmlbench.train.distributed import SINGLE, DistContext, gather_batch
from dmlbench.train.meter import Stopwatch


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


class Trainer:
    """Steps a model with a method's proxies, a loss and an optimizer.

    ``state_dict`` holds everything a step changes (the model's trained tensors,
    optimizer, schedule, AMP scaler, step count), so a checkpoint written from
    it and loaded into a fresh trainer continues bit for bit.
    """

    def __init__(
        self,
        model: nn.Module,
        method,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        grad_clip: float | None = None,
        ctx: DistContext = SINGLE,
        loss_scaling: bool | None = None,
        check_first_step: bool = True,
    ):
        """``check_first_step``: check the method contract on the first step this trainer
        takes (:mod:`dmlbench.train.contract`); off only for memory estimates on fake
        tensors, whose values cannot be compared."""
        self.model, self.method, self.loss_fn = model, method, loss_fn
        self.ctx = ctx
        # Several processes: the forward pass goes through DDP (which averages
        # the gradients of what trains); the method's hooks still see the plain model.
        self.forward_model = model
        method.processes = ctx
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            kept = {id(p) for p in method.synchronises_itself(model)}
            ignored = [name for name, p in model.named_parameters() if id(p) in kept]
            if ignored:  # torch's own (underscored) hook for what DDP must not reduce
                nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    model, ignored
                )
            self.forward_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.device, self.amp_dtype, self.grad_clip = device, amp_dtype, grad_clip
        # fp16 needs loss scaling; a memory estimate turns it off (its checks read values)
        scaling = amp_dtype == torch.float16 if loss_scaling is None else loss_scaling
        self.scaler = torch.amp.GradScaler("cuda", enabled=scaling)
        self.step = 0
        self.last_loss = self.last_lr = float("nan")  # of the latest step, for loggers
        self.unchecked = check_first_step
        self.pending_check: FirstStepCheck | None = None

    @property
    def _method_name(self) -> str:
        return getattr(self.method, "name", "") or type(self.method).__name__

    def _check_moved(self) -> None:
        """The end of the epoch of the first step: what trains has changed."""
        check, self.pending_check = self.pending_check, None
        if check is not None and (frozen := check.not_moved()):
            why = "their gradient stayed zero (is there a path from the loss to them?)"
            raise_dead(self._method_name, "did not change", frozen, why)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # -- one step, in two halves (no host synchronisation inside either) ---------
    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's loss: embeddings, the method's proxies, the loss and the
        method's extra term, under the run's autocast."""
        with self._autocast():
            embeddings = self.forward_model(x)
            proxies = self.method.proxies(self.model, x, y)
            embeddings, y = gather_batch(embeddings, y, self.ctx)  # the global batch
            loss = self.loss_fn(embeddings, y, proxies)
            extra = self.method.extra_loss(self.model, embeddings, y)
        return loss if extra is None else loss + extra

    def backward_and_step(self, loss: torch.Tensor) -> None:
        """Backward, clipping, the optimizer's and the method's updates, the schedule."""
        check = None
        if self.unchecked:
            updates_itself = getattr(self.method, "updates_itself", lambda model: [])
            check = FirstStepCheck(self.model, self.optimizer, updates_itself(self.model))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if check is not None:
            if unreached := check.no_gradient():
                raise_dead(self._method_name, "got no gradient", unreached, AUTOGRAD_RULE)
            if outside := check.not_optimized():
                raise_dead(self._method_name, "are in no optimizer group", outside,
                           "param_groups must return every trainable parameter")  # fmt: skip
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(trainable, self.grad_clip)
        grad_scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.after_step(self.model, self.optimizer, grad_scale)
        # fp16 loss scaling skips a step whose gradients overflowed: check the next one
        skipped = self.scaler.is_enabled() and self.scaler.get_scale() < grad_scale
        if check is not None and not skipped:
            self.unchecked, self.pending_check = False, check  # movement: at the epoch's end
        self.scheduler.step()
        self.step += 1

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
            loss = self.forward_loss(x, y)
            value = loss.item()  # the step's one synchronisation: logging and the NaN check
            if not math.isfinite(value):
                raise NonFiniteLoss(f"loss is {value} at step {self.step} (epoch {epoch})")
            self.last_loss, self.last_lr = value, self.optimizer.param_groups[0]["lr"]
            self.backward_and_step(loss)
            progress.loss_sum += value * len(y) * self.ctx.world
            progress.images += len(y) * self.ctx.world
            progress.seconds = done_before + watch.elapsed()
            bar.set_postfix(loss=f"{value:.4f}", img_s=f"{progress.images / progress.seconds:.0f}")
            if on_step is not None:
                on_step(progress)
        self._check_moved()
        seconds = progress.seconds
        return {
            "epoch": epoch,
            "loss": progress.loss_sum / max(1, progress.images),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_images": progress.images,
            "train_seconds": seconds,
            "train_images_per_s": progress.images / seconds if seconds else float("nan"),
        }

    # -- what a checkpoint holds of it ------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": trained_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        if unexpected or set(missing) - frozen_names(self.model):
            raise ValueError(
                "the state does not fit this method's model (missing "
                f"{sorted(set(missing) - frozen_names(self.model))[:3]}, unexpected "
                f"{sorted(unexpected)[:3]})"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]


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
