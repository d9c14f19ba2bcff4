"""VPT-deep (Jia et al. 2022): N learnable prompt tokens in each of the first L blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dmlbench.backbone import EmbeddingModel, ModelSpec
from dmlbench.method import Method, MethodOptions
from dmlbench.options import option
from dmlbench.prompts import DeepPrompts, PromptInserter
from dmlbench.registry import register_method


@dataclass
class VPTOptions(MethodOptions):
    layers: int | None = option(
        None, "L: blocks that get prompts, counted from the first (default: every block)"
    )
    prompts: int = option(10, "N: prompt tokens per prompted block")
    init: Literal["xavier", "normal", "zeros"] = option("xavier", "prompt initialisation")
    dropout: float = option(0.0, "dropout on the prompt tokens while training")

    def __post_init__(self):
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"layers={self.layers} must be ≥ 1")
        if self.prompts < 1:
            raise ValueError(f"prompts={self.prompts} must be ≥ 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")


@register_method("vpt")
class VPT(Method):
    description = "VPT-deep: frozen backbone, N prompt tokens in the first L blocks; head trains."
    Options = VPTOptions

    def layers(self, spec: ModelSpec) -> int:
        layers = self.options.layers if self.options.layers is not None else spec.depth
        if layers > spec.depth:
            raise ValueError(f"layers={layers} exceeds the backbone depth {spec.depth}")
        return layers

    def attach(self, model: EmbeddingModel) -> None:
        o, spec = self.options, model.spec
        layers = self.layers(spec)
        self.freeze(model.backbone)
        patch = model.backbone.patch_embed.patch_size[0]
        prompts = DeepPrompts(layers, o.prompts, spec.feature_dim, o.init, patch, o.dropout)
        model.backbone.vpt_prompts = prompts  # inside the backbone: its forward needs autograd
        inserter = PromptInserter(model.backbone, layers)
        inserter.source = prompts
        model.backbone.vpt_inserter = inserter  # a plain attribute: kept alive with the model
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        o = self.options
        prompts = self.layers(spec) * o.prompts * spec.feature_dim
        return spec.head_params + spec.proxy_params + prompts + self.bias_formula(spec)
