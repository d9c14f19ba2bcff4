"""SSF (Lian et al., NeurIPS 2022): learnable scale and shift after the backbone's operations.

After every linear layer and LayerNorm of the blocks, the final norm and the
patch embedding, the output is scaled and shifted per channel: y ← γ ⊙ y + β
(γ starts near 1, β near 0, both N(·, 0.02) as in the paper). Each pair is a
per-channel affine map right after a linear one, so for evaluation it is
folded into that layer's weights (on a copy): inference costs exactly the
backbone's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from dmlbench.method import Method, MethodOptions, TableRow
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.options import option
from dmlbench.registry import register_method


@dataclass
class SSFOptions(MethodOptions):
    targets: Literal["all", "linear"] = option(
        "all", "all: linears, norms and the patch embedding; linear: the blocks' linears only"
    )


class ScaleShift(nn.Module):
    """γ, β over the channel dimension (last for tokens, 1 for convolution maps)."""

    def __init__(self, channels: int, channel_dim: int = -1):
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(channels).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.empty(channels).normal_(0.0, 0.02))
        self.channel_dim = channel_dim

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        shape = [1] * y.dim()
        shape[self.channel_dim] = -1
        return y * self.gamma.view(shape).to(y.dtype) + self.beta.view(shape).to(y.dtype)


def ssf_targets(backbone: nn.Module, targets: str) -> list[tuple[str, nn.Module]]:
    """(name, module) of every operation that gets a scale and shift."""
    found = []
    for name, module in backbone.named_modules():
        in_block = name.startswith("blocks.")
        norm = isinstance(module, nn.LayerNorm) and (in_block or name == "norm")
        if isinstance(module, nn.Linear) and in_block or targets == "all" and norm:
            found.append((name, module))
    if targets == "all":
        convs = [
            (n, m) for n, m in backbone.patch_embed.named_modules() if isinstance(m, nn.Conv2d)
        ]
        name, conv = convs[-1]  # the conv that produces the tokens (a stem's last one)
        found.append((f"patch_embed.{name}".rstrip("."), conv))
    return found


def _key(name: str) -> str:
    return name.replace(".", "__")  # ModuleDict keys cannot hold dots


def _width(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    return module.normalized_shape[0]


@register_method("ssf")
class SSF(Method):
    description = "SSF: frozen backbone, learnable scale and shift after its operations, merged."
    Options = SSFOptions
    table_rows = (TableRow("SSF", {}, order=25),)

    def attach(self, model: EmbeddingModel) -> None:
        self.freeze(model.backbone)
        shifts = nn.ModuleDict()
        for name, module in ssf_targets(model.backbone, self.options.targets):
            dim = 1 if isinstance(module, nn.Conv2d) else -1
            shift = shifts[_key(name)] = ScaleShift(_width(module), dim)
            module.register_forward_hook(lambda m, args, out, shift=shift: shift(out))
        model.backbone.ssf = shifts
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)

    def inference_model(self, model: EmbeddingModel) -> EmbeddingModel:
        """γ, β folded into each layer of a copy: W ← γ·W, b ← γ·b + β."""
        merged = copy.deepcopy(model)
        shifts = merged.backbone.ssf
        with torch.no_grad():
            for name, module in ssf_targets(merged.backbone, self.options.targets):
                s = shifts[_key(name)]
                weight = module.weight
                module.weight.copy_(weight * s.gamma.view(-1, *[1] * (weight.dim() - 1)))
                bias = module.bias if module.bias is not None else torch.zeros_like(s.beta)
                module.bias = nn.Parameter(bias * s.gamma + s.beta, requires_grad=False)
                module._forward_hooks.clear()
        del merged.backbone.ssf
        return merged

    def tunable_formula(self, spec: ModelSpec) -> int:
        every = self.options.targets == "all"
        linear = 2 * sum(out for block in spec.block_linears for _, _, out in block)  # γ, β
        norms = spec.norm_params if every else 0
        patch = 2 * spec.feature_dim if every else 0  # after the patch embedding
        return (
            spec.head_params + spec.proxy_params + linear + norms + patch + self.bias_formula(spec)
        )
