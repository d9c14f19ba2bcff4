"""VPT-deep (Jia et al. 2022): N learnable prompt tokens in each of the first L blocks.

Defaults follow the VPTSP authors' code, whose VPT rows the paper reports:
xavier-normal init, prompt outputs dropped after the last prompted block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dmlbench.method import Choice, Method, MethodOptions, PaperNumbers, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.nn.prompts import DeepPrompts, PromptInserter
from dmlbench.options import option
from dmlbench.registry import register_method

PromptInit = Literal["xavier-normal", "vpt-uniform", "normal", "zeros"]


@dataclass
class VPTOptions(MethodOptions):
    layers: int | None = option(
        None, "L: blocks that get prompts, counted from the first (default: every block)"
    )
    prompts: int = option(10, "N: prompt tokens per prompted block")
    taper: int = option(0, "block i gets N - i*taper tokens (the reference's prompt_block_step)")
    init: PromptInit = option(
        "xavier-normal", "prompt init: the VPTSP reference's, or the VPT paper's vpt-uniform"
    )
    dropout: float = option(0.0, "dropout on the prompt tokens while training")
    carry: bool = option(
        False, "prompt outputs flow on after the last prompted block (VPT's code; VPTSP's drops)"
    )

    def __post_init__(self):
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"layers={self.layers} must be ≥ 1")
        if self.prompts < 1:
            raise ValueError(f"prompts={self.prompts} must be ≥ 1")
        if self.taper < 0:
            raise ValueError(f"taper={self.taper} must be ≥ 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")


def prompted_depth(layers: int | None, spec: ModelSpec, name: str = "layers") -> int:
    """L, defaulting to every block, checked against the backbone's depth."""
    value = layers if layers is not None else spec.depth
    if value > spec.depth:
        raise ValueError(f"{name}={value} exceeds the backbone depth {spec.depth}")
    return value


def shared_prompts(o: VPTOptions, layers: int, spec: ModelSpec, patch: int) -> DeepPrompts:
    """The prompts every image gets, from the options VPT and VPTSP share."""
    return DeepPrompts(layers, o.prompts, spec.feature_dim, o.init, patch, o.dropout, o.taper)


@register_method("vpt")
class VPT(Method):
    description = "VPT-deep: frozen backbone, N prompt tokens in the first L blocks; head trains."
    Options = VPTOptions

    @classmethod
    def knob_space(cls) -> dict:
        """Prompt tokens per block and prompted blocks (None: every block)."""
        return {"opt.prompts": Choice((5, 10, 20)), "opt.layers": Choice((2, 4, None))}

    table_rows = (
        TableRow(
            "VPT (L12, N10)",
            {"layers": 12, "prompts": 10},
            PaperNumbers("0.23M", 0.76, "2.2G", 36.6, 85.1, 51.2),
            order=5,
        ),
        TableRow(
            "VPT (B) (L12, N10)",
            {"layers": 12, "prompts": 10, "bias": True},
            PaperNumbers("0.30M", 0.99, "2.2G", 36.6, 85.7, 51.6),
            order=6,
        ),
        # VPT-shallow (the VPT paper's other variant): prompts enter before the first
        # block and their outputs carry through every later block.
        TableRow("VPT-shallow (N10)", {"layers": 1, "prompts": 10, "carry": True}, order=11),
        TableRow(
            "VPT-shallow (B) (N10)",
            {"layers": 1, "prompts": 10, "carry": True, "bias": True},
            order=12,
        ),
    )

    def attach(self, model: EmbeddingModel) -> None:
        o, spec = self.options, model.spec
        layers = prompted_depth(o.layers, spec)
        self.freeze(model.backbone)
        patch = model.backbone.patch_embed.patch_size[0]
        prompts = shared_prompts(o, layers, spec, patch)
        model.backbone.vpt_prompts = prompts  # inside the backbone: its forward needs autograd
        inserter = PromptInserter(model.backbone, layers, carry=o.carry)
        inserter.source = prompts
        model.backbone.vpt_inserter = inserter  # a plain attribute: kept alive with the model
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        o = self.options
        layers = prompted_depth(o.layers, spec)
        prompts = DeepPrompts.parameter_count(layers, o.prompts, spec.feature_dim, o.taper)
        return spec.head_params + spec.proxy_params + prompts + self.bias_formula(spec)
