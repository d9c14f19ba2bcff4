"""The method plugin interface: everything a PEFT method may do to a model.

A method is one class, registered by name with ``@register_method``. The
trainer only ever calls the hooks below, so it never knows which method runs.
The default hooks describe "train what ``attach`` left trainable, with the
model's own proxies".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from dmlbench.backbone import EmbeddingModel
from dmlbench.options import build_options


@dataclass
class NoOptions:
    """A method without options."""


class Method:
    """Base class of every method plugin.

    Subclasses set ``description`` (one line for ``dmlbench methods``),
    optionally ``Options`` (a dataclass) and override :meth:`attach`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Method:
        return cls(build_options(cls.Options, values, owner=f"method {cls.name}"))

    # -- hooks --------------------------------------------------------------
    def attach(self, model: EmbeddingModel) -> None:
        """Patch or wrap the model and set ``requires_grad`` on what trains.

        Called once, before the optimizer is built; ``model.spec`` tells the
        backbone's width and depth and the number of training classes. Raise
        ``ValueError`` for options that do not fit the model.
        """
        raise NotImplementedError

    def param_groups(self, model: EmbeddingModel, lr: float, proxy_lr: float) -> list[dict]:
        """Optimizer groups: the trainable parameters at ``lr``, proxies at ``proxy_lr``."""
        proxies = [p for p in [model.proxies] if p.requires_grad]
        proxy_ids = {id(p) for p in proxies}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in proxy_ids]
        groups = [{"params": others, "lr": lr, "name": "model"}]
        if proxies:
            groups.append(
                {"params": proxies, "lr": proxy_lr, "name": "proxies", "weight_decay": 0.0}
            )
        return [g for g in groups if g["params"]]

    def proxies(
        self, model: EmbeddingModel, images: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The C × E proxies the loss uses this step (default: the model's learnable ones)."""
        return model.proxies

    # -- helpers for subclasses ----------------------------------------------
    @staticmethod
    def freeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(False)

    @staticmethod
    def unfreeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(True)
