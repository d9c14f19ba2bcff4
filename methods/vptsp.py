"""VPTSP (Ren et al., ICLR 2024): semantic proxies learned from class-specific visual prompts.

Per step, besides the usual sample pass (VPT with shared prompts → head), a
proxy pass runs the same augmented batch through the frozen backbone with
each image's own class prompts and no shared prompts, then a separate proxy
head, giving semantic embeddings p_i. A memory P (C × E, not trained,
detached between steps) keeps the last semantic proxy of every class and is
updated from the batch by a moving average (``vptsp-m``) or a GRU cell
(``vptsp-g``). The loss sees Q = normalise((1 − α)·P + α·O) for all C
classes, with O the learnable original proxies (``model.proxies``). At test
time only the sample pass runs, so inference is exactly VPT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from dmlbench.backbone import EmbeddingHead, EmbeddingModel, ModelSpec
from dmlbench.method import Method, MethodOptions
from dmlbench.options import option
from dmlbench.prompt_bank import ClassPromptBank
from dmlbench.prompts import DeepPrompts, PromptInserter, init_prompts
from dmlbench.registry import register_method


@dataclass
class VPTSPOptions(MethodOptions):
    alpha: float = option(0.5, "α: weight of the original proxies O in Q")
    keep: float = option(0.8, "keep ratio of the moving average (vptsp-m)")
    class_layers: int | None = option(None, "L_c: blocks with class prompts (default: every)")
    class_prompts: int = option(3, "N_c: class-prompt tokens per block")
    layers: int | None = option(None, "shared-prompt blocks, from the first (default: every)")
    prompts: int = option(10, "shared-prompt tokens per block")
    init: Literal["xavier", "normal", "zeros"] = option("xavier", "prompt initialisation")
    dropout: float = option(0.0, "dropout on the shared prompts while training")
    gru_dropout: float = option(0.0, "dropout on the GRU's input (vptsp-g)")
    proxy_lr: float | None = option(None, "learning rate of O (default: the run's proxy_lr)")
    checkpointing: bool = option(
        False, "activation checkpointing: sample pass per block, proxy pass as a whole"
    )

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha} must be in [0, 1]")
        if not 0.0 <= self.keep < 1.0:
            raise ValueError(f"keep={self.keep} must be in [0, 1)")
        for name in ("class_layers", "layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be ≥ 1")
        for name in ("class_prompts", "prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be ≥ 1")
        for name in ("dropout", "gru_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.proxy_lr is not None and self.proxy_lr <= 0:
            raise ValueError(f"proxy_lr={self.proxy_lr} must be > 0")


class ProxyGRUCell(nn.Module):
    """The GRU of vptsp.md, written out (torch.nn.GRUCell puts the reset gate
    differently and uses tanh):

        z = σ(W_z p + U_z h + b_z),  r = σ(W_r p + U_r h + b_r)
        n = ReLU(W_h p + r ⊙ (U_h h) + b_h),  h ← (1 − z) ⊙ h + z ⊙ n
    """

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.input = nn.Linear(dim, 3 * dim)  # W_z, W_r, W_h and b_z, b_r, b_h
        self.hidden = nn.Linear(dim, 3 * dim, bias=False)  # U_z, U_r, U_h
        self.dropout = nn.Dropout(dropout)

    def forward(self, p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        wz, wr, wh = self.input(self.dropout(p)).chunk(3, dim=-1)
        uz, ur, uh = self.hidden(h).chunk(3, dim=-1)
        z = torch.sigmoid(wz + uz)
        r = torch.sigmoid(wr + ur)
        n = torch.relu(wh + r * uh)
        return (1 - z) * h + z * n

    @staticmethod
    def parameter_count(dim: int) -> int:
        return 3 * (2 * dim * dim + dim)


class SemanticProxies(nn.Module):
    """VPTSP's training-only parts, kept on the model beside the backbone."""

    def __init__(
        self, spec: ModelSpec, class_layers: int, class_prompts: int, gru, patch: int, init: str
    ):
        super().__init__()
        c, e = spec.num_classes, spec.embedding_dim
        self.bank = ClassPromptBank(c, class_layers, class_prompts, spec.feature_dim)
        self.proxy_head = EmbeddingHead(spec.feature_dim, e)
        self.gru = gru
        memory = F.normalize(torch.randn(c, e) * 0.01, dim=-1)  # small random, unit norm
        self.register_buffer("memory", memory)  # P: not trained, detached between steps
        with torch.no_grad():
            init_prompts(self.bank.weight, init, patch)


def _proxy_pass(backbone: nn.Module, images: torch.Tensor, per_image: torch.Tensor):
    """The backbone with each image's class prompts and no shared prompts.

    The prompts are an argument (not state read by the hooks later), so that
    under activation checkpointing the recomputation in backward sees the
    same prompts; timm's per-block checkpointing is off inside, since its
    recomputation would run after the prompt source is restored.
    """
    layers = per_image.shape[1]

    def class_prompts(layer: int, batch: int):
        return per_image[:, layer] if layer < layers else None

    per_block = getattr(backbone, "grad_checkpointing", False)
    backbone.grad_checkpointing = False
    try:
        with backbone.vpt_inserter.use(class_prompts):
            return backbone(images)
    finally:
        backbone.grad_checkpointing = per_block


