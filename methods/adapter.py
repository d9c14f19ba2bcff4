"""Adapter (AdaptFormer, Chen et al. 2022): parallel bottleneck adapters in the last L blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dmlbench.method import Method, MethodOptions, PaperNumbers, TableRow
from dmlbench.nn.adapters import BottleneckAdapter, add_parallel_adapter
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.options import option
from dmlbench.registry import register_method

PAPER_LAYERS = 7


@dataclass
class AdapterOptions(MethodOptions):
    layers: int | None = option(
        None,
        "L: how many of the last blocks get an adapter "
        "(default: 7, the paper's row; every block if the backbone has fewer)",
    )
    bottleneck: int = option(256, "d: the adapter's hidden width")
    scale: float = option(1.0, "s: the adapter branch's scale")
    up_init: Literal["zero", "normal"] = option(
        "zero", "Up projection init; zero starts as the pretrained model"
    )

    def __post_init__(self):
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"layers={self.layers} must be ≥ 1")
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck={self.bottleneck} must be ≥ 1")


@register_method("adapter")
class Adapter(Method):
    description = (
        "Adapter (AdaptFormer): frozen backbone, bottleneck adapters in the last L blocks."
    )
    Options = AdapterOptions

    table_rows = (
        TableRow(
            "Adapter (L7, d256)",
            {"layers": 7, "bottleneck": 256},
            PaperNumbers("1.57M", 5.2, "1.9G", 31.7, 83.1, 46.4),
            order=3,
        ),
        TableRow(
            "Adapter (B) (L1, d256)",
            {"layers": 1, "bottleneck": 256, "bias": True},
            PaperNumbers("0.46M", 1.52, "2.4G", 40.0, 85.8, 49.7),
            order=4,
        ),
    )

    def layers(self, spec: ModelSpec) -> int:
        if self.options.layers is None:
            return min(PAPER_LAYERS, spec.depth)
        if self.options.layers > spec.depth:
            raise ValueError(
                f"layers={self.options.layers} exceeds the backbone depth {spec.depth}"
            )
        return self.options.layers

    def attach(self, model: EmbeddingModel) -> None:
        o, spec = self.options, model.spec
        layers = self.layers(spec)
        self.freeze(model.backbone)
        for block in model.backbone.blocks[spec.depth - layers :]:
            add_parallel_adapter(
                block, BottleneckAdapter(spec.feature_dim, o.bottleneck, o.scale, o.up_init)
            )
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        o = self.options
        adapters = self.layers(spec) * BottleneckAdapter.parameter_count(
            spec.feature_dim, o.bottleneck
        )
        return spec.head_params + spec.proxy_params + adapters + self.bias_formula(spec)
