"""Linear probe: the backbone is frozen; only the embedding head and proxies train."""

from dmlbench.backbone import EmbeddingModel, ModelSpec
from dmlbench.method import Method
from dmlbench.registry import register_method


@register_method("linear-probe")
class LinearProbe(Method):
    description = "Linear probe: frozen backbone; the head (LayerNorm + Linear) and proxies train."

    def attach(self, model: EmbeddingModel) -> None:
        self.freeze(model.backbone)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def tunable_formula(self, spec: ModelSpec) -> int:
        return spec.head_params + spec.proxy_params + self.bias_formula(spec)