class VPTSP(Method):
    # P and the host prompt bank are updated from each process's own batch.
    distributed = False
    Options = VPTSPOptions

    # -- set-up --------------------------------------------------------------
    def _depths(self, spec: ModelSpec) -> tuple[int, int]:
        o = self.options
        shared = o.layers if o.layers is not None else spec.depth
        per_class = o.class_layers if o.class_layers is not None else spec.depth
        for name, value in (("layers", shared), ("class_layers", per_class)):
            if value > spec.depth:
                raise ValueError(f"{name}={value} exceeds the backbone depth {spec.depth}")
        return shared, per_class

    def _make_gru(self, spec: ModelSpec) -> nn.Module | None:
        return None

    def attach(self, model: EmbeddingModel) -> None:
        o, spec = self.options, model.spec
        shared, per_class = self._depths(spec)
        self.freeze(model.backbone)
        patch = model.backbone.patch_embed.patch_size[0]
        prompts = DeepPrompts(shared, o.prompts, spec.feature_dim, o.init, patch, o.dropout)
        model.backbone.vpt_prompts = prompts
        inserter = PromptInserter(model.backbone, max(shared, per_class))
        shared_source = prompts

        def shared_only(layer: int, batch: int):
            return shared_source(layer, batch) if layer < shared else None

        inserter.source = shared_only
        model.backbone.vpt_inserter = inserter
        if o.checkpointing:
            model.backbone.set_grad_checkpointing(True)
        gru = self._make_gru(spec)
        model.semantic = SemanticProxies(spec, per_class, o.class_prompts, gru, patch, o.init)
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)  # O

    def param_groups(self, model: EmbeddingModel, lr: float, proxy_lr: float) -> list[dict]:
        bank = model.semantic.bank.weight
        proxies = model.proxies
        others = [
            p for p in model.parameters() if p.requires_grad and p is not bank and p is not proxies
        ]
        o_lr = self.options.proxy_lr if self.options.proxy_lr is not None else proxy_lr
        return [
            {"params": others, "lr": lr, "name": "model"},
            {"params": [proxies], "lr": o_lr, "name": "proxies", "weight_decay": 0.0},
        ]

    # -- per step ------------------------------------------------------------
    def proxies(
        self, model: EmbeddingModel, images: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        semantic: SemanticProxies = model.semantic
        memory = semantic.memory
        if not model.training:  # evaluation needs no proxies beyond the stored ones
            return self._combine(memory, model.proxies)
        classes, slot = torch.unique(labels, return_inverse=True)
        rows = semantic.bank.gather(classes, images.device)  # U × L_c × N_c × D
        per_image = rows[slot]  # B × L_c × N_c × D
        if self.options.checkpointing:
            features = checkpoint(
                _proxy_pass, model.backbone, images, per_image, use_reentrant=False
            )
        else:
            features = _proxy_pass(model.backbone, images, per_image)
        p = semantic.proxy_head(features)  # B × E, unit norm
        updated = F.normalize(self._update(semantic, memory[classes], p, slot), dim=-1)
        stored = memory.index_copy(0, classes, updated.to(memory.dtype))  # differentiable
        with torch.no_grad():
            memory[classes] = updated.detach().to(memory.dtype)  # P^c for the next step
        return self._combine(stored, model.proxies)

    def _combine(self, memory: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        a = self.options.alpha
        return F.normalize((1 - a) * memory + a * original, dim=-1)

    def _update(self, semantic, previous, p, slot) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, model, optimizer, grad_scale: float) -> None:
        model.semantic.bank.apply_update(optimizer, grad_scale)

    # -- counting ------------------------------------------------------------
    def tunable_formula(self, spec: ModelSpec) -> int:
        o = self.options
        shared, per_class = self._depths(spec)
        d, e, c = spec.feature_dim, spec.embedding_dim, spec.num_classes
        prompts = shared * o.prompts * d + c * per_class * o.class_prompts * d
        proxy_head = 2 * d + d * e + e
        gru = ProxyGRUCell.parameter_count(e) if self._make_gru(spec) is not None else 0
        vpt_part = spec.head_params + spec.proxy_params + prompts
        return vpt_part + proxy_head + gru + self.bias_formula(spec)


@register_method("vptsp-m")
class VPTSPMovingAverage(VPTSP):
    description = "VPTSP-M: VPT + semantic proxies from class prompts, merged by moving average."

    def _update(self, semantic, previous, p, slot) -> torch.Tensor:
        # P^c ← keep·P^c + (1 − keep)·mean_i p_i^c over the class's images in the batch
        sums = torch.zeros_like(previous, dtype=p.dtype).index_add_(0, slot, p)
        counts = torch.bincount(slot, minlength=len(previous)).to(p.dtype).unsqueeze(1)
        keep = self.options.keep
        return keep * previous.to(p.dtype) + (1 - keep) * sums / counts


@register_method("vptsp-g")
class VPTSPGated(VPTSP):
    description = "VPTSP-G: VPT + semantic proxies from class prompts, merged by a GRU cell."

    def _make_gru(self, spec: ModelSpec) -> nn.Module:
        return ProxyGRUCell(spec.embedding_dim, self.options.gru_dropout)

    def _update(self, semantic, previous, p, slot) -> torch.Tensor:
        # Each class's images in batch order, starting from h = P^c; classes
        # with fewer images in the batch simply stop earlier (masked).
        order = torch.argsort(slot, stable=True)
        counts = torch.bincount(slot, minlength=len(previous))
        starts = torch.cumsum(counts, 0) - counts
        h = previous.to(p.dtype)
        for t in range(int(counts.max())):
            active = counts > t
            index = order[(starts + t).clamp(max=len(order) - 1)]
            h = torch.where(active.unsqueeze(1), semantic.gru(p[index], h), h)
        return h
