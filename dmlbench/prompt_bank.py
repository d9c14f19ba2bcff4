"""A bank of per-class prompt tokens that stays in host memory.

VPTSP keeps C × L × N × D class-specific prompts: 626 MB for SOP's 11,318
classes with ViT-S (L=12, N=3), three times that with AdamW's state. Only the
batch's classes are needed per step, so the bank lives on the CPU: ``gather``
copies the batch's rows to the accelerator as a fresh leaf tensor, and after
the optimizer step ``apply_update`` updates exactly those rows and their
optimizer state, on the CPU.

Why by hand: torch optimizers update whole parameters on their own device,
and sparse gradients are not accepted by AdamW nor by SGD with weight decay.
The row update below is the same rule as the run's optimizer (SGD with
momentum, or AdamW with bias correction), with each row counting its own
steps, read with the scheduled learning rate of the run's "model" group.
Rows of classes that are not in a batch stay untouched (no decay, no
momentum drift): the lazy-update convention of sparse optimizers. The
run's gradient clipping does not cover the bank (its rows are not in the
optimizer); a non-finite gradient skips the row update, as AMP skips a step.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassPromptBank(nn.Module):
    def __init__(self, classes: int, layers: int, tokens: int, dim: int):
        super().__init__()
        # A Parameter so that it counts as tunable and is saved; the run's
        # optimizer never sees it (the method leaves it out of param_groups).
        self.weight = nn.Parameter(torch.empty(classes, layers, tokens, dim))
        self.register_buffer("steps", torch.zeros(classes, dtype=torch.long), persistent=False)
        self._state: dict[str, torch.Tensor] = {}
        self._staged: tuple[torch.Tensor, torch.Tensor] | None = None

    def _apply(self, fn, recurse=True):
        # model.to(device) / .half() leave the bank in fp32 host memory.
        return self

    # The row counters and optimizer state live outside the parameter; as
    # module "extra state" they travel in state_dict() into checkpoints.
    def get_extra_state(self) -> dict:
        return {"steps": self.steps.clone(), "optimizer": dict(self._state)}

    def set_extra_state(self, state: dict) -> None:
        self.steps.copy_(state["steps"])
        self._state = {k: v.clone() for k, v in state["optimizer"].items()}

    def gather(self, classes: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The rows of ``classes`` on ``device``, as a leaf whose gradient feeds the update."""
        index = classes.detach().cpu()
        rows = self.weight.detach().index_select(0, index).to(device, non_blocking=True)
        rows.requires_grad_(self.weight.requires_grad)
        self._staged = (index, rows)
        return rows

    @torch.no_grad()
    def apply_update(self, optimizer: torch.optim.Optimizer, grad_scale: float = 1.0) -> None:
        if self._staged is None:
            return
        index, rows = self._staged
        self._staged = None
        if rows.grad is None:
            return
        grad = rows.grad.detach().float().cpu() / grad_scale
        if not torch.isfinite(grad).all():  # AMP overflow: the run's step was skipped too
            return
        group = next(g for g in optimizer.param_groups if g.get("name") == "model")
        lr, decay = group["lr"], group.get("weight_decay", 0.0)
        weight = self.weight.data[index]
        self.steps[index] += 1
        if isinstance(optimizer, torch.optim.AdamW | torch.optim.Adam):
            weight = self._adam(index, weight, grad, group, lr, decay)
        else:
            weight = self._sgd(index, weight, grad, group, lr, decay)
        self.weight.data[index] = weight

    def _state_rows(self, name: str, index: torch.Tensor) -> torch.Tensor:
        if name not in self._state:
            self._state[name] = torch.zeros_like(self.weight.data)
        return self._state[name][index]

    def _adam(self, index, weight, grad, group, lr, decay):
        beta1, beta2 = group["betas"]
        step = self.steps[index].to(weight.dtype).view(-1, 1, 1, 1)
        m = self._state_rows("exp_avg", index).mul_(beta1).add_(grad, alpha=1 - beta1)
        v = self._state_rows("exp_avg_sq", index).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        self._state["exp_avg"][index], self._state["exp_avg_sq"][index] = m, v
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        weight = weight * (1 - lr * decay)  # decoupled weight decay
        return weight - lr * m_hat / (v_hat.sqrt() + group["eps"])

    def _sgd(self, index, weight, grad, group, lr, decay):
        grad = grad + decay * weight
        momentum = group.get("momentum", 0.0)
        if momentum:
            first = (self.steps[index] == 1).view(-1, 1, 1, 1)
            buf = self._state_rows("momentum", index)
            buf = torch.where(first, grad, buf * momentum + grad)
            self._state["momentum"][index] = buf
            grad = buf
        return weight - lr * grad
