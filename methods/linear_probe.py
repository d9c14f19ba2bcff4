"""Linear probe: the backbone is frozen; only the embedding head and proxies train."""

from dmlbench.method import Method, PaperNumbers, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.registry import register_method


@register_method("linear-probe")
class LinearProbe(Method):
    description = "Linear probe: frozen backbone; the head (LayerNorm + Linear) and proxies train."

    table_rows = (
        TableRow(
            "Linear probe", {}, PaperNumbers("0.19M", 0.63, "1.7G", 28.3, 84.9, 48.1), order=1
        ),
    )

    def attach(self, model: EmbeddingModel) -> None:
        self.freeze(model.backbone)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        return spec.head_params + spec.proxy_params + self.bias_formula(spec)
