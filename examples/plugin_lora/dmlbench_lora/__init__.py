"""LoRA (Hu et al. 2022) as a dmlbench method plugin, using Hugging Face peft.

peft's ``inject_adapter_in_model`` works on any torch module, timm ViTs
included: it wraps the named ``nn.Linear`` layers with low-rank updates
W + (α/r)·B·A (B starts at zero) and freezes the rest of what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import LoraConfig, inject_adapter_in_model

from dmlbench.method import Method, MethodOptions
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.options import option
from dmlbench.registry import register_method

# Linear layers of a timm ViT block, as (module name, in/out widths in units of D).
TARGETS = {"qkv": [("qkv", 1, 3)], "attn": [("qkv", 1, 3), ("proj", 1, 1)]}


@dataclass
class LoRAOptions(MethodOptions):
    rank: int = option(8, "r: rank of the update")
    alpha: float = option(16.0, "α: the update is scaled by α / r")
    targets: Literal["qkv", "attn"] = option("qkv", "qkv, or attn = qkv and the output proj")
    dropout: float = option(0.0, "dropout on the LoRA branch's input")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be ≥ 1")


@register_method("lora")
class LoRA(Method):
    description = "LoRA (peft): frozen backbone, low-rank updates of the attention weights."
    Options = LoRAOptions

    def attach(self, model: EmbeddingModel) -> None:
        o = self.options
        layers = "|".join(name for name, _, _ in TARGETS[o.targets])
        config = LoraConfig(
            r=o.rank,
            lora_alpha=o.alpha,
            lora_dropout=o.dropout,
            # A regex: the blocks' attention layers only (not e.g. patch_embed.proj).
            target_modules=rf".*blocks\.\d+\.attn\.({layers})",
        )
        self.freeze(model.backbone)
        inject_adapter_in_model(config, model.backbone)  # LoRA A, B train; the rest is frozen
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        d, r = spec.feature_dim, self.options.rank
        per_block = sum(r * (i * d + o * d) for _, i, o in TARGETS[self.options.targets])
        lora = spec.depth * per_block
        return spec.head_params + spec.proxy_params + lora + self.bias_formula(spec)
