"""VPTSP's class prompts (C × T × D, T the tokens of all prompted blocks) and where they live.

Three storages, all updated by torch's own optimizers (no optimizer written
by hand):

* ``device``: one dense parameter beside the model, in the run's optimizer.
  Exactly the VPTSP reference for CUB and Cars, where the class prompts are
  one parameter: momentum, Adam moments and weight decay keep moving the
  rows of classes absent from a batch.
* ``host``: the same dense parameter kept in host memory (C × L × N × D is
  626 MB for SOP's 11,318 classes on ViT-S with L = 12, N = 3). The batch's
  rows reach the accelerator by ``index_select(...).to(device)``, so autograd
  brings a dense gradient back to the host copy and the run's optimizer
  updates it there: the same numbers as ``device`` (tested), at the cost of a
  dense update in host memory per step.
* ``lazy``: the reference's memory bank for SOP and In-Shop. Only the batch's
  rows and their optimizer state change: each step, the rows and their
  stored state go into a torch optimizer of the run's kind and settings,
  which steps once; the step count (Adam's bias correction) is shared by all
  rows, as in the reference. The rows are not part of gradient clipping.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Storage = Literal["device", "host", "lazy"]
STORAGES: tuple[str, ...] = ("device", "host", "lazy")
# "auto" keeps the bank on the accelerator up to this size (its AdamW state is twice as much).
AUTO_DEVICE_LIMIT_BYTES = 256 * 2**20


def resolve_storage(storage: str, classes: int, tokens: int, dim: int) -> Storage:
    if storage != "auto":
        return storage  # type: ignore[return-value]
    return "device" if classes * tokens * dim * 4 <= AUTO_DEVICE_LIMIT_BYTES else "host"


class ClassPromptBank(nn.Module):
    def __init__(self, classes: int, tokens: int, dim: int, storage: Storage):
        super().__init__()
        if storage not in STORAGES:
            raise ValueError(f"class-prompt storage must be one of {', '.join(STORAGES)}")
        self.storage = storage
        self.weight = nn.Parameter(torch.empty(classes, tokens, dim))
        # lazy only: the optimizer state of every row, and the shared step count
        self._state: dict[str, torch.Tensor] = {}
        self._staged: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def in_optimizer(self) -> bool:
        """Whether the run's optimizer updates ``weight`` (device and host storage)."""
        return self.storage != "lazy"

    def _apply(self, fn, recurse=True):
        # model.to(device) / .half() leave a host or lazy bank in fp32 host memory.
        return super()._apply(fn, recurse) if self.storage == "device" else self

    def gather(self, classes: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The rows of ``classes`` on ``device`` (U × T × D), differentiable."""
        if self.storage != "lazy":
            index = classes.to(self.weight.device)
            return self.weight.index_select(0, index).to(device, non_blocking=True)
        index = classes.detach().cpu()
        rows = self.weight.detach().index_select(0, index).to(device, non_blocking=True)
        rows.requires_grad_(self.weight.requires_grad)
        self._staged = (index, rows)
        return rows

    def host_state(self) -> list[torch.Tensor]:
        """The lazy bank's optimizer state rows (host memory)."""
        return [v for v in self._state.values() if v.dim() > 0]

    # -- lazy storage -----------------------------------------------------------
    def get_extra_state(self) -> dict:
        return {"optimizer": dict(self._state)}

    def set_extra_state(self, state: dict) -> None:
        self._state = {k: v.clone() for k, v in state["optimizer"].items()}

    @torch.no_grad()
    def apply_lazy_update(
        self, optimizer: torch.optim.Optimizer, grad_scale: float, group_name: str = "model"
    ) -> None:
        """Step the staged rows with a torch optimizer of the run's kind and ``group_name``'s
        current settings (scheduled lr included), then store rows and state back."""
        if self._staged is None:
            return
        index, rows = self._staged
        self._staged = None
        if rows.grad is None:
            return
        grad = rows.grad.float() / grad_scale
        if grad_scale != 1.0 and not torch.isfinite(grad).all():
            return  # fp16 loss scaling overflowed: the run's step was skipped too
        group = next(g for g in optimizer.param_groups if g.get("name") == group_name)
        leaf = rows.detach().float().requires_grad_(True)
        leaf.grad = grad
        settings = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
        step = type(optimizer)([{**settings, "params": [leaf]}])
        if self._state:
            step.state[leaf] = {
                k: v if k == "step" else v[index].to(leaf.device) for k, v in self._state.items()
            }
        step.step()
        for key, value in step.state[leaf].items():
            if not torch.is_tensor(value):
                continue
            if value.dim() == 0:  # the shared step count
                self._state[key] = value.detach().cpu().clone()
                continue
            if key not in self._state:
                self._state[key] = torch.zeros_like(self.weight, device="cpu")
            self._state[key][index] = value.detach().cpu().to(self._state[key].dtype)
        self.weight.data[index] = leaf.detach().cpu().to(self.weight.dtype)
