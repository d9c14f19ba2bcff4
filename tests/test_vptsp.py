"""VPTSP's own equations and training-time behaviour, on small tensors and a tiny ViT."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from dmlbench.nn.labels import batch_classes
from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.registry import get_method
from dmlbench.train.trainer import Trainer

from .test_contract import C, batches, prepared_method, tiny_model


def test_gru_cell_matches_a_hand_computation():
    from dmlbench.methods.vptsp import ProxyGRUCell

    cell = ProxyGRUCell(2)
    with torch.no_grad():
        cell.input.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0], [2, 0], [0, -1]]))
        cell.input.bias.copy_(torch.tensor([0.0, 0.1, 0, 0, 0, 0.5]))
        cell.hidden.weight.copy_(torch.tensor([[0.5, 0], [0, 0], [0, 0], [0, 1], [1, 0], [0, 1]]))
    p, h = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 2.0]])
    sig = torch.sigmoid
    # z = σ(W_z p + U_z h + b_z) etc., one row of W/U per output unit:
    z = sig(torch.tensor([1 + 0.25, -1 + 0.1]))
    r = sig(torch.tensor([0 + 0.0, 0 + 2.0]))
    n = torch.relu(torch.tensor([2 + r[0] * 0.5, 1 + 0.5 + r[1] * 2.0]))
    expected = (1 - z) * n + z * h[0]  # the reference's orientation of the gate
    torch.testing.assert_close(cell(p, h)[0], expected)
    assert ProxyGRUCell.parameter_count(384) == 885_888  # vptsp.md


def test_gru_cell_computes_the_references_cell_from_its_matrices():
    """The reference keeps W_iz, W_hz, … as D × D matrices applied as x @ W; ours are the
    same numbers, transposed into two Linear layers."""
    from dmlbench.methods.vptsp import ProxyGRUCell

    torch.manual_seed(0)
    d = 5
    w = {k: torch.randn(d, d) for k in ("iz", "hz", "ir", "hr", "in", "hn")}
    b = {k: torch.randn(d) for k in ("iz", "ir", "in")}
    x, h = torch.randn(3, d), torch.randn(3, d)
    z = torch.sigmoid(x @ w["iz"] + h @ w["hz"] + b["iz"])
    r = torch.sigmoid(x @ w["ir"] + h @ w["hr"] + b["ir"])
    n = torch.relu(x @ w["in"] + r * (h @ w["hn"]) + b["in"])
    reference = (1 - z) * n + z * h
    cell = ProxyGRUCell(d)
    with torch.no_grad():
        cell.input.weight.copy_(torch.cat([w["iz"].T, w["ir"].T, w["in"].T]))
        cell.input.bias.copy_(torch.cat([b["iz"], b["ir"], b["in"]]))
        cell.hidden.weight.copy_(torch.cat([w["hz"].T, w["hr"].T, w["hn"].T]))
    torch.testing.assert_close(cell(x, h), reference)


def test_gru_init_is_xavier_per_matrix_with_zero_biases_and_dropout_on_the_output():
    import math

    from dmlbench.methods.vptsp import ProxyGRUCell

    torch.manual_seed(0)
    cell = ProxyGRUCell(384, dropout=0.5)
    bound = math.sqrt(6 / (384 + 384))  # xavier_uniform on each 384 × 384 matrix
    for matrix in [*cell.input.weight.chunk(3), *cell.hidden.weight.chunk(3)]:
        assert bound * 0.99 < matrix.abs().max() <= bound
    assert torch.count_nonzero(cell.input.bias) == 0
    cell.train()
    out = cell(torch.randn(64, 384), torch.randn(64, 384))
    assert 0.4 < (out == 0).float().mean() < 0.6  # half the outputs dropped, not the input


def test_moving_average_update_by_hand():
    method = get_method("vptsp-m").from_values({"keep": 0.8})
    previous = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    labels = torch.tensor([7, 9, 7])  # images 0 and 2 belong to the first class
    out = method._update(None, previous, p, batch_classes(labels))
    torch.testing.assert_close(out[0], 0.8 * previous[0] + 0.2 * (p[0] + p[2]) / 2)
    torch.testing.assert_close(out[1], 0.8 * previous[1] + 0.2 * p[1])


def one_step(model, method, images, labels):
    optimizer = torch.optim.SGD(method.param_groups(model, lr=0.05, proxy_lr=0.5), lr=0.05)
    model.train()
    proxies = method.proxies(model, images, labels)
    loss = ProxyAnchorLoss()(model(images), labels, proxies)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    method.after_step(model, optimizer, 1.0)
    return proxies


def test_absent_classes_keep_their_memory_and_still_train_o():
    for name in ("vptsp-m", "vptsp-g"):
        model, method, _ = prepared_method(name, False)
        images = batches(1)[0][0][:4]
        labels = torch.tensor([0, 0, 1, 1])  # classes 2 and 3 are absent
        memory = model.semantic.memory.clone()
        proxies_o = model.proxies.detach().clone()
        one_step(model, method, images, labels)
        after = model.semantic.memory
        assert torch.equal(after[2:], memory[2:]), name
        assert not torch.equal(after[:2], memory[:2]), name
        assert torch.allclose(after.norm(dim=1), torch.ones(C)), name
        assert not torch.equal(model.proxies[2:].detach(), proxies_o[2:]), name


def test_class_prompts_get_gradient_through_the_frozen_backbone():
    model, method, _ = prepared_method("vptsp-g", False)
    bank = model.semantic.bank.weight.detach().clone()
    frozen = {n: p.detach().clone() for n, p in model.pretrained_parameters().items()}
    images = batches(1)[0][0][:4]
    labels = torch.tensor([1, 1, 3, 3])
    one_step(model, method, images, labels)
    after = model.semantic.bank.weight.detach()
    assert not torch.equal(after[1], bank[1]) and not torch.equal(after[3], bank[3])
    # plain SGD, no momentum, no decay: rows of absent classes get no update at all
    assert torch.equal(after[0], bank[0]) and torch.equal(after[2], bank[2])
    for name, value in model.pretrained_parameters().items():
        assert torch.equal(frozen[name], value), name


def test_inference_is_vpt():
    """Eval embeddings of VPTSP = those of VPT with the same shared prompts and head."""
    vptsp, method, _ = prepared_method("vptsp-g", False)
    for _ in range(2):
        one_step(vptsp, method, *batches(1)[0])
    vpt = tiny_model()
    get_method("vpt").from_values({}).setup(vpt)
    vpt.backbone.vpt_prompts.load_state_dict(vptsp.backbone.vpt_prompts.state_dict())
    vpt.head.load_state_dict(vptsp.head.state_dict())
    vptsp.eval(), vpt.eval()
    images = batches(1)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(vptsp(images), vpt(images), rtol=0, atol=0)


def test_q_mixes_memory_and_original_proxies():
    model, method, _ = prepared_method("vptsp-m", False)
    model.eval()
    q = method.proxies(model, None, None)
    expected = F.normalize(0.5 * model.semantic.memory + 0.5 * model.proxies, dim=-1)
    torch.testing.assert_close(q, expected)


def test_checkpointing_gives_the_same_gradients():
    grads = []
    for flag in (False, True):
        method = get_method("vptsp-g").from_values({"checkpointing": flag})
        model = tiny_model()
        method.setup(model)
        images, labels = batches(1)[0]
        model.train()
        embeddings = model(images)  # the trainer's order: sample pass, then proxy pass
        proxies = method.proxies(model, images, labels)
        ProxyAnchorLoss()(embeddings, labels, proxies).backward()
        staged = model.semantic.bank.weight.grad
        shared = model.backbone.vpt_prompts.tokens[0].grad
        assert staged.abs().sum() > 0 and shared.abs().sum() > 0
        grads.append((staged, shared, model.semantic.gru.input.weight.grad))
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, checkpointed, rtol=1e-5, atol=1e-7)


def test_o_starts_as_in_the_reference_and_its_share_of_q_is_reported():
    """O = xavier_uniform/8: row norm ≈ 0.157 for C = 100, E = 384, so at α = 0.5 O is
    ~13.6% of each Q (Proxy-Anchor's kaiming init would make it ~74%)."""
    import math

    from dmlbench.methods.vptsp import o_share

    from dmlbench.nn.model import build_model

    torch.manual_seed(0)
    model = build_model("vit_glyph_patch8_48", None, 384, 100)
    method = get_method("vptsp-g").from_values({})
    method.setup(model)
    expected_norm = math.sqrt(384) * math.sqrt(6 / (100 + 384)) / math.sqrt(3) / 8
    norms = model.proxies.detach().norm(dim=1)
    assert norms.mean().item() == pytest.approx(expected_norm, rel=0.02)
    assert torch.allclose(model.semantic.memory.norm(dim=1), torch.ones(100))
    share = 0.5 * expected_norm / (0.5 * expected_norm + 0.5)
    assert method.state_report(model)["o_share"] == pytest.approx(share, rel=0.02)
    assert o_share(torch.ones(1, 2), torch.full((1, 2), 3.0), 0.5) == pytest.approx(0.75)


def steps_with_absent_classes(name: str, options: dict, optimizer: str, steps: int = 6):
    """Train a VPTSP model a few steps on batches that leave classes out; the bank after."""
    torch.manual_seed(3)
    model = tiny_model()
    method = get_method(name).from_values(options)
    method.setup(model)
    groups = method.param_groups(model, lr=0.05, proxy_lr=0.5)
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9, weight_decay=1e-2)
    else:
        opt = torch.optim.AdamW(groups, lr=0.05, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    trainer = Trainer(model, method, ProxyAnchorLoss(), opt, scheduler, torch.device("cpu"))
    gen = torch.Generator().manual_seed(5)
    schedule = [[0, 1], [2, 3], [0, 2], [1, 3], [0, 1], [0, 3]][:steps]
    data = [
        (torch.randn(4, 3, 48, 48, generator=gen), torch.tensor(classes).repeat_interleave(2))
        for classes in schedule
    ]
    trainer.train_epoch(data, epoch=1)
    return model.semantic.bank.weight.detach().clone(), schedule


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_host_bank_gives_what_torch_optim_gives_the_dense_parameter(optimizer):
    """device: the class prompts are one parameter in the run's optimizer (torch.optim);
    host: the same parameter in host memory. Over steps where classes are absent,
    momentum, Adam's moments and weight decay move absent rows in both alike."""
    device_bank, _ = steps_with_absent_classes("vptsp-g", {"bank": "device"}, optimizer)
    host_bank, schedule = steps_with_absent_classes("vptsp-g", {"bank": "host"}, optimizer)
    torch.testing.assert_close(host_bank, device_bank, rtol=0, atol=0)
    initial, _ = steps_with_absent_classes("vptsp-g", {"bank": "device"}, optimizer, steps=0)
    # class 1 is absent from step 2 but keeps moving (momentum / moments / decay)
    assert schedule[1] == [2, 3] and not torch.equal(device_bank[1], initial[1])


def test_lazy_bank_moves_only_the_batchs_rows_and_equals_dense_when_all_are_present():
    lazy, _ = steps_with_absent_classes("vptsp-m", {"bank": "lazy"}, "adamw", steps=2)
    initial, _ = steps_with_absent_classes("vptsp-m", {"bank": "lazy"}, "adamw", steps=0)
    # step 1 had classes 0, 1 and step 2 classes 2, 3: each row moved exactly once
    for row in range(C):
        assert not torch.equal(lazy[row], initial[row])
    one, _ = steps_with_absent_classes("vptsp-m", {"bank": "lazy"}, "adamw", steps=1)
    assert torch.equal(one[2], initial[2]) and torch.equal(one[3], initial[3])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_lazy_bank_equals_the_dense_parameter_when_every_class_is_in_every_batch(optimizer):
    """With every row stepped every step, the memory bank is torch.optim on the rows."""

    def run(bank: str):
        torch.manual_seed(3)
        model = tiny_model()
        method = get_method("vptsp-g").from_values({"bank": bank})
        method.setup(model)
        groups = method.param_groups(model, lr=0.05, proxy_lr=0.5)
        kind = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
        extra = {"momentum": 0.9} if optimizer == "sgd" else {}
        opt = kind(groups, lr=0.05, weight_decay=1e-2, **extra)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
        trainer = Trainer(model, method, ProxyAnchorLoss(), opt, scheduler, torch.device("cpu"))
        trainer.train_epoch(batches(4), epoch=1)
        return model.semantic.bank.weight.detach()

    torch.testing.assert_close(run("lazy"), run("device"), rtol=1e-5, atol=1e-7)


def test_a_run_records_o_share_and_best_epoch_on_test_beside_the_final_epoch(tiny_run_args):
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from dmlbench.cli import main

    args = [*tiny_run_args, "--method", "vptsp-g", "--epochs", "2", "--eval-every", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("stored in ")[1])
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines()]
    best = summary["best_on_test"]
    assert best["epochs_evaluated"] == 2 and "never used for any choice" in best["note"]
    assert best["recall@1"] == max(e["recall@1"] for e in epochs)
    assert summary["metrics"]["recall@1"] == epochs[-1]["recall@1"]  # the headline: final
    state = summary["method_state"]
    assert 0 < state["start"]["o_share"] < 0.3 and 0 < state["end"]["o_share"] < 1
    # the mechanism per epoch: O's share of Q and the cosine between P and O
    assert [sorted(k for k in e if k.startswith("state.")) for e in epochs] == [
        ["state.cos_p_o", "state.o_share"]
    ] * 2
    assert epochs[-1]["state.o_share"] == pytest.approx(state["end"]["o_share"])
    assert all(-1 <= e["state.cos_p_o"] <= 1 for e in epochs)
