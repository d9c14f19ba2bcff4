"""VPTSP's own equations and training-time behaviour, on small tensors and a tiny ViT."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dmlbench.losses import ProxyAnchorLoss
from dmlbench.registry import get_method

from .test_contract import C, batches, prepared, tiny_model


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
    expected = (1 - z) * h[0] + z * n
    torch.testing.assert_close(cell(p, h)[0], expected)
    assert ProxyGRUCell.parameter_count(384) == 885_888  # vptsp.md


def test_moving_average_update_by_hand():
    method = get_method("vptsp-m").from_values({"keep": 0.8})
    previous = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    slot = torch.tensor([0, 1, 0])  # images 0 and 2 belong to the first class
    out = method._update(None, previous, p, slot)
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
        model, method, _ = prepared(name, False)
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
    model, method, _ = prepared("vptsp-g", False)
    bank = model.semantic.bank.weight.detach().clone()
    frozen = {n: p.detach().clone() for n, p in model.pretrained_parameters().items()}
    images = batches(1)[0][0][:4]
    labels = torch.tensor([1, 1, 3, 3])
    one_step(model, method, images, labels)
    after = model.semantic.bank.weight.detach()
    assert not torch.equal(after[1], bank[1]) and not torch.equal(after[3], bank[3])
    assert torch.equal(after[0], bank[0]) and torch.equal(after[2], bank[2])  # lazy rows
    for name, value in model.pretrained_parameters().items():
        assert torch.equal(frozen[name], value), name


def test_inference_is_vpt():
    """Eval embeddings of VPTSP = those of VPT with the same shared prompts and head."""
    vptsp, method, _ = prepared("vptsp-g", False)
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
    model, method, _ = prepared("vptsp-m", False)
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
        staged = model.semantic.bank._staged[1].grad
        shared = model.backbone.vpt_prompts.tokens.grad
        assert staged.abs().sum() > 0 and shared.abs().sum() > 0
        grads.append((staged, shared, model.semantic.gru.input.weight.grad))
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, checkpointed, rtol=1e-5, atol=1e-7)
