"""The method plugin interface: everything a PEFT method may do to a model.

A method is one class, registered by name with ``@register_method``. The
trainer only ever calls the hooks below, so it never knows which method runs.
The default hooks describe "train what ``attach`` left trainable, with the
model's own proxies".

The "(B)" variants of the paper (+ bias tuning) are one mechanism for every
method: the ``bias`` option, which all option dataclasses inherit from
:class:`MethodOptions` and which :meth:`Method.setup` applies after
``attach``. So ``--opt bias=true`` gives Adapter (B), VPT (B), VPTSP (B) and
the (B) of any plugin, without a second registered name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from dmlbench.nn.collectives import SINGLE, DistContext
from dmlbench.nn.model import EmbeddingModel, ModelSpec
from dmlbench.options import build_options, option


@dataclass(frozen=True)
class PaperNumbers:
    """What a paper printed for a row (strings as printed, numbers in its units)."""

    tunable: str | None = None  # e.g. "0.23M"
    tunable_pct: float | None = None
    memory: str | None = None  # e.g. "2.2G"
    memory_pct: float | None = None  # % of full fine-tuning
    recall_at_1: float | None = None  # %
    map_at_r: float | None = None  # %, the paper's own MAP@R variant
    dataset: str = "cub"  # where the paper ran the row
    backbone: str = "vit_small_patch16_224.augreg_in21k"
    source: str = "Ren et al., ICLR 2024, Table 1"


@dataclass(frozen=True)
class TableRow:
    """One row of a Table-1-style comparison, declared beside its method.

    ``dmlbench params --all``, ``dmlbench memory --all``, the report's paper
    columns, bench_methods and the shipped sweeps' tests all read these, so a
    plugin's rows appear there without edits elsewhere.
    """

    label: str
    options: dict[str, Any] = field(default_factory=dict)
    paper: PaperNumbers | None = None
    order: float = 100.0  # position in the table (the paper's rows use 0-99)


@dataclass(frozen=True)
class LogUniform:
    """A number searched on a log scale in [low, high] (learning rates)."""

    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1


@dataclass(frozen=True)
class Choice:
    values: tuple


Distribution = LogUniform | Uniform | IntRange | Choice


@dataclass
class MethodOptions:
    """Options every method has; a method's own Options dataclass subclasses this."""

    bias: bool = option(False, "also tune every bias of the pretrained backbone (the '(B)' rows)")


