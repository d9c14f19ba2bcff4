"""LoHa (Hyeon-Woo et al., ICLR 2022, "FedPara"; the LyCORIS adapter), via peft: the
update is a Hadamard product of two low-rank matrices, ΔW = (α/r)·(B₁A₁) ⊙ (B₂A₂),
of rank up to r² for 2r(in + out) parameters.

peft starts B₁A₁ at zero (the pretrained model). Merged for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import LoHaConfig

from dmlbench.method import Choice, Method, MethodOptions, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.nn.peft_tuning import (
    TARGET_HELP,
    TARGETS,
    attach_peft,
    block_regex,
    merged_copy,
    per_layer,
)
from dmlbench.options import option
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
class LoHa(Method):
    description = "LoHa (peft): Hadamard product of two low-rank updates, merged."
    Options = LoHaOptions
    table_rows = (TableRow("LoHa (r8, qkv)", {"rank": 8, "targets": "qkv"}, order=43),)

    def attach(self, model: EmbeddingModel) -> None:
        o = self.options
        config = LoHaConfig(r=o.rank, alpha=o.alpha, target_modules=block_regex(TARGETS[o.targets]))
        attach_peft(model, config)

    def inference_model(self, model: EmbeddingModel) -> EmbeddingModel:
        return merged_copy(model)

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.rank": Choice((4, 8, 16))}

    def tunable_formula(self, spec: ModelSpec) -> int:
        r = self.options.rank
        factors = per_layer(spec, TARGETS[self.options.targets], lambda path, i, o: 2 * r * (i + o))
        return spec.head_params + spec.proxy_params + factors + self.bias_formula(spec)
