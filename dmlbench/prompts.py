"""Deep visual prompts (VPT-deep, Jia et al. 2022) inserted into a timm ViT by hooks.

Before each of the first L blocks, N prompt tokens go right after the prefix
tokens (CLS, registers): inserted at block 0, *replaced* at every later
prompted block, so each layer sees its own prompts and the outputs at the
prompt positions are discarded. They get no positional embedding. With
CLS pooling the pooled feature never reads a prompt position directly.

Forward pre-hooks leave timm's forward code and parameter names untouched.
Where the prompts come from is swappable (:meth:`PromptInserter.use`), which
is what VPTSP needs: shared prompts in the sample pass, each image's class
prompts in the proxy pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

# layer index, batch size → prompts for that layer, (N, D) or (B, N, D), or
# None: no new prompts at this layer (earlier prompt outputs carry on)
PromptSource = Callable[[int, int], torch.Tensor | None]


def init_prompts(tokens: torch.Tensor, how: str, patch_size: int) -> None:
    """VPT's 'xavier': uniform ±√(6 / (3·p² + D)); 'normal': std 0.02; 'zeros'."""
    with torch.no_grad():
        if how == "xavier":
            bound = math.sqrt(6.0 / (3 * patch_size**2 + tokens.shape[-1]))
            tokens.uniform_(-bound, bound)
        elif how == "normal":
            tokens.normal_(std=0.02)
        elif how == "zeros":
            tokens.zero_()
        else:
            raise ValueError(f"prompt init must be xavier, normal or zeros, not {how!r}")


class PromptInserter:
    """Puts prompt tokens into the first ``layers`` blocks of a timm ViT."""

    def __init__(self, backbone: nn.Module, layers: int):
        blocks = getattr(backbone, "blocks", None)
        if blocks is None or not hasattr(backbone, "num_prefix_tokens"):
            raise ValueError(f"{type(backbone).__name__} is not a timm ViT with .blocks")
        if not 1 <= layers <= len(blocks):
            raise ValueError(f"layers={layers} must be between 1 and the depth {len(blocks)}")
        self.layers = layers
        self.prefix = backbone.num_prefix_tokens
        self.patches = backbone.patch_embed.num_patches
        self.source: PromptSource | None = None
        self.handles = [blocks[i].register_forward_pre_hook(self._hook(i)) for i in range(layers)]

    @contextmanager
    def use(self, source: PromptSource | None) -> Iterator[None]:
        """Run forwards with another prompt source (None: no prompts at all)."""
        saved, self.source = self.source, source
        try:
            yield
        finally:
            self.source = saved

    def _hook(self, layer: int):
        def insert(block: nn.Module, args: tuple) -> tuple:
            x, *rest = args
            if self.source is None:
                return None
            prompts = self.source(layer, x.shape[0])
            if prompts is None:
                return None
            if prompts.dim() == 2:
                prompts = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)
            # The prompts already in the sequence are read off its length, not
            # kept as state: activation checkpointing re-runs a block's hook
            # during backward, possibly after another pass with other prompts.
            inserted = x.shape[1] - self.prefix - self.patches
            after = self.prefix + inserted
            x = torch.cat([x[:, : self.prefix], prompts.to(x.dtype), x[:, after:]], dim=1)
            return (x, *rest)

        return insert

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class DeepPrompts(nn.Module):
    """L × N × D learnable prompt tokens with prompt dropout; a :data:`PromptSource`."""

    def __init__(self, layers: int, tokens: int, dim: int, init: str, patch_size: int, dropout):
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(layers, tokens, dim))
        init_prompts(self.tokens, init, patch_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, layer: int, batch: int) -> torch.Tensor:
        return self.dropout(self.tokens[layer])