class Method:
    """Base class of every method plugin.

    Subclasses set ``description`` (one line for ``dmlbench methods``),
    optionally ``Options`` (a dataclass subclassing :class:`MethodOptions`),
    override :meth:`attach`, and give :meth:`tunable_formula` so the contract
    suite can check the count against the shapes.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = MethodOptions
    # False for methods whose own state (not parameters) a step updates from
    # the local batch: under several processes the ranks' copies would drift.
    distributed: ClassVar[bool] = True
    # The processes the run trains on, set by the trainer before the first step: a
    # method whose state a step updates (VPTSP's memory P) gathers the global batch
    # through it, so that every rank makes the update one process would.
    processes: DistContext = SINGLE
    # The method's rows of Table-1-style tables (see TableRow).
    table_rows: ClassVar[tuple[TableRow, ...]] = ()

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Method:
        return cls(build_options(cls.Options, values, owner=f"method {cls.name}"))

    @property
    def label(self) -> str:
        """The name as the paper's tables write it: ``vpt (B)`` when biases tune too."""
        return f"{self.name} (B)" if getattr(self.options, "bias", False) else self.name

    def setup(self, model: EmbeddingModel) -> None:
        """What the runner calls: :meth:`attach`, then the bias option."""
        self.attach(model)
        if getattr(self.options, "bias", False):
            for p in model.pretrained_biases().values():
                p.requires_grad_(True)

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
        if proxies:  # weight decay: the run's proxy_weight_decay (see build_optimizer)
            groups.append({"params": proxies, "lr": proxy_lr, "name": "proxies"})
        return [g for g in groups if g["params"]]

    def proxies(
        self, model: EmbeddingModel, images: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The C × E proxies the loss uses this step (default: the model's learnable ones)."""
        return model.proxies

    def extra_loss(
        self, model: EmbeddingModel, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        """A term added to the metric loss this step (e.g. a regulariser); None: nothing.
        Called inside the forward pass's autocast, after :meth:`proxies`."""
        return None

    @classmethod
    def search_space(cls) -> dict[str, Distribution]:
        """What ``dmlbench tune`` searches for this method: run-config keys (``lr``,
        ``images_per_class`` …) and ``opt.<option>`` for method options. Every method
        gets the same budget; a method adds its own knobs by extending this."""
        return {"lr": LogUniform(1e-5, 1e-2), "images_per_class": Choice((1, 2, 4))}

    @classmethod
    def knob_space(cls) -> dict[str, Distribution]:
        """The method's own knobs (prompt counts, α …), searched on top of
        :meth:`search_space` only when a tune asks for them (``tune: {knobs: true}``),
        so the default budget stays the same for every method."""
        return {}

    def after_step(
        self, model: EmbeddingModel, optimizer: torch.optim.Optimizer, grad_scale: float
    ) -> None:
        """Called after each optimizer step: for state a method updates itself
        (e.g. rows of a parameter bank kept off the accelerator). ``grad_scale``
        is the AMP loss scale the gradients still carry (1.0 without fp16)."""

    def inference_model(self, model: EmbeddingModel) -> EmbeddingModel:
        """The model evaluation embeds with: by default the trained one; a method whose
        additions fold into the backbone's weights (LoRA, SSF) returns a merged copy,
        so test-time cost is the backbone's. Embeddings must agree with ``model``'s."""
        return model

    def processes_problem(self) -> str | None:
        """Why these options cannot train on several processes (None: they can)."""
        if self.distributed:
            return None
        return "its state is updated from each process's own batch, so the copies would drift"

    def synchronises_itself(self, model: EmbeddingModel) -> list[torch.Tensor]:
        """Trainable parameters DDP must leave alone under several processes because the
        method keeps their copies equal itself (e.g. with
        :func:`dmlbench.nn.collectives.average_gradient` on the rows it uses): those
        kept in host memory, which DDP cannot reduce beside accelerator tensors, and those
        the method steps itself."""
        return []

    def host_resident(self, model: EmbeddingModel) -> list[torch.Tensor]:
        """Tensors the method keeps in host memory on an accelerator run (with their
        gradients and optimizer state): memory estimates leave them out of the
        accelerator's peak and report them apart."""
        return []

    def updates_itself(self, model: EmbeddingModel) -> list[torch.Tensor]:
        """Trainable parameters the method updates itself in :meth:`after_step`, without
        a ``.grad`` and outside the run's optimizer (VPTSP's lazy prompt bank): the
        run-time contract check then only asks that they change during the first epoch."""
        return []

    def state_report(self, model: EmbeddingModel) -> dict:
        """Numbers about the method's own state worth keeping in the run's summary,
        taken before training, after every epoch (in its record, as ``state.KEY``) and after
        training (e.g. VPTSP's share of O in its proxies)."""
        return {}

    def tunable_formula(self, spec: ModelSpec) -> int | None:
        """The tunable-parameter count worked out from shapes (None: no formula given).

        Independent of ``requires_grad`` bookkeeping on purpose: the contract
        suite and ``dmlbench params`` compare the two.
        """
        return None

    def bias_formula(self, spec: ModelSpec) -> int:
        """What the bias option adds (override if the method already tunes biases)."""
        return spec.backbone_bias_params if getattr(self.options, "bias", False) else 0

    # -- helpers for subclasses ----------------------------------------------
    @staticmethod
    def freeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(False)

    @staticmethod
    def unfreeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(True)
