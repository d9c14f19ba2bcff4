"""The contract every registered method must keep, run over every name (and its (B) variant).

A new method, built in or plugged in, is tested by being registered.
"""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from dmlbench.backbone import EmbeddingModel
from dmlbench.losses import ProxyAnchorLoss
from dmlbench.meter import count_parameters
from dmlbench.registry import get_method, method_names
from dmlbench.state import load_tunable_state, tunable_state
from dmlbench.trainer import Trainer

E, C, K = 16, 4, 2  # embedding, training classes, images per class
CASES = [(name, bias) for name in method_names() for bias in (False, True)]


def tiny_model(seed: int = 0) -> EmbeddingModel:
    """Depth 12 (the paper's option defaults fit), width 32: built in milliseconds."""
    torch.manual_seed(seed)
    backbone = timm.create_model(
        "vit_glyph_patch8_48", num_classes=0, embed_dim=32, depth=12, num_heads=2
    )
    return EmbeddingModel(backbone, E, C)


def prepared(name: str, bias: bool, seed: int = 0):
    model = tiny_model(seed)
    method = get_method(name).from_values({"bias": bias})
    spec = model.spec
    method.setup(model)
    return model, method, spec


def batches(steps: int = 3):
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(C).repeat_interleave(K)
    return [(torch.randn(C * K, 3, 48, 48, generator=gen), labels) for _ in range(steps)]


def train(model, method, steps: int = 3) -> None:
    # Plain SGD without weight decay: a parameter moves only if it got a gradient.
    optimizer = torch.optim.SGD(method.param_groups(model, lr=0.05, proxy_lr=0.5), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    trainer = Trainer(model, method, ProxyAnchorLoss(), optimizer, scheduler, torch.device("cpu"))
    trainer.train_epoch(batches(steps), epoch=1)


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}{'-B' if b else ''}" for n, b in CASES])
def trained(request):
    name, bias = request.param
    model, method, spec = prepared(name, bias)
    state = model.state_dict()  # tensors; a module's extra state (a dict) is left out
    before = {k: v.detach().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    train(model, method)
    return name, bias, model, method, spec, before


def test_only_the_declared_parameters_move(trained):
    """Parameters, that is: a method's own buffers (VPTSP's memory P) may move."""
    name, _, model, _, _, before = trained
    tunable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert tunable, f"{name} declares nothing tunable"
    for key, value in model.named_parameters():
        if key in tunable:
            assert not torch.equal(before[key], value), f"{name}: tunable {key} did not change"
        else:
            assert torch.equal(before[key], value), f"{name}: frozen {key} changed"


def test_frozen_backbone_stays_bit_identical(trained):
    """Frozen means frozen: weights (all but biases under BitFit / (B)) and buffers."""
    *_, model, _, _, before = trained
    pretrained, biases = model.pretrained_parameters(), model.pretrained_biases()
    if any(p.requires_grad for n, p in pretrained.items() if n not in biases):
        pytest.skip("this method trains backbone weights")
    frozen = [n for n, p in pretrained.items() if not p.requires_grad]
    after = model.state_dict()
    for name in frozen:
        assert torch.equal(before[f"backbone.{name}"], after[f"backbone.{name}"]), name
    for name, buffer in model.backbone.named_buffers():
        assert torch.equal(before[f"backbone.{name}"], buffer), name


def test_tunable_count_equals_the_formula(trained):
    name, _, model, method, spec, _ = trained
    formula = method.tunable_formula(spec)
    assert formula is not None, f"{name} gives no tunable_formula"
    assert count_parameters(model).tunable == formula


def test_saved_state_reloads_to_identical_embeddings(trained, tmp_path):
    name, bias, model, _, _, _ = trained
    path = tmp_path / "state.safetensors"
    save_file(tunable_state(model), str(path))
    fresh, _, _ = prepared(name, bias)  # same backbone, untrained method state
    images = batches(1)[0][0]
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert not torch.equal(fresh(images), model(images))
        load_tunable_state(fresh, load_file(str(path)))
        assert torch.equal(fresh(images), model(images))


def test_eval_mode_is_deterministic(trained):
    *_, model, _, _, _ = trained
    model.eval()
    images = batches(1)[0][0]
    with torch.no_grad():
        assert torch.equal(model(images), model(images))


def test_every_method_describes_itself():
    for name in method_names():
        cls = get_method(name)
        assert cls.description and cls.name == name
        assert "bias" in {f for f in cls.Options.__dataclass_fields__}
