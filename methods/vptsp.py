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
from dmlbench.methods.vpt import VPT, VPTOptions, prompted_depth, shared_prompts
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from dmlbench.method import Choice, LogUniform, Method, PaperNumbers, TableRow, Uniform
from dmlbench.nn.collectives import (
    average_gradient,
    gather_tensor,
    gather_with_gradient,
    local_share,
)
from dmlbench.nn.labels import BatchClasses, batch_classes
from dmlbench.nn.model import EmbeddingHead, EmbeddingModel, ModelSpec, init_proxies
from dmlbench.nn.prompt_bank import ClassPromptBank, resolve_storage
from dmlbench.nn.prompts import DeepPrompts, PromptInserter, init_prompts, tapered_counts
from dmlbench.options import option
from dmlbench.registry import register_method


@dataclass
class VPTSPOptions(VPTOptions):
    """VPT's options for the shared prompts, and those of the semantic proxies."""

    alpha: float = option(0.5, "α: weight of the original proxies O in Q")
    keep: float = option(0.8, "keep ratio of the moving average (vptsp-m)")
    class_layers: int | None = option(None, "L_c: blocks with class prompts (default: every)")
    class_prompts: int = option(3, "N_c: class-prompt tokens per block")
    class_taper: int = option(
        0, "block i gets N_c - i*class_taper class tokens (the reference's prompt_p_block_step)"
    )
    gru_dropout: float = option(0.0, "dropout on the GRU's output at each step (vptsp-g)")
    proxy_lr: float | None = option(None, "learning rate of O (default: the run's proxy_lr)")
    o_init: Literal["reference", "run"] = option(
        "reference", "O's init: the reference's xavier_uniform/8, or the run's proxy_init"
    )
    bank: Literal["auto", "device", "host", "lazy"] = option(
        "auto",
        "class prompts: one parameter on the accelerator (device) or in host memory (host), "
        "or the reference's memory bank updating the batch's rows only (lazy); auto: device "
        "up to 256 MiB, else host",
    )
    checkpointing: bool = option(
        False, "activation checkpointing: sample pass per block, proxy pass as a whole"
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha} must be in [0, 1]")
        if not 0.0 <= self.keep < 1.0:
            raise ValueError(f"keep={self.keep} must be in [0, 1)")
        if self.class_layers is not None and self.class_layers < 1:
            raise ValueError(f"class_layers={self.class_layers} must be ≥ 1")
        if self.class_prompts < 1:
            raise ValueError(f"class_prompts={self.class_prompts} must be ≥ 1")
        if self.class_taper < 0:
            raise ValueError(f"class_taper={self.class_taper} must be ≥ 0")
        if not 0.0 <= self.gru_dropout < 1.0:
            raise ValueError(f"gru_dropout={self.gru_dropout} must be in [0, 1)")
        if self.proxy_lr is not None and self.proxy_lr <= 0:
            raise ValueError(f"proxy_lr={self.proxy_lr} must be > 0")


