"""Peak accelerator memory of one training step, worked out without an accelerator.

The peak of a step is a property of shapes, dtypes and what autograd saves,
so it can be computed without running kernels: the model is built for real
on the CPU (random weights; they do not matter), then two training steps run
on fake inputs under PyTorch's ``FakeTensorMode`` (no memory allocated, no
arithmetic done) with the method's own forward, proxies, Proxy-Anchor loss,
backward and optimizer step. The second step, when the optimizer state
exists, is tracked tensor by tensor (:mod:`dmlbench.cost.tracker`).

What the figure is: the largest sum of live tensor bytes on the accelerator
during that step (parameters, gradients, optimizer state, activations kept
for backward, temporaries, the input batch), the batch's labels and scalars
aside. Tensors a method keeps in host memory (VPTSP's class-prompt bank with
``bank=host`` or ``lazy``) are reported apart and not counted. Not included:
the CUDA context (~0.3–0.5 GiB), the caching allocator's rounding and
fragmentation, cuBLAS/cuDNN workspaces, and anything of other processes;
``torch.cuda.max_memory_allocated`` is typically a few percent above the
figure, NVML's device figure more. Mixed precision runs as CPU autocast
(fp16 and bf16 tensors have the same sizes as on CUDA). Attention is timm's
fused ``scaled_dot_product_attention`` as the CPU dispatches it (a flash-style
kernel that keeps the output and the log-sum-exp rows for backward, not the
N × N attention matrix), the same memory as CUDA's flash and
memory-efficient kernels.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import asdict, dataclass, field

import torch

from dmlbench.config import RunConfig
from dmlbench.cost.tracker import HOST, TensorMemoryTracker
from dmlbench.errors import UserError
from dmlbench.method import Method
from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.nn.model import EmbeddingModel, build_model
from dmlbench.train.optim import build_optimizer
from dmlbench.train.trainer import Trainer

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "off": None}
CONVENTION = (
    "estimated: peak of live tensors on the accelerator in one training step "
    "(parameters, gradients, optimizer state, activations, temporaries, inputs); "
    "excludes the CUDA context, allocator fragmentation, cuBLAS/cuDNN workspaces"
)
ATTENTION = "fused scaled_dot_product_attention (flash-style: no N×N matrix kept)"


@dataclass(frozen=True)
class StepShape:
    """What a training step's memory depends on."""

    backbone: str
    batch: int
    image_size: int | None = None  # None: the backbone's own
    amp: str = "fp16"  # fp16, bf16 or off
    optimizer: str = "adamw"
    num_classes: int = 100
    embedding_dim: int | None = None
    images_per_class: int = 2
    proxy_init: str = "kaiming"

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise UserError(f"--batch {self.batch}: give a batch size ≥ 1")
        if self.amp not in AMP_DTYPES:
            raise UserError(f"--amp {self.amp}: use fp16, bf16 or off")
        if self.batch % self.images_per_class:
            raise UserError(
                f"--batch {self.batch} is not divisible by {self.images_per_class} images per "
                "class; give a multiple"
            )


@dataclass
class MemoryEstimate:
    peak_bytes: int
    breakdown: dict[str, int]  # bytes per category at the peak (accelerator only)
    host_bytes: int = 0  # kept in host memory by the method, not in the peak
    shape: dict = field(default_factory=dict)

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    def as_summary(self) -> dict:
        """What a run's summary records of it."""
        return {
            "peak_mb": self.peak_mb,
            "breakdown_mb": {k: v / 2**20 for k, v in self.breakdown.items() if v},
            "host_mb": self.host_bytes / 2**20,
            "shape": self.shape,
            "convention": CONVENTION,
            "attention": ATTENTION,
        }


def step_model(method: Method, shape: StepShape) -> EmbeddingModel:
    """The model a step of ``shape`` trains, with ``method`` attached (real, on the CPU)."""
    model = copy.deepcopy(_initial_model(
        shape.backbone, shape.embedding_dim, shape.num_classes, shape.proxy_init, shape.image_size
    ))  # fmt: skip
    try:
        method.setup(model)
    except ValueError as e:
        raise UserError(f"method {method.name}: {e}") from None
    return model


