"""Partial fine-tuning: the last k blocks (and the final norm) train, the rest is frozen.

The classic cheap baseline of the VPT paper's Table 1 ("Partial-k"). Nothing
before the first trained block has a parameter that trains, so autograd
records nothing there: the frozen blocks run as if under ``no_grad`` and keep
no activations.
"""

from __future__ import annotations

from dataclasses import dataclass

from dmlbench.method import Choice, Method, MethodOptions, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.options import option
from dmlbench.registry import register_method


@dataclass
class PartialOptions(MethodOptions):
    blocks: int = option(1, "k: how many of the last blocks train")

    def __post_init__(self):
        if self.blocks < 1:
            raise ValueError(f"blocks={self.blocks} must be ≥ 1")


@register_method("partial-ft")
class PartialFineTuning(Method):
    description = "Partial fine-tuning: the last k blocks and the final norm train; head too."
    Options = PartialOptions
    table_rows = (
        TableRow("Partial-1", {"blocks": 1}, order=30),
        TableRow("Partial-2", {"blocks": 2}, order=31),
    )

    def _blocks(self, spec: ModelSpec) -> int:
        if self.options.blocks > spec.depth:
            raise ValueError(
                f"blocks={self.options.blocks} exceeds the backbone depth {spec.depth}"
            )
        return self.options.blocks

    def attach(self, model: EmbeddingModel) -> None:
        k = self._blocks(model.spec)
        self.freeze(model.backbone)
        for block in list(model.backbone.blocks)[-k:]:
            self.unfreeze(block)
        self.unfreeze(model.backbone.norm)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    @classmethod
    def search_space(cls) -> dict:
        return {**super().search_space(), "opt.blocks": Choice((1, 2, 4))}

    def tunable_formula(self, spec: ModelSpec) -> int:
        # a ViT block: its linears (weights and biases, from ModelSpec) and 2 LayerNorms
        # (2D each); then the final norm (2D)
        last = spec.block_linears[-self._blocks(spec) :]
        linears = sum(i * o + o for block in last for _, i, o in block)
        norms = 2 * 2 * spec.feature_dim * len(last) + 2 * spec.feature_dim
        return spec.head_params + spec.proxy_params + linears + norms + self.bias_formula(spec)

    def bias_formula(self, spec: ModelSpec) -> int:
        """(B): every backbone bias, less those of the trained blocks and final norm."""
        if not self.options.bias:
            return 0
        last = spec.block_linears[-self._blocks(spec) :]
        linear_biases = sum(o for block in last for _, _, o in block)
        norm_biases = 2 * spec.feature_dim * len(last) + spec.feature_dim
        return spec.backbone_bias_params - linear_biases - norm_biases
