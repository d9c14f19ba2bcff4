"""FourierFT (Gao et al., ICML 2024), via peft: the update ΔW is the inverse 2-D Fourier
transform of a sparse spectrum, n learned coefficients at fixed random
frequencies (drawn from ``random_loc_seed``), scaled by ``scaling``.

peft's default starts the coefficients from a standard normal (``init_weights``
false), as the paper does, so training does not start from the pretrained
model exactly; ``zero_init`` starts them at zero. Merged for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import FourierFTConfig

from dmlbench.method import Choice, MethodOptions, TableRow
from dmlbench.nn.model import ModelSpec
from dmlbench.nn.peft_tuning import TARGET_HELP, TARGETS, block_regex
from dmlbench.options import option
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method


@dataclass
class FourierFTOptions(MethodOptions):
    frequencies: int = option(1000, "n: learned spectral coefficients per layer")
    scaling: float = option(150.0, "scale of the update (the paper's α)")
    targets: Literal["qkv", "attn", "all"] = option("qkv", TARGET_HELP)
    zero_init: bool = option(False, "start the coefficients at zero (peft's init_weights)")

    def __post_init__(self):
        if self.frequencies < 1:
            raise ValueError(f"frequencies={self.frequencies} must be ≥ 1")


@register_method("fourierft")
class FourierFT(PeftMethod):
    description = "FourierFT (peft): sparse learned spectrum of the weight update, merged."
    Options = FourierFTOptions
    table_rows = (TableRow("FourierFT (n1000, qkv)", {"frequencies": 1000}, order=46),)

    def peft_config(self, spec: ModelSpec) -> FourierFTConfig:
        o = self.options
        smallest = min(i * out for block in spec.block_linears for _, i, out in block)
        if o.frequencies > smallest:
            raise ValueError(f"frequencies={o.frequencies} exceeds a layer's {smallest} weights")
        return FourierFTConfig(n_frequency=o.frequencies, scaling=o.scaling,
                               init_weights=o.zero_init,
                               target_modules=block_regex(TARGETS[o.targets]))  # fmt: skip

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.frequencies": Choice((500, 1000, 3000))}

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        return self.options.frequencies  # one learned coefficient per frequency
