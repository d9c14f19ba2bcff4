"""What a trained method *is*: the state of its tunable parameters.

A PEFT run's result is small (a head, proxies, prompts or adapters), while the
backbone is the public pretrained one; saving only the tunable tensors keeps
checkpoints in kilobytes and makes "what the method changed" explicit.
Loading checks that exactly the tunable tensors arrive.
"""

from __future__ import annotations

import torch
from torch import nn


def tunable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_tunable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load into a model prepared by the same method with the same options."""
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"tunable state does not fit this model: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]} (same method and options?)"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
