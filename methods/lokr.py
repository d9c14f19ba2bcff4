"""LoKr (Yeh et al., ICLR 2024, "LyCORIS"), via peft: the update is a Kronecker product,
ΔW = (α/r)·W₁ ⊗ W₂, with W₂ low-rank (B₂A₂) where that is smaller.

peft factors each layer's out = a·b and in = c·d (``factorization``, as balanced as
``decompose_factor`` allows), trains W₁ (a × c) in full and W₂ (b × d) as B₂A₂
when r < max(b, d)/2, else in full; W₂ starts at zero. Merged for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import LoKrConfig
from peft.tuners.lokr.layer import factorization

from dmlbench.method import Choice, MethodOptions, TableRow
from dmlbench.nn.model import ModelSpec
from dmlbench.nn.peft_tuning import TARGET_HELP, TARGETS, block_regex
from dmlbench.options import option
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method


@dataclass
class LoKrOptions(MethodOptions):
    rank: int = option(8, "r: rank of the second Kronecker factor")
    alpha: float = option(8.0, "α: the update is scaled by α / r")
    targets: Literal["qkv", "attn", "all"] = option("qkv", TARGET_HELP)
    decompose_factor: int = option(-1, "largest first factor of each dimension (-1: balanced)")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be ≥ 1")


@register_method("lokr")
class LoKr(PeftMethod):
    description = "LoKr (peft): Kronecker product of a small and a low-rank factor, merged."
    Options = LoKrOptions
    table_rows = (TableRow("LoKr (r8, qkv)", {"rank": 8, "targets": "qkv"}, order=44),)

    def peft_config(self, spec: ModelSpec) -> LoKrConfig:
        o = self.options
        return LoKrConfig(r=o.rank, alpha=o.alpha, decompose_factor=o.decompose_factor,
                          target_modules=block_regex(TARGETS[o.targets]))  # fmt: skip

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.rank": Choice((4, 8, 16))}

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        r = self.options.rank
        (a, b), (c, d) = (
            factorization(fan_out, self.options.decompose_factor),
            factorization(fan_in, self.options.decompose_factor),
        )
        second = r * (b + d) if r < max(b, d) / 2 else b * d  # low-rank, or full if smaller
        return a * c + second
