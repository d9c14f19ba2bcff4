"""The base class of the methods built on HF peft (LoRA, DoRA, VeRA, (IA)³, LoHa, LoKr,
OFT, FourierFT): a plugin gives peft's config and one layer's count, and inherits
attaching, merging for evaluation and the tunable formula. It sits in the plugin
interface, beside :class:`dmlbench.method.Method`; what it calls on the model
(:mod:`dmlbench.nn.peft_tuning`) sits with the model.
"""

from __future__ import annotations

from typing import ClassVar

from dmlbench.method import Method
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.nn.peft_tuning import TARGETS, attach_peft, merged_copy, per_layer


class PeftMethod(Method):
    """A method whose backbone adapters peft adds. A subclass gives peft's config for its
    options (:meth:`peft_config`) and the adapter parameters of one adapted linear layer
    (:meth:`adapter_count`); attaching (:func:`attach_peft`), merging for evaluation
    (:func:`merged_copy`) and the count's head, proxies and biases are the same for all.

    ``tuner``: peft's tuner class, for adapters with state shared across layers (VeRA)."""

    tuner: ClassVar[type | None] = None

    def peft_config(self, spec: ModelSpec):
        raise NotImplementedError

    def adapted_paths(self) -> tuple[str, ...]:
        """The linear layers of every block this method adapts (default: ``targets``)."""
        return TARGETS[self.options.targets]

    def adapter_count(self, path: str, fan_in: int, fan_out: int) -> int:
        """Parameters peft adds to one adapted ``fan_in → fan_out`` layer at ``path``."""
        raise NotImplementedError

    def attach(self, model: EmbeddingModel) -> None:
        attach_peft(model, self.peft_config(model.spec), tuner=self.tuner)

    def inference_model(self, model: EmbeddingModel) -> EmbeddingModel:
        return merged_copy(model)

    def tunable_formula(self, spec: ModelSpec) -> int:
        adapters = per_layer(spec, self.adapted_paths(), self.adapter_count)
        return spec.head_params + spec.proxy_params + adapters + self.bias_formula(spec)
