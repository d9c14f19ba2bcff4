"""LoRA (Hu et al. 2022) on a timm ViT's attention (and optionally MLP) linears, via peft.

peft's ``inject_adapter_in_model`` wraps the chosen ``nn.Linear`` layers with
low-rank updates W + (α/r)·B·A (B starts at zero, so training starts from the
pretrained model). For evaluation the updates are merged into a copy of the
weights, so inference costs exactly what the backbone costs (the trained model
itself is never merged: merging and unmerging in place would not give the
frozen weights back bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import LoraConfig

from dmlbench.method import Choice, MethodOptions, TableRow
from dmlbench.nn.model import ModelSpec
from dmlbench.nn.peft_tuning import TARGET_HELP, TARGETS, block_regex
from dmlbench.options import option
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method


@dataclass
class LoRAOptions(MethodOptions):
    rank: int = option(8, "r: rank of the update")
    alpha: float = option(16.0, "α: the update is scaled by α / r")
    targets: Literal["qkv", "attn", "all"] = option("qkv", TARGET_HELP)
    dropout: float = option(0.0, "dropout on the LoRA branch's input")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be ≥ 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")


@register_method("lora")
class LoRA(PeftMethod):
    description = "LoRA (peft): frozen backbone, low-rank updates of its linear layers, merged."
    Options = LoRAOptions
    table_rows = (
        TableRow("LoRA (r8, qkv)", {"rank": 8, "targets": "qkv"}, order=20),
        TableRow("LoRA (r8, all)", {"rank": 8, "targets": "all"}, order=21),
    )

    use_dora = False  # DoRA (dora.py) is this with peft's weight decomposition

    def peft_config(self, spec: ModelSpec) -> LoraConfig:
        o = self.options  # A, B (and DoRA's magnitudes) train; the rest is frozen
        return LoraConfig(r=o.rank, lora_alpha=o.alpha, lora_dropout=o.dropout,
                          target_modules=block_regex(TARGETS[o.targets]),
                          use_dora=self.use_dora)  # fmt: skip

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.rank": Choice((4, 8, 16))}

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        magnitudes = fan_out if self.use_dora else 0  # DoRA: one magnitude per output
        return self.options.rank * (fan_in + fan_out) + magnitudes
