"""Full fine-tuning: every parameter of backbone, head and proxies trains."""

from dmlbench.backbone import EmbeddingModel, ModelSpec
from dmlbench.method import Method
from dmlbench.registry import register_method


@register_method("full-ft")
class FullFineTuning(Method):
    description = "Full fine-tuning: backbone, head and proxies all train (the reference)."

    def attach(self, model: EmbeddingModel) -> None:
        self.unfreeze(model)

    def tunable_formula(self, spec: ModelSpec) -> int:
        return spec.backbone_params + spec.head_params + spec.proxy_params

    def bias_formula(self, spec: ModelSpec) -> int:
        return 0  # the biases train anyway
