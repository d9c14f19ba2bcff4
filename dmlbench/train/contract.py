"""The run-time check of the method contract: what a method leaves trainable trains.

A parameter that is trainable but unreachable by autograd (a token a plugin
adds outside ``model.backbone`` while the frozen backbone runs without
autograd; a parameter missing from the optimizer) is otherwise counted as
tunable, reported, and never changed: a silently wrong run. The trainer
therefore checks once, from its first optimizer step: every trainable
parameter of the model got a gradient in that step and is in an optimizer
group, and (where its group's learning rate was above zero) it has changed by
the end of that epoch. Not "changed after the first step": some parameters
rightly get a zero gradient then (LoRA's A, while B is still zero).
"""

from __future__ import annotations

import torch
from torch import nn

from dmlbench.errors import UserError

AUTOGRAD_RULE = (
    "a parameter a method adds trains only if autograd reaches it: the frozen backbone "
    "runs without autograd when no backbone parameter trains, so register added "
    "parameters under model.backbone (or as a model module the forward uses)"
)


class DeadParameters(UserError):
    """Trainable parameters the first step did not train (the message names them)."""


class FirstStepCheck:
    """Snapshots the trainable parameters before the first step (in host memory, so an
    accelerator's measured peak is not changed) and checks them then and later."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 self_updated: list[torch.Tensor] = ()):  # fmt: skip
        """``self_updated``: parameters the method updates itself (no ``.grad``, no
        optimizer group); they are only asked to change."""
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        exempt = {id(p) for p in self_updated}
        self.stepped = {n: p for n, p in self.trainable.items() if id(p) not in exempt}
        self.lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
        self.before = {n: p.detach().to("cpu", copy=True) for n, p in self.trainable.items()}

    def no_gradient(self) -> list[str]:
        """Called after backward, before the step: the parameters autograd never reached."""
        return [n for n, p in self.stepped.items() if p.grad is None]

    def not_moved(self) -> list[str]:
        """Called at the end of the epoch: parameters with a learning rate that stayed as
        they were."""
        moving = [(n, p) for n, p in self.trainable.items()
                  if n not in self.stepped or self.lr.get(id(p), 0.0) > 0]  # fmt: skip
        return [n for n, p in moving if torch.equal(self.before[n], p.detach().cpu())]

    def not_optimized(self) -> list[str]:
        return [n for n, p in self.stepped.items() if id(p) not in self.lr]


def raise_dead(method_name: str, kind: str, names: list[str], cause: str) -> None:
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    raise DeadParameters(
        f"method {method_name}: {len(names)} trainable parameter(s) {kind} in the first "
        f"step ({shown}); {cause}"
    )
