"""BitFit (Ben Zaken et al. 2022): a linear probe that also tunes every backbone bias."""

from dmlbench.method import Method, PaperNumbers, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.registry import register_method


@register_method("bitfit")
class BitFit(Method):
    description = "BitFit: frozen backbone except its biases; head and proxies train."

    table_rows = (
        TableRow("BitFit", {}, PaperNumbers("0.26M", 0.86, "4.4G", 73.3, 85.7, 51.3), order=2),
    )

    def attach(self, model: EmbeddingModel) -> None:
        self.freeze(model.backbone)
        for p in model.pretrained_biases().values():
            p.requires_grad_(True)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        return spec.head_params + spec.proxy_params + spec.backbone_bias_params

    def bias_formula(self, spec: ModelSpec) -> int:
        return 0  # BitFit is the bias tuning
