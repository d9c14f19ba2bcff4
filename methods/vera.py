"""VeRA (Kopiczko et al., ICLR 2024), via peft: one pair of frozen random matrices A
(r × in) and B (out × r) shared by every adapted layer, and per layer two trained
scaling vectors, ΔW = Λ_b · B · Λ_d · A.

Only λ_d (r) and λ_b (out) train, so the count is tiny whatever the rank; A and B
are buffers drawn from a fixed seed (peft's ``projection_prng_key``), sized for
the largest adapted layer. λ_b starts at zero (the update starts at zero) and λ_d
at ``d_initial``, as in the paper. Merged for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import VeraConfig
from peft.tuners.vera import VeraModel

from dmlbench.method import Choice, MethodOptions, TableRow
from dmlbench.nn.model import ModelSpec
from dmlbench.nn.peft_tuning import TARGET_HELP, TARGETS, block_regex
from dmlbench.options import option
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method


@dataclass
class VeRAOptions(MethodOptions):
    rank: int = option(256, "r: rank of the shared random matrices")
    targets: Literal["qkv", "attn", "all"] = option("qkv", TARGET_HELP)
    d_initial: float = option(0.1, "λ_d's starting value")
    dropout: float = option(0.0, "dropout on the VeRA branch's input")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be ≥ 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")


@register_method("vera")
class VeRA(PeftMethod):
    description = "VeRA (peft): shared frozen random low-rank matrices, trained scalings, merged."
    Options = VeRAOptions
    table_rows = (TableRow("VeRA (r256, all)", {"rank": 256, "targets": "all"}, order=41),)
    tuner = VeraModel  # the random matrices are shared by all layers, held by the tuner

    def peft_config(self, spec: ModelSpec) -> VeraConfig:
        o = self.options
        return VeraConfig(r=o.rank, target_modules=block_regex(TARGETS[o.targets]),
                          d_initial=o.d_initial, vera_dropout=o.dropout,
                          save_projection=True)  # fmt: skip

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.rank": Choice((64, 128, 256))}

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        return self.options.rank + fan_out  # the scalings d (r) and b (out)
