"""LoRA (Hu et al. 2022) on a timm ViT's attention (and optionally MLP) linears, via peft.

peft's ``inject_adapter_in_model`` wraps the chosen ``nn.Linear`` layers with
low-rank updates W + (α/r)·B·A (B starts at zero, so training starts from the
pretrained model). For evaluation the updates are merged into a copy of the
weights, so inference costs exactly what the backbone costs (the trained model
itself is never merged: merging and unmerging in place would not give the
frozen weights back bit for bit).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from dmlbench.method import Choice, Method, MethodOptions, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.options import option
from dmlbench.registry import register_method

# The linear layers of a timm ViT block: (module path in the block, in and out
# widths in units of the embedding width D).
TARGETS = {
    "qkv": [("attn.qkv", 1, 3)],
    "attn": [("attn.qkv", 1, 3), ("attn.proj", 1, 1)],
    "all": [("attn.qkv", 1, 3), ("attn.proj", 1, 1), ("mlp.fc1", 1, 4), ("mlp.fc2", 4, 1)],
}


@dataclass
class LoRAOptions(MethodOptions):
    rank: int = option(8, "r: rank of the update")
    alpha: float = option(16.0, "α: the update is scaled by α / r")
    targets: Literal["qkv", "attn", "all"] = option(
        "qkv", "qkv; attn = qkv and the attention's output projection; all = also the MLP"
    )
    dropout: float = option(0.0, "dropout on the LoRA branch's input")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be ≥ 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")


@register_method("lora")
class LoRA(Method):
    description = "LoRA (peft): frozen backbone, low-rank updates of its linear layers, merged."
    Options = LoRAOptions
    table_rows = (
        TableRow("LoRA (r8, qkv)", {"rank": 8, "targets": "qkv"}, order=20),
        TableRow("LoRA (r8, all)", {"rank": 8, "targets": "all"}, order=21),
    )

    def attach(self, model: EmbeddingModel) -> None:
        o = self.options
        layers = "|".join(name.replace(".", r"\.") for name, _, _ in TARGETS[o.targets])
        config = LoraConfig(
            r=o.rank,
            lora_alpha=o.alpha,
            lora_dropout=o.dropout,
            # A regex: the blocks' layers only (not e.g. patch_embed.proj).
            target_modules=rf".*blocks\.\d+\.({layers})",
        )
        self.freeze(model.backbone)
        inject_adapter_in_model(config, model.backbone)  # A, B train; the rest is frozen
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def inference_model(self, model: EmbeddingModel) -> EmbeddingModel:
        merged = copy.deepcopy(model)
        for module in merged.modules():
            if isinstance(module, LoraLayer):
                module.merge()
        return merged

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.rank": Choice((4, 8, 16))}

    def tunable_formula(self, spec: ModelSpec) -> int:
        r, targets = self.options.rank, {path for path, _, _ in TARGETS[self.options.targets]}
        updates = sum(r * (i + o) for block in spec.block_linears
                      for path, i, o in block if path in targets)  # fmt: skip
        return spec.head_params + spec.proxy_params + updates + self.bias_formula(spec)
