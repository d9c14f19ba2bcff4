"""Full fine-tuning: every parameter of backbone, head and proxies trains."""

from dmlbench.method import Method, PaperNumbers, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.registry import register_method


@register_method("full-ft")
class FullFineTuning(Method):
    description = "Full fine-tuning: backbone, head and proxies all train (the reference)."

    table_rows = (
        TableRow(
            "Full fine-tuning", {}, PaperNumbers("30.2M", 100, "6.0G", 100, 85.5, 51.1), order=0
        ),
    )

    def attach(self, model: EmbeddingModel) -> None:
        self.unfreeze(model)

    def tunable_formula(self, spec: ModelSpec) -> int:
        return spec.backbone_params + spec.head_params + spec.proxy_params

    def bias_formula(self, spec: ModelSpec) -> int:
        return 0  # the biases train anyway
