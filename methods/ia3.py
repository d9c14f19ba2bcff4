"""(IA)³ (Liu et al., NeurIPS 2022), via peft: learned vectors that rescale activations,
the keys and values of attention and the MLP's inner activation.

peft scales a target layer's output by l (one entry per output), or, for the
layers named feed-forward, its input. ``targets=paper`` is the paper's choice on
a timm ViT: the fused ``attn.qkv`` (so the queries are scaled too: timm fuses
them with the keys and values, one more vector of D per block than the paper's,
see docs/fidelity.md) and the input of ``mlp.fc2`` (the MLP's inner activation);
``all`` also scales the outputs of ``attn.proj`` and ``mlp.fc1``. Every l starts
at 1 (the pretrained model); merged for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from peft import IA3Config

from dmlbench.method import MethodOptions, TableRow
from dmlbench.nn.model import ModelSpec
from dmlbench.nn.peft_tuning import block_regex
from dmlbench.options import option
from dmlbench.peft_method import PeftMethod
from dmlbench.registry import register_method

IA3_TARGETS = {
    "paper": ("attn.qkv", "mlp.fc2"),
    "all": ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
}
FEEDFORWARD = ("mlp.fc2",)  # scaled at its input: the MLP's 4D-wide inner activation


@dataclass
class IA3Options(MethodOptions):
    targets: Literal["paper", "all"] = option(
        "paper", "paper: qkv's outputs and the MLP's inner activation; all: also attn.proj, fc1"
    )


@register_method("ia3")
class IA3(PeftMethod):
    description = "(IA)³ (peft): learned rescaling of keys, values and MLP activations, merged."
    Options = IA3Options
    table_rows = (TableRow("(IA)³", {"targets": "paper"}, order=42),)

    def peft_config(self, spec: ModelSpec) -> IA3Config:
        return IA3Config(target_modules=block_regex(self.adapted_paths()),
                         feedforward_modules=block_regex(FEEDFORWARD))  # fmt: skip

    def adapted_paths(self) -> tuple[str, ...]:
        return IA3_TARGETS[self.options.targets]

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        return fan_in if path in FEEDFORWARD else fan_out  # one scale per input or output
