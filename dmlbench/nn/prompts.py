"""Deep visual prompts (VPT-deep, Jia et al. 2022) inserted into a timm ViT by hooks.

Before each prompted block, its prompt tokens go right after the prefix
tokens (CLS, registers), replacing the previous block's prompt outputs, so
each block sees its own prompts and the outputs at prompt positions are
discarded. They get no positional embedding. Where the VPTSP reference code
puts them (before the CLS token) gives the same result: a ViT block treats
tokens as a set (positions are added before the first block), which a test
checks. After the last prompted block the prompt outputs are dropped, as the
VPTSP reference does (``carry=True`` keeps them flowing through the later
blocks, as the VPT authors' code does; with prompts in every block the two
are the same).

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

# layer index, batch size → that block's prompts, (N, D) or (B, N, D) (N may be
# 0), or None: no prompts in this block.
PromptSource = Callable[[int, int], torch.Tensor | None]

PROMPT_INITS = ("xavier-normal", "vpt-uniform", "normal", "zeros")


def xavier_normal_std(rows: int, tokens: int, dim: int) -> float:
    """The std of ``nn.init.xavier_normal_`` on a (rows, tokens, dim) tensor, the shape
    the VPTSP reference creates per block: (1, N, D) shared, (C, N_c, D) per class.
    torch reads fan_in = tokens·dim and fan_out = rows·dim off that shape, so the
    class prompts start smaller the more classes there are."""
    return math.sqrt(2.0 / ((tokens + rows) * dim))


def init_prompts(
    tokens: torch.Tensor, how: str, patch_size: int, rows: int = 1, fan_tokens: int | None = None
) -> None:
    """Initialise ``tokens`` (…, N, D) in place.

    ``xavier-normal``: the VPTSP reference (normal, std :func:`xavier_normal_std`
    with ``rows`` = 1 for shared prompts, C for class prompts, and ``fan_tokens``
    the untapered N the reference creates); ``vpt-uniform``:
    the VPT paper's uniform ±√(6 / (3·p² + D)); ``normal``: std 0.02; ``zeros``.
    The loss is invariant to a prompt's scale (prompts reach other tokens only
    through LayerNorm), so the init norm sets the prompts' effective step size.
    """
    n, d = fan_tokens or tokens.shape[-2], tokens.shape[-1]
    with torch.no_grad():
        if how == "xavier-normal":
            tokens.normal_(std=xavier_normal_std(rows, n, d))
        elif how == "vpt-uniform":
            bound = math.sqrt(6.0 / (3 * patch_size**2 + d))
            tokens.uniform_(-bound, bound)
        elif how == "normal":
            tokens.normal_(std=0.02)
        elif how == "zeros":
            tokens.zero_()
        else:
            raise ValueError(f"prompt init must be one of {', '.join(PROMPT_INITS)}, not {how!r}")


def tapered_counts(tokens: int, layers: int, taper: int) -> list[int]:
    """Prompt tokens per block: N, N − taper, N − 2·taper, … (never below 0), the
    reference's ``prompt_block_step`` (Cars, SOP configs)."""
    return [max(tokens - i * taper, 0) for i in range(layers)]


class PromptInserter:
    """Puts prompt tokens into the blocks of a timm ViT, as its ``source`` says."""

    def __init__(self, backbone: nn.Module, layers: int, carry: bool = False):
        blocks = getattr(backbone, "blocks", None)
        if blocks is None or not hasattr(backbone, "num_prefix_tokens"):
            raise ValueError(f"{type(backbone).__name__} is not a timm ViT with .blocks")
        if not 1 <= layers <= len(blocks):
            raise ValueError(f"layers={layers} must be between 1 and the depth {len(blocks)}")
        self.layers = layers
        self.carry = carry
        self.prefix = backbone.num_prefix_tokens
        self.patches = backbone.patch_embed.num_patches
        self.source: PromptSource | None = None
        # Without carry, the block after the last prompted one drops the prompts.
        hooked = layers if carry else min(layers + 1, len(blocks))
        self.handles = [blocks[i].register_forward_pre_hook(self._hook(i)) for i in range(hooked)]

    @contextmanager
    def use(self, source: PromptSource | None) -> Iterator[None]:
        """Run forwards with another prompt source (None: no prompts at all)."""
        saved, self.source = self.source, source
        try:
            yield
        finally:
            self.source = saved

    def _hook(self, layer: int):
        def insert(block: nn.Module, args: tuple) -> tuple | None:
            x, *rest = args
            if self.source is None:
                return None
            # The prompts already in the sequence are read off its length, not
            # kept as state: activation checkpointing re-runs a block's hook
            # during backward, possibly after another pass with other prompts.
            inserted = x.shape[1] - self.prefix - self.patches
            prompts = self.source(layer, x.shape[0]) if layer < self.layers else None
            if prompts is None:
                if self.carry or inserted == 0:
                    return None
                prompts = x.new_zeros(x.shape[0], 0, x.shape[2])  # drop the earlier outputs
            if prompts.dim() == 2:
                prompts = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)
            after = self.prefix + inserted
            x = torch.cat([x[:, : self.prefix], prompts.to(x.dtype), x[:, after:]], dim=1)
            return (x, *rest)

        return insert

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class DeepPrompts(nn.Module):
    """Learnable prompt tokens for the first L blocks; a :data:`PromptSource`.

    Stored as L × N × D; with ``taper`` > 0 block i uses only its first
    N − i·taper tokens (the rest never train, and are not counted).
    """

    def __init__(
        self,
        layers: int,
        tokens: int,
        dim: int,
        init: str,
        patch_size: int,
        dropout: float,
        taper: int = 0,
    ):
        super().__init__()
        self.counts = tapered_counts(tokens, layers, taper)
        self.tokens = nn.ParameterList(
            [nn.Parameter(torch.empty(n, dim)) for n in self.counts if n > 0]
        )
        for block_tokens in self.tokens:
            init_prompts(block_tokens, init, patch_size, fan_tokens=tokens)
        self.dropout = nn.Dropout(dropout)

    def forward(self, layer: int, batch: int) -> torch.Tensor | None:
        if layer >= len(self.counts) or self.counts[layer] == 0:
            return None
        return self.dropout(self.tokens[layer])

    @staticmethod
    def parameter_count(layers: int, tokens: int, dim: int, taper: int = 0) -> int:
        return sum(tapered_counts(tokens, layers, taper)) * dim
