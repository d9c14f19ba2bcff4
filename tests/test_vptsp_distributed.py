"""VPTSP on several processes (gloo on the CPU): 2 ranks make exactly the steps 1 process
makes on the global batch, for each prompt bank and both merges; torchrun end to end,
killed and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.registry import get_method
from dmlbench.testing import CLASSES, prepared
from dmlbench.train.checkpoint import trained_state
from dmlbench.train.distributed import SINGLE, DistContext
from dmlbench.train.trainer import Trainer

from .test_checkpoint import assert_same_final_result, final_result, only_run_dir, run_args

STEPS, WORLD, BATCH = 3, 2, 8
# (name, method, options, optimizer): each bank storage, both merges, the (B) variant.
# Not AdamW with bias: the key bias's gradient is zero but for rounding, which Adam's
# normalisation turns into full-size steps of either sign (measured: 0.03 apart).
VARIANTS = [
    ("m-device", "vptsp-m", {"bank": "device"}, "sgd"),
    ("m-host-bias", "vptsp-m", {"bank": "host", "bias": True}, "sgd"),
    ("g-lazy", "vptsp-g", {"bank": "lazy"}, "adamw"),
    ("g-host", "vptsp-g", {"bank": "host", "alpha": 0.3}, "sgd"),
]


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Classes spread over both halves (class c's images on both ranks, in a new order each
    step), so a rank alone would update P from a part of each class."""
    gen = torch.Generator().manual_seed(3)
    labels = torch.arange(CLASSES).repeat_interleave(BATCH // CLASSES)
    return [(torch.randn(BATCH, 3, 48, 48, generator=gen),
             labels[torch.randperm(BATCH, generator=gen)]) for _ in range(STEPS)]  # fmt: skip


def _trainer(method_name: str, options: dict, optimizer: str, ctx: DistContext) -> Trainer:
    model, method = prepared(get_method(method_name), options)
    groups = method.param_groups(model, lr=0.05, proxy_lr=0.5)
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    return Trainer(model, method, ProxyAnchorLoss(), opt, schedule, torch.device("cpu"), ctx=ctx)


def _train(trainer: Trainer, rows: slice) -> dict[str, torch.Tensor]:
    """Steps on ``rows`` of each global batch; the losses and the trained state after."""
    trainer.model.train()
    losses = []
    for images, labels in global_batches():
        loss = trainer.forward_loss(images[rows], labels[rows])
        losses.append(loss.detach())
        trainer.backward_and_step(loss)
    state = {k: v.detach().clone() for k, v in trained_state(trainer.model).items()
             if torch.is_tensor(v)}  # fmt: skip
    return {**state, "losses": torch.stack(losses)}


def _rank(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        ctx = DistContext(rank, WORLD, rank)
        share = BATCH // WORLD
        for name, method, options, optimizer in VARIANTS:
            state = _train(
                _trainer(method, options, optimizer, ctx), slice(rank * share, (rank + 1) * share)
            )
            save_file(state, f"{out}/{name}-rank{rank}.safetensors")  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_rank, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.parametrize("name, method, options, optimizer", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_two_processes_step_as_one_on_the_global_batch(two_ranks, name, method, options, optimizer):
    one = _train(_trainer(method, options, optimizer, SINGLE), slice(None))
    for rank in range(WORLD):
        ranked = load_file(str(two_ranks / f"{name}-rank{rank}.safetensors"))
        assert ranked.keys() == one.keys()
        assert "semantic.memory" in one and "semantic.bank.weight" in one
        for key, expected in one.items():
            # the loss of every step, P, O, the class prompts and every trained tensor, to
            # 1e-5 of the tensor's scale (float32 rounding of 4 + 4 images against 8 grows
            # through three momentum steps: 5e-6 of O's largest entry on the device bank)
            scale = max(1.0, float(expected.abs().amax()))
            difference = float((ranked[key] - expected).abs().amax())
            assert difference <= 1e-5 * scale, f"{name} rank {rank}: {key} off by {difference:.2e}"
    start = _trainer(method, options, optimizer, SINGLE).model.semantic.bank.weight.detach()
    assert (one["semantic.bank.weight"] - start).abs().amax() > 1e-4  # the class prompts trained


def test_gru_dropout_is_refused_on_several_processes_with_its_reason():
    method = get_method("vptsp-g").from_values({"gru_dropout": 0.1})
    assert "gru_dropout=0.1" in method.processes_problem()
    assert get_method("vptsp-g").from_values({}).processes_problem() is None
    assert get_method("vptsp-m").from_values({}).processes_problem() is None


def _torchrun(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run([*launcher, "-m", "dmlbench", *args], capture_output=True, text=True,
                          env=env)  # fmt: skip


def _vptsp_args(glyph_folder: Path, output: Path) -> list[str]:
    args = run_args(glyph_folder, output, "vptsp-g")
    args[args.index("--epochs") + 1] = "2"  # 3 steps each
    return [*args, "--opt", "bank=lazy"]  # the bank DDP does not see: averaged rows, own steps


def test_vptsp_under_torchrun_killed_and_resumed_ends_as_uninterrupted(glyph_folder, tmp_path):
    whole = _torchrun(_vptsp_args(glyph_folder, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert whole.stdout.count("result (vptsp-g") == 1  # rank 0 reports
    reference = final_result(only_run_dir(tmp_path / "whole"))
    assert [r["train_images"] for r in reference[0]] == [24, 24]  # the global batch
    summary = json.loads((only_run_dir(tmp_path / "whole") / "summary.json").read_text())
    assert summary["processes"] == 2

    killed_output = tmp_path / "killed"
    killed = _torchrun(_vptsp_args(glyph_folder, killed_output), {"DMLBENCH_KILL_AT": "step:5"})
    assert killed.returncode != 0
    run_dir = only_run_dir(killed_output)
    assert "SIGKILL" in killed.stderr  # torchrun names the signal its workers died of
    resumed = _torchrun(["run", "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at epoch" in resumed.stdout
    assert_same_final_result(run_dir, reference)
