"""AdaptFormer-style parallel bottleneck adapters for timm ViT blocks.

Why by hand: HF peft has no AdaptFormer adapter for timm blocks (its adapter
methods target transformers' modules), and the module is five lines. The
block keeps its own parameter names; the adapter is added as
``block.adapter`` and the block's forward becomes

    x ← x + Attn(LN₁(x));   x ← x + MLP(LN₂(x)) + s · Up(ReLU(Down(x)))
"""

from __future__ import annotations

import types

import torch
from timm.models.vision_transformer import Block
from torch import nn


class BottleneckAdapter(nn.Module):
    """Down (D→d) → ReLU → Up (d→D), times a scale; Up starts at zero so the
    adapted model starts as the pretrained one."""

    def __init__(self, dim: int, bottleneck: int, scale: float = 1.0, up_init: str = "zero"):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        nn.init.kaiming_uniform_(self.down.weight, a=5**0.5)
        nn.init.zeros_(self.down.bias)
        if up_init == "zero":
            nn.init.zeros_(self.up.weight)
        else:  # "normal": a small non-zero start (AdaptFormer's ablation; tests use it too)
            nn.init.normal_(self.up.weight, std=0.02)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(torch.relu(self.down(x)))

    @staticmethod
    def parameter_count(dim: int, bottleneck: int) -> int:
        return dim * bottleneck + bottleneck + bottleneck * dim + dim


def _adapted_forward(
    self: Block,
    x: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    # timm's Block.forward, with the adapter added beside the MLP branch.
    attn = self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)
    x = x + self.drop_path1(self.ls1(attn))
    return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x)))) + self.adapter(x)


def add_parallel_adapter(block: nn.Module, adapter: BottleneckAdapter) -> None:
    """Give a timm ViT ``Block`` a parallel adapter (other block types are refused)."""
    if type(block) is not Block:
        raise ValueError(
            f"the adapter supports timm's vision_transformer.Block, not {type(block).__name__}"
        )
    block.adapter = adapter
    block.forward = types.MethodType(_adapted_forward, block)
