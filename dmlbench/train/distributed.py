"""One run on several processes (``torchrun --nproc_per_node=N -m dmlbench run …``).

What each process does: its contiguous share of every global batch (see
:mod:`dmlbench.data.sampling`), a forward pass, then the embeddings of all
ranks are gathered *with their gradients* so that Proxy-Anchor sees the
whole global batch, exactly as one process would. DistributedDataParallel
averages the gradients of the tunable parameters (frozen ones never enter
its reducer). Evaluation embeds a shard per rank and gathers the
embeddings on rank 0, which alone scores them and writes the run directory.

Why gather before the loss: Proxy-Anchor is not a mean over samples (its
terms are log-sum-exps over each proxy's positives and negatives in the
batch), so the mean of per-rank losses is another loss than the global one.
With all ranks computing the global loss, autograd's all-gather backward
sums the identical gradients of the ranks (×N) and DDP's averaging divides
by N: the gradient equals that of one process with the global batch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

# The step's collectives live with the methods that call them; the trainer's own
# (joining the group, sharded evaluation, broadcast) are here.
from dmlbench.nn.collectives import (  # noqa: F401  (SINGLE: re-exported)
    SINGLE,
    DistContext,
    gather_objects,
    gather_tensor,
    gather_with_gradient,
)


def from_environment(device_type: str) -> DistContext:
    """Join the process group torchrun describes in the environment (else: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def gather_batch(embeddings: torch.Tensor, labels: torch.Tensor, ctx: DistContext):
    """All ranks' embeddings (differentiable) and labels, in rank order."""
    return gather_with_gradient(embeddings, ctx), gather_tensor(labels, ctx)


def gather_shards(embeddings: np.ndarray, labels: np.ndarray, ctx: DistContext):
    """Rank r embedded items r, r+N, r+2N …; rank 0 gets them back in item order."""
    if not ctx.enabled:
        return embeddings, labels
    parts = gather_objects((embeddings, labels), ctx)
    if not ctx.is_main:
        return None, None
    total = sum(len(p[0]) for p in parts)
    out = np.empty((total, embeddings.shape[1]), dtype=embeddings.dtype)
    out_labels = np.empty(total, dtype=labels.dtype)
    for rank, (emb, lab) in enumerate(parts):
        out[rank :: ctx.world], out_labels[rank :: ctx.world] = emb, lab
    return out, out_labels


def broadcast(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (e.g. the run directory it created)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
