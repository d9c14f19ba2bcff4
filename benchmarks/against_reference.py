"""Run the VPTSP authors' code beside dmlbench on the same weights and batches, and
print how far apart every quantity is.

    git clone https://github.com/Noahsark/ParameterEfficient-DML ref && git -C ref checkout c7c9416
    python benchmarks/against_reference.py --reference ref            # every row, float32
    python benchmarks/against_reference.py --reference ref --dtype float64 --rows vptsp-g-b

Why a script and not a test: the reference is the authors' repository, which the
suite must not copy or download; this imports it at run time from the user's
clone (its ``architectures/peft_vit.py``, ``criteria/dml_proxy_peft.py`` and the
argument defaults of ``params.py``) and needs no GPU and no network.

What is compared, per row (VPT, VPT (B), VPTSP-M, VPTSP-M (B), VPTSP-G,
VPTSP-G (B)), on dmlbench's CUB recipe (SGD with momentum 0.9, lr 5e-3, O at
0.1, weight decay 1e-6, the cosine over 50 epochs stepped per epoch, k = 2,
Proxy-Anchor with both terms over C) against the reference's
``config/cub200_small.yaml`` with the method switches of the row:

* the sample pass's embeddings, the proxies the loss sees (Q = normalise((1 − α)P
  + αO) for every class), the memory P after each update, and the loss;
* the gradient of every parameter the reference optimizes, mapped to ours
  (prompts per block, class prompts per block, both heads, the GRU's nine
  matrices and biases, O, BitFit's biases);
* after each optimizer step: the parameters, the optimizer's state (momentum
  buffers; Adam's moments with ``--optimizer adamw``) and every group's lr.

Each number printed is the largest absolute difference over all steps and all
elements. Both sides start from the same values: the reference's freshly
initialised parameters are overwritten with dmlbench's (the two inits are
compared by distribution in the test suite, not by value here).

Adjustments made to run the reference on CPU and on any timm ViT, none of which
changes what it computes: ``Module.cuda`` is the identity while the reference
model is built when no GPU is present; ``timm.create_model`` inside the
reference returns a copy of dmlbench's backbone (so both hold the same
pretrained weights); ``Network._cal_channels`` (used only by a proxy variant
VPTSP does not use) returns the token count when the backbone's patch
embedding is not one convolution (the glyph ViT's convolutional stem); the
training step is ``main.py``'s (zero both optimizers, forward with labels, the
criterion, backward, step the model's and the proxies' optimizers, the
schedulers once per epoch) without the fp16 loss scaler.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from dmlbench.config import RunConfig, resolve
from dmlbench.data.spec import get_dataset
from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.nn.model import build_model
from dmlbench.registry import get_method
from dmlbench.train.optim import build_optimizer, build_scheduler
from dmlbench.train.trainer import Trainer

REFERENCE_COMMIT = "c7c9416"

# Row name → (dmlbench method, bias, the reference's semantic_mix_type or None for VPT)
ROWS: dict[str, tuple[str, bool, str | None]] = {
    "vpt": ("vpt", False, None),
    "vpt-b": ("vpt", True, None),
    "vptsp-m": ("vptsp-m", False, "mix"),
    "vptsp-m-b": ("vptsp-m", True, "mix"),
    "vptsp-g": ("vptsp-g", False, "gru_relu"),
    "vptsp-g-b": ("vptsp-g", True, "gru_relu"),
}


@dataclass
class View:
    """One reference parameter and how to read its counterpart from one of ours.

    ``read`` turns a tensor shaped like ``ours`` (its value, gradient or an optimizer
    state) into the reference parameter's shape, so values, gradients and momenta
    are compared through the same map."""

    name: str
    theirs: torch.nn.Parameter
    ours: torch.Tensor
    read: Callable[[torch.Tensor], torch.Tensor]


def fail(message: str) -> None:
    print(f"against_reference: {message}", file=sys.stderr)
    raise SystemExit(2)


def import_reference(path: Path):
    """The reference's modules, imported from the user's clone (never copied)."""
    needed = ["architectures/peft_vit.py", "criteria/dml_proxy_peft.py", "params.py",
              "config/cub200_small.yaml"]  # fmt: skip
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        fail(f"{path} is not a clone of Noahsark/ParameterEfficient-DML (no {missing[0]})")
    sys.path.insert(0, str(path.resolve()))
    try:
        peft_vit = importlib.import_module("architectures.peft_vit")
        criterion = importlib.import_module("criteria.dml_proxy_peft")
        params = importlib.import_module("params")
    except ImportError as error:
        fail(f"cannot import the reference from {path} ({error})")
    return peft_vit, criterion, params


def reference_commit(path: Path) -> str:
    try:
        done = subprocess.run(["git", "-C", str(path), "rev-parse", "--short=7", "HEAD"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone)"


def reference_options(params, path: Path, config: RunConfig, model, method, mix: str | None):
    """The reference's defaults, its CUB config, then the row's switches and our shapes."""
    parser = argparse.ArgumentParser()
    for add in ("basic_training_parameters", "scale_optimizing_parameters",
                "batch_creation_parameters", "batchmining_specific_parameters",
                "loss_specific_parameters"):  # fmt: skip
        parser = getattr(params, add)(parser)
    opt = parser.parse_args([])
    recipe = yaml.safe_load((path / "config/cub200_small.yaml").read_text())
    for key, entry in recipe.items():
        setattr(opt, key, entry["value"])
    spec = model.spec
    o = method.options
    shared_layers = len(model.backbone.vpt_prompts.counts)
    opt.device = torch.device("cpu")
    opt.pretrained_model = config.backbone
    opt.n_classes = spec.num_classes
    opt.embed_dim = spec.embedding_dim
    opt.batch_size, opt.samples_per_class = config.batch_size, config.images_per_class
    opt.vit_bitfit = bool(o.bias)
    opt.vit_prompt = True
    opt.num_prompt, opt.prompt_depth, opt.prompt_block_step = o.prompts, shared_layers, o.taper
    opt.vit_proxy_net = mix is not None
    opt.mix_precision = False
    opt.feature_dropout = 0.0
    if mix is not None:
        opt.semantic_mix_type = mix
        opt.proxy_bias_ratio = o.alpha
        opt.proxy_mix_keep_ratio = o.keep
        opt.num_p_prompt = o.class_prompts
        opt.p_prompt_depth = len(method.class_counts)
        opt.prompt_p_block_step = o.class_taper
        opt.rnn_dropout = o.gru_dropout
    for ours, theirs in (("optimizer", "optim"), ("lr", "lr"), ("proxy_lr", "lr_proxy"),
                         ("weight_decay", "decay"), ("cosine_epochs", "lr_cosine_length"),
                         ("lr_min", "lr_cosine_min")):  # fmt: skip
        setattr(opt, theirs, getattr(config, ours))
    return opt


@contextlib.contextmanager
def reference_on_this_machine(peft_vit, backbone: torch.nn.Module):
    """See the module docstring: cuda() as identity without a GPU, our backbone's copy
    for timm.create_model, the token count for _cal_channels on a conv stem."""
    saved_cuda = torch.nn.Module.cuda
    saved_create = peft_vit.timm.create_model
    saved_channels = peft_vit.Network._cal_channels

    def channels(self) -> int:
        try:
            return saved_channels(self)
        except AttributeError:
            return self.model.patch_embed.num_patches + self.model.num_prefix_tokens

    if not torch.cuda.is_available():
        torch.nn.Module.cuda = lambda self, device=None: self
    peft_vit.timm.create_model = lambda name, pretrained=False, **kw: copy.deepcopy(backbone)
    peft_vit.Network._cal_channels = channels
    try:
        yield
    finally:
        torch.nn.Module.cuda = saved_cuda
        peft_vit.timm.create_model = saved_create
        peft_vit.Network._cal_channels = saved_channels


def views(ours, method, theirs, mix: str | None) -> list[View]:
    """Every parameter the reference optimizes, with its counterpart in our model."""
    out: list[View] = []
    prompts = ours.backbone.vpt_prompts
    for i, tokens in enumerate(prompts.tokens):
        out.append(View(f"prompts[{i}]", theirs.prompts[i], tokens, lambda t: t.unsqueeze(0)))
    out += [
        View("head.norm.weight", theirs.fc_norm.weight, ours.head.norm.weight, lambda t: t),
        View("head.norm.bias", theirs.fc_norm.bias, ours.head.norm.bias, lambda t: t),
        View("head.proj.weight", theirs.head.weight, ours.head.proj.weight, lambda t: t),
        View("head.proj.bias", theirs.head.bias, ours.head.proj.bias, lambda t: t),
        View("O", theirs.proxies_bias, ours.proxies, lambda t: t),
    ]
    if method.options.bias:
        for name, p in ours.pretrained_biases().items():
            out.append(View(f"bias {name}", theirs.model.get_parameter(name), p, lambda t: t))
    if mix is None:
        return out
    semantic = ours.semantic
    offset = 0
    for i, n in enumerate(method.class_counts):
        read = lambda t, a=offset, b=offset + n: t[:, a:b]  # noqa: E731
        out.append(View(f"class prompts[{i}]", theirs.p_prompts[i], semantic.bank.weight, read))
        offset += n
    head = semantic.proxy_head
    out += [
        View("proxy head.norm.weight", theirs.p_fc_norm.weight, head.norm.weight, lambda t: t),
        View("proxy head.norm.bias", theirs.p_fc_norm.bias, head.norm.bias, lambda t: t),
        View("proxy head.proj.weight", theirs.p_head.weight, head.proj.weight, lambda t: t),
        View("proxy head.proj.bias", theirs.p_head.bias, head.proj.bias, lambda t: t),
    ]
    if semantic.gru is not None:
        gru, cell = semantic.gru, theirs.rnn_update
        for j, gate in enumerate("zrn"):
            pick = lambda t, j=j: t.chunk(3, dim=0)[j].T  # noqa: E731
            out.append(View(f"GRU W_i{gate}", getattr(cell, f"W_i{gate}"), gru.input.weight, pick))
            out.append(View(f"GRU W_h{gate}", getattr(cell, f"W_h{gate}"), gru.hidden.weight, pick))
            bias = lambda t, j=j: t.chunk(3, dim=0)[j]  # noqa: E731
            out.append(View(f"GRU b_i{gate}", getattr(cell, f"b_i{gate}"), gru.input.bias, bias))
    return out


def reference_parameters(theirs) -> list[torch.nn.Parameter]:
    groups = [*theirs.optimizer.param_groups, *theirs.p_optimizer.param_groups]
    return [p for g in groups for p in g["params"] if p.requires_grad]


class Worst:
    """The largest absolute difference seen per quantity."""

    def __init__(self):
        self.by_quantity: dict[str, float] = {}
        self.scale: dict[str, float] = {}  # the largest |reference value| seen, for relative gaps

    def see(self, quantity: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        if ours.shape != theirs.shape:
            fail(f"{quantity}: shapes differ, ours {tuple(ours.shape)}, "
                 f"the reference's {tuple(theirs.shape)}")  # fmt: skip
        theirs = theirs.detach().double()
        gap = float((ours.detach().double() - theirs).abs().max())
        self.by_quantity[quantity] = max(self.by_quantity.get(quantity, 0.0), gap)
        self.scale[quantity] = max(self.scale.get(quantity, 0.0), float(theirs.abs().max()))

    def relative(self, quantity: str) -> float:
        return self.by_quantity[quantity] / self.scale[quantity] if self.scale[quantity] else 0.0


def optimizer_states(optimizer, param) -> dict[str, torch.Tensor]:
    return {k: v for k, v in optimizer.state.get(param, {}).items()
            if torch.is_tensor(v) and v.dim() > 0}  # fmt: skip


def compare_row(args, reference, row: str) -> Worst:
    peft_vit, criterion_module, params = reference
    method_name, bias, mix = ROWS[row]
    dataset = get_dataset("cub")
    config = resolve(
        RunConfig(method=method_name, method_options={"bias": bias}, dataset="cub",
                  backbone=args.backbone, weights=args.weights, batch_size=args.batch_size,
                  optimizer=args.optimizer),
        dataset,
    )  # fmt: skip
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    ours = build_model(config.backbone, config.weights, config.embedding_dim, args.classes,
                       config.proxy_init)  # fmt: skip
    pristine = copy.deepcopy(ours.backbone)  # before any method touches it
    method = get_method(method_name).from_values(config.method_options)
    method.setup(ours)
    opt = reference_options(params, args.reference, config, ours, method, mix)
    with reference_on_this_machine(peft_vit, pristine):
        theirs = peft_vit.Network(opt)
    ours.to(dtype).train()
    theirs.to(dtype).train()
    theirs.proxies_container = theirs.proxies_container.to(dtype)

    groups = method.param_groups(ours, config.lr, config.proxy_lr)
    our_optimizer = build_optimizer(config, groups)
    our_schedule = build_scheduler(config, our_optimizer, args.steps_per_epoch)
    loss_fn = ProxyAnchorLoss(config.loss_alpha, config.loss_margin, config.loss_positive_divisor)
    trainer = Trainer(ours, method, loss_fn, our_optimizer, our_schedule, torch.device("cpu"),
                      grad_clip=config.grad_clip)  # fmt: skip
    # main.py's optimizers and schedulers
    make = {"sgd": lambda g: torch.optim.SGD(g, momentum=opt.sdg_momentum),
            "adamw": lambda g: torch.optim.AdamW(g)}[opt.optim]  # fmt: skip
    theirs.optimizer = make(theirs.optim_dict_list)
    theirs.p_optimizer = make(theirs.p_optim_dict_list)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR
    schedules = [cosine(theirs.optimizer, T_max=opt.lr_cosine_length, eta_min=opt.lr_cosine_min),
                 cosine(theirs.p_optimizer, T_max=opt.lr_cosine_length,
                        eta_min=opt.lr_cosine_min)]  # fmt: skip
    criterion = criterion_module.Criterion(opt)

    mapped = views(ours, method, theirs, mix)
    covered = {id(v.theirs) for v in mapped}
    unused = [theirs.rnn_update.W_ia] if hasattr(theirs, "rnn_update") else []
    covered |= {id(p) for p in unused}  # created and counted there, never used (fidelity #15)
    left = [p.shape for p in reference_parameters(theirs) if id(p) not in covered]
    if left:
        fail(f"{row}: reference parameters with no counterpart in dmlbench: {left}")
    ours_trainable = {id(p) for g in our_optimizer.param_groups for p in g["params"]}
    if ours_trainable != {id(v.ours) for v in mapped}:
        fail(f"{row}: dmlbench trains parameters the reference does not (or the reverse)")
    with torch.no_grad():  # one starting point
        for v in mapped:
            v.theirs.copy_(v.read(v.ours))
        if mix is not None:  # unit rows in the working precision (the reference renormalises
            # every row at each update, which would move float32-normalised rows in float64)
            ours.semantic.memory.copy_(F.normalize(ours.semantic.memory, dim=-1))
            theirs.proxies_container = ours.semantic.memory.detach().clone()

    seen: dict[str, torch.Tensor] = {}
    ours.register_forward_hook(lambda module, inputs, output: seen.__setitem__("embeds", output))
    proxies = method.proxies

    def watched(model, images, labels):
        seen["Q"] = proxies(model, images, labels)
        return seen["Q"]

    method.proxies = watched
    worst = Worst()
    generator = torch.Generator().manual_seed(args.seed)
    k = config.images_per_class
    classes_per_batch = config.batch_size // k
    size = ours.backbone.patch_embed.img_size
    for step in range(args.steps):
        classes = torch.randperm(args.classes, generator=generator)[:classes_per_batch]
        labels = classes.repeat_interleave(k)  # a class's k images side by side (main.py's batches)
        images = torch.randn(len(labels), 3, *size, generator=generator).to(dtype)

        loss = trainer.forward_loss(images, labels)
        trainer.backward_and_step(loss)

        theirs.optimizer.zero_grad(set_to_none=True)
        theirs.p_optimizer.zero_grad(set_to_none=True)
        out = theirs(x=images, labels=labels, anchor=None)
        their_loss = criterion(batch=out["embeds"], proxies=out["proxies"], labels=labels)
        their_loss.backward()
        theirs.optimizer.step()
        theirs.p_optimizer.step()
        if (step + 1) % args.steps_per_epoch == 0:
            for schedule in schedules:
                schedule.step()

        worst.see("sample-pass embeddings", seen["embeds"], out["embeds"])
        worst.see(
            "proxies Q (all classes)",
            F.normalize(seen["Q"], dim=-1),
            F.normalize(out["proxies"][0], dim=-1),
        )
        if mix is not None:
            worst.see("memory P after the update", ours.semantic.memory, theirs.proxies_container)
        worst.see("loss", loss, their_loss)
        for v in mapped:
            worst.see(f"grad {v.name}", v.read(v.ours.grad), v.theirs.grad)
            worst.see(f"value {v.name}", v.read(v.ours), v.theirs)
            their_optimizer = (
                theirs.p_optimizer if v.theirs is theirs.proxies_bias else theirs.optimizer
            )
            mine, theirs_state = (
                optimizer_states(our_optimizer, v.ours),
                optimizer_states(their_optimizer, v.theirs),
            )
            for key in sorted(set(mine) & set(theirs_state)):
                worst.see(f"{key} {v.name}", v.read(mine[key]), theirs_state[key])
        if any(p.grad is not None and p.grad.abs().max() > 0 for p in unused):
            fail(f"{row}: the reference's GRU W_ia got a gradient; it was expected unused")
        model_lr, o_lr = (g["lr"] for g in our_optimizer.param_groups)
        their_lrs = [g["lr"] for g in theirs.optimizer.param_groups]
        worst.see("lr (model)", torch.tensor([model_lr] * len(their_lrs)), torch.tensor(their_lrs))
        worst.see(
            "lr (O)", torch.tensor(o_lr), torch.tensor(theirs.p_optimizer.param_groups[0]["lr"])
        )
    return worst


def summarise(worst: Worst, details: bool) -> dict[str, tuple[float, float]]:
    """Per kind of quantity (gradients, values, momenta of all parameters together):
    the largest absolute difference and the largest relative one (to the largest
    reference magnitude of that parameter)."""
    kinds: dict[str, tuple[float, float]] = {}
    for quantity, gap in worst.by_quantity.items():
        relative = worst.relative(quantity)
        head = quantity.split(" ")[0]
        kind = {"grad": "every gradient", "value": "every parameter after each step",
                "momentum_buffer": "every momentum buffer", "exp_avg": "Adam's first moments",
                "exp_avg_sq": "Adam's second moments"}.get(head, quantity)  # fmt: skip
        if details:
            kind = quantity
        known = kinds.get(kind, (0.0, 0.0))
        kinds[kind] = (max(known[0], gap), max(known[1], relative))
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        help="a clone of Noahsark/ParameterEfficient-DML (commit c7c9416)",
    )
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument(
        "--backbone",
        default="vit_glyph_patch8_48",
        help="any timm ViT dmlbench can build (default: the glyph ViT, shipped)",
    )
    parser.add_argument("--weights", default="pretrained")
    parser.add_argument("--classes", type=int, default=100, help="training classes (CUB: 100)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=2,
        help="so that the per-epoch cosine changes the lr within --steps",
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--details", action="store_true", help="every parameter, not per kind")
    args = parser.parse_args(argv)
    if not args.reference.is_dir():
        fail(f"--reference {args.reference}: no such folder; clone the authors' repository there")
    reference = import_reference(args.reference)
    commit = reference_commit(args.reference)
    note = (
        ""
        if commit.startswith(REFERENCE_COMMIT)
        else f" (docs/fidelity.md used {REFERENCE_COMMIT})"
    )
    print(f"reference: {args.reference} at {commit}{note}; backbone {args.backbone}, "
          f"{args.dtype}, {args.steps} steps of {args.batch_size} images, {args.classes} classes, "
          f"{args.optimizer}")  # fmt: skip
    for row in args.rows:
        worst = compare_row(args, reference, row)
        print(
            f"\n{row}: largest difference over {args.steps} steps "
            "(absolute; relative to the largest reference magnitude)"
        )
        for quantity, (gap, relative) in summarise(worst, args.details).items():
            print(f"  {quantity:<44} {gap:9.2e}  {relative:9.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
