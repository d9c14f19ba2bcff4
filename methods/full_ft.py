"""Full fine-tuning: every parameter of backbone, head and proxies trains."""

from dmlbench.backbone import EmbeddingModel
from dmlbench.method import Method
from dmlbench.registry import register_method


@register_method("full-ft")
class FullFineTuning(Method):
    description = "Full fine-tuning: backbone, head and proxies all train (the reference)."

    def attach(self, model: EmbeddingModel) -> None:
        self.unfreeze(model)
