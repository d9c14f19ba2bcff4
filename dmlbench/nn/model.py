"""The embedding model every method works on: backbone → head → unit vectors, and
one learnable proxy per training class."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from dmlbench.nn.backbone import create_backbone


def _is_bias(name: str) -> bool:
    return name == "bias" or name.endswith(".bias")


class EmbeddingHead(nn.Module):
    """LayerNorm(D) → Linear(D, E) (xavier, zero bias) → L2 normalise (vptsp.md)."""

    def __init__(self, in_dim: int, embedding_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, embedding_dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.proj(self.norm(features)), dim=-1)


@dataclass(frozen=True)
class ModelSpec:
    """What a method needs to know about the model it attaches to."""

    backbone: str
    feature_dim: int
    embedding_dim: int
    num_classes: int
    depth: int
    backbone_params: int  # the pretrained backbone alone: no classifier, no method modules
    backbone_bias_params: int  # of those, the biases (what BitFit tunes)
    # The pretrained backbone's layout, read from its modules before any method changed
    # them, so a formula need not assume timm's: the width of every LayerNorm with affine
    # parameters (the blocks' and the final ones, in module order), each block's linear
    # layers as (path in the block, in, out), and the tokens before the patches.
    norm_widths: tuple[int, ...] = ()
    block_linears: tuple[tuple[tuple[str, int, int], ...], ...] = ()
    prefix_tokens: int = 1

    @property
    def norm_params(self) -> int:
        """Every LayerNorm's γ and β (what LayerNorm tuning trains in the backbone)."""
        return 2 * sum(self.norm_widths)

    @property
    def head_params(self) -> int:
        """LayerNorm(D) + Linear(D, E)."""
        return 2 * self.feature_dim + self.feature_dim * self.embedding_dim + self.embedding_dim

    @property
    def proxy_params(self) -> int:
        return self.num_classes * self.embedding_dim


PROXY_INITS = ("kaiming", "reference")


def init_proxies(proxies: torch.Tensor, how: str) -> None:
    """``kaiming``: Proxy-Anchor's (Kim et al. 2020; row norm ≈ √2·√(E/C), 2.0 for
    E = 192, C = 100); ``reference``: the VPTSP code's xavier_uniform / 8 (row
    norm ≈ 0.16 for E = 384). Proxies enter the loss normalised, so the scale
    only sets their effective step size, except where a method mixes them with
    unit vectors (VPTSP's Q)."""
    with torch.no_grad():
        if how == "kaiming":
            nn.init.kaiming_normal_(proxies, mode="fan_out")
        elif how == "reference":
            nn.init.xavier_uniform_(proxies)
            proxies.div_(8.0)
        else:
            raise ValueError(f"proxy init must be one of {', '.join(PROXY_INITS)}, not {how!r}")


class EmbeddingModel(nn.Module):
    """Backbone → head → unit vectors, plus one learnable proxy per training class.

    The proxies live here (not in the loss) so that "what trains" is one
    module's ``requires_grad`` flags and one state dict, whichever method runs.
    """

    def __init__(
        self, backbone: nn.Module, embedding_dim: int, num_classes: int, proxy_init: str = "kaiming"
    ):
        super().__init__()
        self.backbone = backbone
        self.head = EmbeddingHead(backbone.num_features, embedding_dim)
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_dim))
        init_proxies(self.proxies, proxy_init)
        # Methods add modules inside the backbone (adapters, prompts) and may
        # rename what they wrap (peft's LoRA moves qkv.weight to
        # qkv.base_layer.weight); identity keeps "the pretrained backbone" well
        # defined afterwards.
        self._pretrained_ids = frozenset(id(p) for p in backbone.parameters())
        self._layout = backbone_layout(backbone)

    def __deepcopy__(self, memo: dict) -> EmbeddingModel:
        """A copy whose "pretrained backbone" is the copy's own parameters: the identity
        set above would otherwise still name the original's, and a copied model would
        have no pretrained biases for the bias option to tune."""
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        for key, value in self.__dict__.items():
            copied.__dict__[key] = copy.deepcopy(value, memo)
        copied.__dict__["_pretrained_ids"] = frozenset(
            id(memo[key]) for key in self._pretrained_ids if key in memo
        )
        return copied

    def pretrained_parameters(self) -> dict[str, nn.Parameter]:
        """The backbone's own parameters (without anything a method added), by current name."""
        return {n: p for n, p in self.backbone.named_parameters() if id(p) in self._pretrained_ids}

    def pretrained_biases(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.pretrained_parameters().items() if _is_bias(n)}

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            backbone=getattr(self.backbone, "default_cfg", {}).get("architecture", ""),
            feature_dim=self.backbone.num_features,
            embedding_dim=self.head.proj.out_features,
            num_classes=self.proxies.shape[0],
            depth=len(getattr(self.backbone, "blocks", [])),
            backbone_params=sum(p.numel() for p in self.pretrained_parameters().values()),
            backbone_bias_params=sum(p.numel() for p in self.pretrained_biases().values()),
            **self._layout,
        )

    def backbone_trains(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # A frozen backbone runs without autograd: a linear probe must not
        # store the backbone's activations.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_trains()):
            features = self.backbone(images)
        return self.head(features)


def backbone_layout(backbone: nn.Module) -> dict:
    """The ModelSpec fields that describe the backbone's modules (see ModelSpec)."""
    norms = tuple(m.normalized_shape[-1] for m in backbone.modules()
                  if isinstance(m, nn.LayerNorm) and m.elementwise_affine)  # fmt: skip
    blocks = getattr(backbone, "blocks", [])
    linears = tuple(
        tuple((name, m.in_features, m.out_features) for name, m in block.named_modules()
              if isinstance(m, nn.Linear))
        for block in blocks
    )  # fmt: skip
    return {"norm_widths": norms, "block_linears": linears,
            "prefix_tokens": int(getattr(backbone, "num_prefix_tokens", 1))}  # fmt: skip


def build_model(
    backbone: str,
    weights: str | None,
    embedding_dim: int | None,
    num_classes: int,
    proxy_init: str = "kaiming",
    image_size: int | None = None,
) -> EmbeddingModel:
    net = create_backbone(backbone, weights, image_size)
    return EmbeddingModel(net, embedding_dim or net.num_features, num_classes, proxy_init)
