"""OFT (Qiu et al., NeurIPS 2023), via peft: each adapted layer's weight is rotated by a
learned block-diagonal orthogonal matrix, W' = W·R, which keeps the angles between
its neurons (the "hyperspherical energy") of the pretrained weight.

peft parametrises each b × b block of R by its b(b−1)/2 skew-symmetric entries
S (the Cayley transform), in/b blocks per layer (b made to divide the layer's input
width as peft adjusts it); R starts at I. Merged for evaluation. By default peft
expands the transform's inverse in a 5-term Neumann series, which is orthogonal only
while ‖S‖ ≪ 1: trained on glyphs at the tuned rate, R's blocks end ‖S‖₂ ≈ 0.8 and
‖RᵀR − I‖₂ ≈ 0.6 (benchmarks/oft_orthogonality.py, docs/fidelity.md). ``cayley=exact``
solves the transform instead, as the OFT paper does: R stays orthogonal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import OFTConfig
from peft.tuners.oft.layer import OFTLayer

from dmlbench.method import Choice, MethodOptions, TableRow
from dmlbench.nn.model import ModelSpec
from dmlbench.nn.peft_tuning import TARGET_HELP, TARGETS, block_regex
from dmlbench.options import option
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method


@dataclass
class OFTOptions(MethodOptions):
    block_size: int = option(32, "b: width of each orthogonal block of R")
    targets: Literal["qkv", "attn", "all"] = option("qkv", TARGET_HELP)
    cayley: Literal["neumann", "exact"] = option(
        "neumann", "R from S: peft's default series (approximately orthogonal) or solved exactly"
    )

    def __post_init__(self):
        if self.block_size < 2:
            raise ValueError(f"block_size={self.block_size} must be ≥ 2")


def adjusted_block(in_features: int, block: int) -> int:
    """The block size peft uses for a layer of this input width (its own rule)."""
    if in_features % block == 0 and block <= in_features:
        return block
    return OFTLayer.adjust_oft_parameters(None, in_features, block)


@register_method("oft")
class OFT(PeftMethod):
    description = "OFT (peft): block-diagonal orthogonal rotation of the weights, merged."
    Options = OFTOptions
    table_rows = (TableRow("OFT (b32, qkv)", {"block_size": 32, "targets": "qkv"}, order=45),)

    def peft_config(self, spec: ModelSpec) -> OFTConfig:
        o = self.options
        return OFTConfig(r=0, oft_block_size=o.block_size,
                         target_modules=block_regex(TARGETS[o.targets]),
                         use_cayley_neumann=o.cayley == "neumann")  # fmt: skip

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.block_size": Choice((16, 32, 64))}

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        b = adjusted_block(fan_in, self.options.block_size)
        return (fan_in // b) * (b * (b - 1) // 2)  # a skew-symmetric b × b per block
