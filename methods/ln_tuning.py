"""LayerNorm tuning (Zhao et al., ICLR 2024, "Tuning LayerNorm in attention"; peft's
``ln_tuning``): every LayerNorm's scale and shift trains, the rest of the backbone
stays frozen.

Written as flags on the existing parameters rather than through peft's
``LNTuningConfig``, which trains a copy of each norm beside a frozen original:
the same function and gradients, without a second set of norms to merge back.
Nothing to merge: inference costs what the backbone costs.
"""

from __future__ import annotations

from torch import nn

from dmlbench.method import Method, MethodOptions, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.registry import register_method


@register_method("ln-tuning")
class LayerNormTuning(Method):
    description = "LayerNorm tuning: every LayerNorm's scale and shift, head and proxies."
    Options = MethodOptions
    table_rows = (TableRow("LayerNorm tuning", {}, order=26),)

    def attach(self, model: EmbeddingModel) -> None:
        self.freeze(model.backbone)
        for module in model.backbone.modules():
            if isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                self.unfreeze(module)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        return spec.head_params + spec.proxy_params + spec.norm_params + self.bias_formula(spec)

    def bias_formula(self, spec: ModelSpec) -> int:
        """The bias option adds the biases that are not already the norms' shifts."""
        if not getattr(self.options, "bias", False):
            return 0
        return spec.backbone_bias_params - sum(spec.norm_widths)