@functools.lru_cache(maxsize=2)
def _initial_model(
    backbone: str,
    embedding_dim: int | None,
    num_classes: int,
    proxy_init: str,
    image_size: int | None,
) -> EmbeddingModel:
    """Built once per shape and copied for each method: initialising ViT-S's weights
    takes seconds, copying them milliseconds, and ``memory --all`` needs ~30 models."""
    torch.manual_seed(0)
    return build_model(
        backbone, None, embedding_dim, num_classes, proxy_init, image_size=image_size
    )


def step_trainer(model: EmbeddingModel, method: Method, shape: StepShape) -> Trainer:
    """A trainer as a run would build it (its optimizer groups, Proxy-Anchor), on the CPU
    with the step's autocast dtype and no loss scaling (in-place: no extra memory)."""
    config = RunConfig(optimizer=shape.optimizer, lr=1e-4, proxy_lr=1e-2, weight_decay=1e-4)
    optimizer = build_optimizer(config, method.param_groups(model, config.lr, config.proxy_lr))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Trainer(model, method, ProxyAnchorLoss(), optimizer, schedule, torch.device("cpu"),
                   AMP_DTYPES[shape.amp], loss_scaling=False,
                   check_first_step=False)  # fmt: skip


def step_batch(model: EmbeddingModel, shape: StepShape) -> tuple[torch.Size, torch.Tensor]:
    """The input shape and the labels: batch / k classes with k images each."""
    size = model.backbone.patch_embed.img_size
    labels = (torch.arange(shape.batch) // shape.images_per_class) % shape.num_classes
    return torch.Size((shape.batch, 3, *size)), labels


def _step(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor) -> None:
    trainer.model.train()
    trainer.backward_and_step(trainer.forward_loss(images, labels))


def track_step(
    model: EmbeddingModel, trainer: Trainer, method: Method, images, labels
) -> TensorMemoryTracker:
    """Two steps; the second (optimizer state in place) tracked."""
    _step(trainer, images, labels)
    tracker = TensorMemoryTracker()
    tracker.watch_model(model, host=method.host_resident(model))
    tracker.watch_optimizer(trainer.optimizer)
    tracker.add([images], "inputs")
    try:
        with tracker:
            _step(trainer, images, labels)
    finally:
        tracker.remove_hooks()
    return tracker


def estimate_step_memory(method: Method, shape: StepShape) -> MemoryEstimate:
    """The accelerator peak of a training step of ``shape``, on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = step_model(method, shape)
    trainer = step_trainer(model, method, shape)
    input_shape, labels = step_batch(model, shape)
    with FakeTensorMode(allow_non_fake_inputs=True), _scalar_draws_take_the_branch():
        images = torch.empty(input_shape)
        tracker = track_step(model, trainer, method, images, labels)
    return _estimate(tracker, shape)


@contextlib.contextmanager
def _scalar_draws_take_the_branch():
    """``torch.rand(1)`` answers 1.0 while a step runs on fake tensors.

    peft's LoHa and LoKr decide per step whether to skip the adapter with
    ``torch.rand(1) > module_dropout``; a fake tensor has no value to compare, so the
    estimate could not run. 1.0 takes the branch that applies the adapter: the peak of
    a step that runs it (the only kind with module_dropout 0, dmlbench's default)."""
    real = torch.rand

    def rand(*size, **kwargs):
        if size in ((1,), ((1,),)) and not kwargs:
            return 1.0
        return real(*size, **kwargs)

    torch.rand = rand
    try:
        yield
    finally:
        torch.rand = real


def track_real_step(method: Method, shape: StepShape) -> tuple[MemoryEstimate, dict]:
    """The same step on real CPU tensors, tracked the same way, with the process's RSS
    growth over it: what the estimate is checked against."""
    from dmlbench.train.meter import PeakMemory

    model = step_model(method, shape)
    trainer = step_trainer(model, method, shape)
    input_shape, labels = step_batch(model, shape)
    images = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    with PeakMemory(torch.device("cpu")) as memory:
        tracker = track_step(model, trainer, method, images, labels)
    return _estimate(tracker, shape), memory.result()


def _estimate(tracker: TensorMemoryTracker, shape: StepShape) -> MemoryEstimate:
    breakdown = {k: v for k, v in tracker.at_peak.items() if k != HOST}
    return MemoryEstimate(tracker.peak, breakdown, tracker.at_peak.get(HOST, 0), asdict(shape))
