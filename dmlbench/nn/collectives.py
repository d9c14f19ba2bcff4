"""The collectives a method's training step uses when a run spans several processes.

They live below the plugin interface (a method such as VPTSP gathers its batch's
classes and semantic proxies across ranks inside its loss), while joining a
process group, sharding evaluation and the run directory's broadcast stay with
the trainer in :mod:`dmlbench.train.distributed`. Every function is the identity
on one process, so a method calls them unconditionally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def gather_with_gradient(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """All ranks' ``tensor`` in rank order; backward sums each rank's part of the
    gradient back to it (every rank computes the same loss from the gathered whole)."""
    if not ctx.enabled:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def gather_tensor(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """All ranks' ``tensor`` (same shape on each), concatenated in rank order; no gradient."""
    if not ctx.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(ctx.world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def local_share(size: int, ctx: DistContext) -> slice:
    """This rank's rows of a gathered batch of ``size`` rows (equal contiguous shares)."""
    share = size // ctx.world
    return slice(ctx.rank * share, (ctx.rank + 1) * share)


def average_gradient(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """``tensor`` whose gradient is averaged over the ranks in backward, as DDP averages a
    parameter's: for tensors DDP does not see (rows of a parameter kept in host memory,
    or a bank the method steps itself) whose copies must stay equal on every rank.

    Why by hand: ``torch.distributed.nn.functional.all_reduce`` reduces the forward
    values too; this is the identity forward, and the one collective in backward
    runs in the same autograd order on every rank."""
    if not ctx.enabled or not tensor.requires_grad:
        return tensor

    def average(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad / ctx.world

    tensor.register_hook(average)
    return tensor


def gather_objects(value: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``value`` (picklable, produced in this process), in rank order."""
    if not ctx.enabled:
        return [value]
    parts: list[Any] = [None] * ctx.world
    dist.all_gather_object(parts, value)
    return parts