class ProxyGRUCell(nn.Module):
    """The GRU of the VPTSP reference code (its ``gru_relu``), written out because
    ``torch.nn.GRUCell`` has tanh where this has ReLU and a bias on the hidden
    path (b_hn) this has not:

        z = σ(W_z p + U_z h + b_z),  r = σ(W_r p + U_r h + b_r)
        n = ReLU(W_h p + r ⊙ (U_h h) + b_h),  h ← dropout((1 − z) ⊙ n + z ⊙ h)

    Weights start xavier-uniform (per D × D matrix) and biases at zero, as in
    the reference. (The paper's slide writes h ← (1 − z) ⊙ h + z ⊙ n; with
    that init the two are the same up to the gate's sign.)
    """

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.input = nn.Linear(dim, 3 * dim)  # W_z, W_r, W_h and b_z, b_r, b_h
        self.hidden = nn.Linear(dim, 3 * dim, bias=False)  # U_z, U_r, U_h
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            for linear in (self.input, self.hidden):
                for matrix in linear.weight.chunk(3, dim=0):
                    nn.init.xavier_uniform_(matrix)
            nn.init.zeros_(self.input.bias)

    def forward(self, p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        wz, wr, wh = self.input(p).chunk(3, dim=-1)
        uz, ur, uh = self.hidden(h).chunk(3, dim=-1)
        z = torch.sigmoid(wz + uz)
        r = torch.sigmoid(wr + ur)
        n = torch.relu(wh + r * uh)
        return self.dropout((1 - z) * n + z * h)

    @staticmethod
    def parameter_count(dim: int) -> int:
        return 3 * (2 * dim * dim + dim)


def o_share(memory: torch.Tensor, original: torch.Tensor, alpha: float) -> float:
    """How much of Q = normalise((1−α)P + αO) is O: α‖O‖ / (α‖O‖ + (1−α)‖P‖), mean over classes."""
    o = alpha * original.detach().float().norm(dim=1)
    p = (1 - alpha) * memory.detach().float().norm(dim=1)
    return float((o / (o + p)).mean())


class SemanticProxies(nn.Module):
    """VPTSP's training-only parts, kept on the model beside the backbone."""

    def __init__(self, spec: ModelSpec, gru: nn.Module | None, bank: ClassPromptBank):
        super().__init__()
        self.bank = bank
        self.proxy_head = EmbeddingHead(spec.feature_dim, spec.embedding_dim)
        self.gru = gru
        # P: not trained, detached between steps; random unit rows (the reference
        # normalises an xavier_uniform draw).
        memory = torch.empty(spec.num_classes, spec.embedding_dim)
        nn.init.xavier_uniform_(memory)
        self.register_buffer("memory", F.normalize(memory, dim=-1))


def _proxy_pass(backbone: nn.Module, images: torch.Tensor, per_image: torch.Tensor, counts):
    """The backbone with each image's class prompts and no shared prompts.

    ``per_image`` is B × T × D, block i's tokens at offset sum(counts[:i]).
    The prompts are an argument (not state read by the hooks later), so that
    under activation checkpointing the recomputation in backward sees the
    same prompts; timm's per-block checkpointing is off inside, since its
    recomputation would run after the prompt source is restored.
    """
    offsets = [sum(counts[:i]) for i in range(len(counts))]

    def class_prompts(layer: int, batch: int):
        if layer >= len(counts) or counts[layer] == 0:
            return None
        return per_image[:, offsets[layer] : offsets[layer] + counts[layer]]

    per_block = getattr(backbone, "grad_checkpointing", False)
    backbone.grad_checkpointing = False
    try:
        with backbone.vpt_inserter.use(class_prompts):
            return backbone(images)
    finally:
        backbone.grad_checkpointing = per_block


class VPTSP(Method):
    """Under several processes (torchrun) every rank makes the update one process makes on
    the global batch: the batch's labels and semantic embeddings p_i are gathered (the
    latter with their gradients), so P, Q and the loss are the same on every rank; the
    class-prompt rows of the global batch's classes are gathered from each rank's copy of
    the bank, and for a host or lazy bank (which DDP does not see) their gradients are
    averaged over the ranks as DDP averages the rest, so every copy takes the same step.
    The bank is replicated, not sharded by class: one step exchanges only the batch's
    rows (U × T × D), and host memory holds a copy per rank (see docs/distributed.md)."""

    Options = VPTSPOptions

    @classmethod
    def knob_space(cls) -> dict:
        """VPT's knobs, and the semantic proxies': α (O's weight in Q), O's learning
        rate, class-prompt tokens and blocks."""
        return {**VPT.knob_space(), "opt.alpha": Uniform(0.1, 0.9),
                "opt.proxy_lr": LogUniform(1e-3, 1.0), "opt.class_prompts": Choice((1, 3, 5)),
                "opt.class_layers": Choice((2, 4, None))}  # fmt: skip

    # -- set-up --------------------------------------------------------------
    def _layout(self, spec: ModelSpec) -> tuple[int, list[int]]:
        """Shared-prompt depth, and class-prompt tokens per block."""
        o = self.options
        shared = prompted_depth(o.layers, spec)
        per_class = prompted_depth(o.class_layers, spec, "class_layers")
        return shared, tapered_counts(o.class_prompts, per_class, o.class_taper)

    def _make_gru(self, spec: ModelSpec) -> nn.Module | None:
        return None

    def attach(self, model: EmbeddingModel) -> None:
        o, spec = self.options, model.spec
        shared, class_counts = self._layout(spec)
        self.freeze(model.backbone)
        patch = model.backbone.patch_embed.patch_size[0]
        prompts = shared_prompts(o, shared, spec, patch)
        model.backbone.vpt_prompts = prompts
        inserter = PromptInserter(model.backbone, max(shared, len(class_counts)), carry=o.carry)
        inserter.source = prompts
        model.backbone.vpt_inserter = inserter
        if o.checkpointing:
            model.backbone.set_grad_checkpointing(True)
        c, d, total = spec.num_classes, spec.feature_dim, sum(class_counts)
        bank = ClassPromptBank(c, total, d, resolve_storage(o.bank, c, total, d))
        init_prompts(bank.weight, o.init, patch, rows=c, fan_tokens=o.class_prompts)
        model.semantic = SemanticProxies(spec, self._make_gru(spec), bank)
        self.class_counts = class_counts
        self.unfreeze(model.head)
        model.proxies.requires_grad_(True)  # O
        if o.o_init == "reference":  # at α = 0.5 O starts as ~13% of each Q (ViT-S, CUB)
            init_proxies(model.proxies, "reference")

    def param_groups(self, model: EmbeddingModel, lr: float, proxy_lr: float) -> list[dict]:
        """Everything at ``lr`` (the class prompts too, unless the bank is lazy), O at
        its own lr; weight decay as the run's (the reference decays O too)."""
        bank = model.semantic.bank
        proxies = model.proxies
        others = [
            p
            for p in model.parameters()
            if p.requires_grad and p is not proxies and (p is not bank.weight or bank.in_optimizer)
        ]
        o_lr = self.options.proxy_lr if self.options.proxy_lr is not None else proxy_lr
        return [
            {"params": others, "lr": lr, "name": "model"},
            {"params": [proxies], "lr": o_lr, "name": "proxies"},
        ]

    def host_resident(self, model: EmbeddingModel) -> list[torch.Tensor]:
        bank = model.semantic.bank
        return [] if bank.storage == "device" else [bank.weight, *bank.host_state()]

    def synchronises_itself(self, model: EmbeddingModel) -> list[torch.Tensor]:
        bank = model.semantic.bank
        return [] if bank.storage == "device" else [bank.weight]  # see proxies()

    def updates_itself(self, model: EmbeddingModel) -> list[torch.Tensor]:
        bank = model.semantic.bank
        return [] if bank.in_optimizer else [bank.weight]  # lazy: after_step's row update

    def state_report(self, model: EmbeddingModel) -> dict:
        """O's share of Q now (see :func:`o_share`) and the mean cosine between each
        class's P and O: the paper's mechanism (semantic proxies carry what O alone
        does not) shows in how far P moves from O and how much of Q it makes."""
        memory, original = model.semantic.memory.detach().float(), model.proxies.detach().float()
        cosine = F.cosine_similarity(memory, original, dim=1).mean()
        return {"o_share": o_share(memory, original, self.options.alpha),
                "cos_p_o": float(cosine)}  # fmt: skip

    # -- per step ------------------------------------------------------------
    def proxies(
        self, model: EmbeddingModel, images: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        semantic: SemanticProxies = model.semantic
        memory = semantic.memory
        if not model.training:  # evaluation needs no proxies beyond the stored ones
            return self._combine(memory, model.proxies)
        ctx = self.processes
        # the global batch's classes (one process: its own), so every rank updates P alike
        batch = batch_classes(gather_tensor(labels, ctx))
        classes, slot = batch.classes.to(images.device), batch.slot.to(images.device)
        rows = semantic.bank.gather(classes, images.device)  # U × T × D
        if semantic.bank.storage != "device":  # DDP averages a device bank's gradient
            rows = average_gradient(rows, ctx)
        per_image = rows[slot[local_share(len(slot), ctx)]]  # this rank's B × T × D
        counts = self.class_counts
        if self.options.checkpointing:
            features = checkpoint(
                _proxy_pass, model.backbone, images, per_image, counts, use_reentrant=False
            )
        else:
            features = _proxy_pass(model.backbone, images, per_image, counts)
        p = gather_with_gradient(semantic.proxy_head(features), ctx)  # global B × E, unit norm
        updated = F.normalize(self._update(semantic, memory[classes], p, batch), dim=-1)
        stored = memory.index_copy(0, classes, updated.to(memory.dtype))  # differentiable
        with torch.no_grad():
            memory[classes] = updated.detach().to(memory.dtype)  # P^c for the next step
        return self._combine(stored, model.proxies)

    def _combine(self, memory: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        a = self.options.alpha
        return F.normalize((1 - a) * memory + a * original, dim=-1)

    def _update(self, semantic, previous, p, batch: BatchClasses) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, model, optimizer, grad_scale: float) -> None:
        if not model.semantic.bank.in_optimizer:
            model.semantic.bank.apply_lazy_update(optimizer, grad_scale)

    # -- counting ------------------------------------------------------------
    def tunable_formula(self, spec: ModelSpec) -> int:
        o = self.options
        shared, class_counts = self._layout(spec)
        d, e, c = spec.feature_dim, spec.embedding_dim, spec.num_classes
        prompts = DeepPrompts.parameter_count(shared, o.prompts, d, o.taper)
        prompts += c * sum(class_counts) * d
        proxy_head = 2 * d + d * e + e
        gru = ProxyGRUCell.parameter_count(e) if self._make_gru(spec) is not None else 0
        vpt_part = spec.head_params + spec.proxy_params + prompts
        return vpt_part + proxy_head + gru + self.bias_formula(spec)


@register_method("vptsp-m")
class VPTSPMovingAverage(VPTSP):
    description = "VPTSP-M: VPT + semantic proxies from class prompts, merged by moving average."

    @classmethod
    def knob_space(cls) -> dict:
        return {**super().knob_space(), "opt.keep": Uniform(0.5, 0.95)}

    # Class prompts 3 tokens × 12 blocks (the released CUB config); Table 1's
    # smaller VPTSP figures come from an unpublished shape (vptsp.md).
    table_rows = (
        TableRow("VPTSP-M", {}, PaperNumbers("0.60M", 1.9, "2.5G", 41.7, 85.4, 51.4), order=7),
        TableRow(
            "VPTSP-M (B)",
            {"bias": True},
            PaperNumbers("0.67M", 4.5, "2.6G", 43.3, 85.9, 51.8),
            order=8,
        ),
    )

    def _update(self, semantic, previous, p, batch: BatchClasses) -> torch.Tensor:
        # P^c ← keep·P^c + (1 − keep)·mean_i p_i^c over the class's images in the batch
        slot = batch.slot.to(p.device)
        sums = torch.zeros_like(previous, dtype=p.dtype).index_add_(0, slot, p)
        counts = batch.counts.to(p.device, p.dtype).unsqueeze(1)
        keep = self.options.keep
        return keep * previous.to(p.dtype) + (1 - keep) * sums / counts


@register_method("vptsp-g")
class VPTSPGated(VPTSP):
    description = "VPTSP-G: VPT + semantic proxies from class prompts, merged by a GRU cell."

    # Class prompts 3 tokens × 12 blocks (the released CUB config); Table 1's
    # smaller VPTSP figures come from an unpublished shape (vptsp.md).
    table_rows = (
        TableRow("VPTSP-G", {}, PaperNumbers("1.48M", 4.9, "2.5G", 41.7, 86.1, 52.1), order=9),
        TableRow(
            "VPTSP-G (B)",
            {"bias": True},
            PaperNumbers("1.56M", 5.2, "2.6G", 43.3, 86.6, 52.7),
            order=10,
        ),
    )

    def _make_gru(self, spec: ModelSpec) -> nn.Module:
        return ProxyGRUCell(spec.embedding_dim, self.options.gru_dropout)

    def processes_problem(self) -> str | None:
        if self.options.gru_dropout > 0:
            return (f"gru_dropout={self.options.gru_dropout} draws its own mask on each "
                    "process, so their memories P would drift; set gru_dropout to 0")  # fmt: skip
        return None

    def _update(self, semantic, previous, p, batch: BatchClasses) -> torch.Tensor:
        # Each class's images in batch order, starting from h = P^c; classes
        # with fewer images in the batch simply stop earlier (masked).
        order = torch.argsort(batch.slot, stable=True).to(p.device)
        counts = batch.counts.to(p.device)
        starts = torch.cumsum(counts, 0) - counts
        h = previous.to(p.dtype)
        for t in range(batch.longest):
            active = counts > t
            index = order[(starts + t).clamp(max=len(order) - 1)]
            h = torch.where(active.unsqueeze(1), semantic.gru(p[index], h), h)
        return h
