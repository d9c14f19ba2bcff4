"""LoHa (Hyeon-Woo et al., ICLR 2022, "FedPara"; the LyCORIS adapter), via peft: the
update is a Hadamard product of two low-rank matrices, ΔW = (α/r)·(B₁A₁) ⊙ (B₂A₂),
of rank up to r² for 2r(in + out) parameters.

peft starts B₁A₁ at zero (the pretrained model). Merged for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import LoHaConfig

from dmlbench.method import Choice, MethodOptions, TableRow
from dmlbench.nn.model import ModelSpec
from dmlbench.nn.peft_tuning import TARGET_HELP, TARGETS, block_regex
from dmlbench.options import option
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method


@dataclass
class LoHaOptions(MethodOptions):
    rank: int = option(8, "r: rank of each Hadamard factor")
    alpha: float = option(8.0, "α: the update is scaled by α / r")
    targets: Literal["qkv", "attn", "all"] = option("qkv", TARGET_HELP)

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be ≥ 1")


@register_method("loha")
class LoHa(PeftMethod):
    description = "LoHa (peft): Hadamard product of two low-rank updates, merged."
    Options = LoHaOptions
    table_rows = (TableRow("LoHa (r8, qkv)", {"rank": 8, "targets": "qkv"}, order=43),)

    def peft_config(self, spec: ModelSpec) -> LoHaConfig:
        o = self.options
        return LoHaConfig(r=o.rank, alpha=o.alpha, target_modules=block_regex(TARGETS[o.targets]))

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.rank": Choice((4, 8, 16))}

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        return 2 * self.options.rank * (fan_in + fan_out)
