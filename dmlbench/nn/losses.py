"""Proxy-Anchor loss (Kim et al., CVPR 2020) on cosine similarity.

Own module rather than PML's ProxyAnchorLoss because the proxies must come
from outside: PML's loss owns its proxies as a parameter, while VPTSP builds
the proxies anew each step from semantic and original proxies. With the same
proxies the value equals PML's (tested).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F


def _log1p_sum_exp(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log(1 + Σ_mask exp(logits)) per column, stably (a logsumexp with a 0 term)."""
    masked = logits.masked_fill(~mask, float("-inf"))
    zeros = torch.zeros(1, logits.shape[1], dtype=logits.dtype, device=logits.device)
    return torch.logsumexp(torch.cat([zeros, masked], dim=0), dim=0)


class ProxyAnchorLoss(nn.Module):
    """Loss of a batch against C proxies; ``positive_divisor`` picks the normaliser.

    ``"present"`` (Kim et al.): the positive term is averaged over the proxies
    with positives in the batch. ``"all"`` (the VPTSP reference code): divided
    by C like the negative term.
    """

    def __init__(
        self,
        alpha: float = 32.0,
        margin: float = 0.1,
        positive_divisor: Literal["present", "all"] = "present",
    ):
        super().__init__()
        if positive_divisor not in ("present", "all"):
            raise ValueError(
                f"positive_divisor must be 'present' or 'all', not {positive_divisor!r}"
            )
        self.alpha, self.margin, self.positive_divisor = alpha, margin, positive_divisor

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor
    ) -> torch.Tensor:
        num_classes = proxies.shape[0]
        # at least float32 (half-precision logits × α = 32 overflow), never less than given
        wide = torch.promote_types(
            torch.promote_types(embeddings.dtype, proxies.dtype), torch.float32
        )
        cos = F.normalize(embeddings.to(wide), dim=1) @ F.normalize(proxies.to(wide), dim=1).T
        # B × C: is class c image i's (a comparison, where one_hot would check the values)
        positive = labels.unsqueeze(1) == torch.arange(num_classes, device=labels.device)
        pos_term = _log1p_sum_exp(-self.alpha * (cos - self.margin), positive)
        neg_term = _log1p_sum_exp(self.alpha * (cos + self.margin), ~positive)
        present = positive.any(dim=0)
        pos_divisor = present.sum() if self.positive_divisor == "present" else num_classes
        # classes without positives add log(1) = 0 (masked so no shape depends on the data)
        positive_sum = torch.where(present, pos_term, torch.zeros_like(pos_term)).sum()
        return positive_sum / pos_divisor + neg_term.sum() / num_classes
