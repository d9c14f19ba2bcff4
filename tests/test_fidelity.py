"""The rows of docs/fidelity.md that a number can pin: what the paper recipes run,
checked against the VPTSP reference code's values (config/*_small.yaml, main.py,
architectures/peft_vit.py, criteria/dml_proxy_peft.py)."""

from __future__ import annotations

import math

import pytest
import torch

from dmlbench.config import RunConfig, resolve
from dmlbench.data.spec import get_dataset
from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.registry import get_method
from dmlbench.train.optim import build_optimizer, build_scheduler
from tests.conftest import benchmark_script

# dataset → (optimizer, lr, O's lr, weight decay, epochs, batch, k, T_max, eta_min, α)
REFERENCE = {
    "cub": ("sgd", 5e-3, 0.1, 1e-6, 15, 64, 2, 50, 1e-8, 0.5),
    "cars": ("adamw", 5e-4, 1e-2, 0.0, 50, 64, 2, 50, 1e-6, 0.7),
    "sop": ("adamw", 1e-4, 5e-2, 1e-4, 120, 32, 1, 120, 5e-5, 0.2),
    "inshop": ("adamw", 1e-4, 5e-2, 1e-7, 80, 32, 1, 100, 5e-6, 0.2),
}


@pytest.mark.parametrize("dataset", sorted(REFERENCE))
def test_paper_recipes_carry_the_references_settings(dataset):
    optimizer, lr, o_lr, decay, epochs, batch, k, t_max, eta_min, alpha = REFERENCE[dataset]
    config = resolve(RunConfig(method="vptsp-g", dataset=dataset), get_dataset(dataset))
    assert (config.optimizer, config.lr, config.proxy_lr, config.weight_decay) == (
        optimizer, lr, o_lr, decay
    )  # fmt: skip
    assert (config.epochs, config.batch_size, config.images_per_class) == (epochs, batch, k)
    assert (config.lr_schedule, config.cosine_epochs, config.lr_min) == (
        "cosine-epochs", t_max, eta_min
    )  # fmt: skip
    assert config.grad_clip == 0.0  # no clipping in the reference
    assert config.loss_positive_divisor == "all"  # both terms divided by C
    assert config.amp == "fp16" and config.proxy_init == "reference"
    assert config.proxy_weight_decay is None  # O decays with the run's weight decay
    assert config.eval_every == 1
    method = get_method("vptsp-g").from_values(config.method_options)
    assert method.options.alpha == alpha


def test_cars_and_large_recipes_carry_the_prompt_layout():
    cars = resolve(RunConfig(method="vptsp-g", dataset="cars"), get_dataset("cars"))
    assert cars.method_options == {
        "prompts": 80, "layers": 11, "taper": 2,
        "class_prompts": 50, "class_layers": 8, "class_taper": 2, "alpha": 0.7,
    }  # fmt: skip
    for name, class_prompts in (("sop", 5), ("inshop", 80)):
        config = resolve(RunConfig(method="vptsp-m", dataset=name), get_dataset(name))
        options = config.method_options
        assert (options["prompts"], options["class_prompts"]) == (90, class_prompts)
        assert (options["bank"], options["gru_dropout"], options["checkpointing"]) == (
            "lazy", 0.1, True
        )  # fmt: skip


def test_glyph_recipe_keeps_its_own_choices():
    config = resolve(RunConfig(method="vpt"), get_dataset("glyphs"))
    assert (config.lr_schedule, config.lr_min, config.grad_clip) == ("cosine-steps", 0.0, 10.0)
    assert (config.loss_positive_divisor, config.proxy_init) == ("present", "kaiming")


def test_epoch_cosine_is_torchs_cosine_annealing_stepped_per_epoch():
    """CUB: T_max 50, eta_min 1e-8 over 15 epochs; the last epoch runs at ≈ 0.82 × lr."""
    steps_per_epoch = 7
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    config = RunConfig(epochs=15, lr=5e-3, lr_schedule="cosine-epochs", cosine_epochs=50,
                       lr_min=1e-8, optimizer="sgd", weight_decay=1e-6)  # fmt: skip
    groups = [{"params": [params[0]], "name": "model"},
              {"params": [params[1]], "lr": 0.1, "name": "proxies"}]  # fmt: skip
    ours = build_optimizer(config, groups)
    schedule = build_scheduler(config, ours, steps_per_epoch)
    theirs = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 5e-3},
                              {"params": [torch.zeros(1)], "lr": 0.1}], momentum=0.9)  # fmt: skip
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=50, eta_min=1e-8)
    for epoch in range(15):
        expected = [g["lr"] for g in theirs.param_groups]
        for _ in range(steps_per_epoch):
            got = [g["lr"] for g in ours.param_groups]
            assert got == pytest.approx(expected, rel=1e-9), epoch
            ours.step()
            schedule.step()
        theirs.step()
        annealing.step()
    last = 1e-8 + (5e-3 - 1e-8) * (1 + math.cos(math.pi * 14 / 50)) / 2
    assert last / 5e-3 == pytest.approx(0.8187, abs=1e-4)


def test_step_cosine_ends_at_lr_min():
    param = torch.nn.Parameter(torch.zeros(1))
    config = RunConfig(epochs=2, lr=1e-3, lr_schedule="cosine-steps", lr_min=1e-5,
                       optimizer="adamw", weight_decay=0.0)  # fmt: skip
    optimizer = build_optimizer(config, [{"params": [param], "name": "model"}])
    schedule = build_scheduler(config, optimizer, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(1e-3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert lrs == sorted(lrs, reverse=True)


def test_proxies_decay_with_the_run_unless_told_otherwise():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    groups = [{"params": [params[0]], "name": "model"},
              {"params": [params[1]], "lr": 0.1, "name": "proxies"}]  # fmt: skip
    config = RunConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4)
    decays = [g["weight_decay"] for g in build_optimizer(config, groups).param_groups]
    assert decays == [1e-4, 1e-4]
    config = RunConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4, proxy_weight_decay=0.0)
    assert [g["weight_decay"] for g in build_optimizer(config, groups).param_groups] == [1e-4, 0]


def test_vptsp_groups_put_class_prompts_with_the_model_and_o_apart():
    """The reference: class prompts, proxy head, GRU, shared prompts and head in one
    optimizer at lr; O in its own at lr_proxy; all decayed with the run's decay."""
    from dmlbench.nn.model import build_model

    model = build_model("vit_glyph_patch8_48", None, 32, 5)
    method = get_method("vptsp-g").from_values({"bank": "device"})
    method.setup(model)
    config = RunConfig(optimizer="sgd", lr=5e-3, proxy_lr=0.1, weight_decay=1e-6)
    optimizer = build_optimizer(config, method.param_groups(model, 5e-3, 0.1))
    model_group, o_group = optimizer.param_groups
    assert any(p is model.semantic.bank.weight for p in model_group["params"])
    assert any(p is model.semantic.gru.input.weight for p in model_group["params"])
    assert o_group["params"] == [model.proxies]
    assert (model_group["lr"], o_group["lr"]) == (5e-3, 0.1)
    assert model_group["weight_decay"] == o_group["weight_decay"] == 1e-6


def test_loss_divisor_all_divides_both_terms_by_the_class_count():
    """criteria/dml_proxy_peft.py: pos_s.mean() + neg_s.mean() over all C proxies."""
    torch.manual_seed(0)
    embeddings, proxies = torch.randn(6, 8), torch.randn(5, 8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])  # classes 3 and 4 have no positives
    cos = torch.nn.functional.normalize(embeddings) @ torch.nn.functional.normalize(proxies).T
    positive = torch.nn.functional.one_hot(labels, 5).bool()
    pos = torch.stack([torch.log1p(torch.exp(-32 * (cos[positive[:, c], c] - 0.1)).sum())
                       for c in range(5)])  # fmt: skip
    neg = torch.stack([torch.log1p(torch.exp(32 * (cos[~positive[:, c], c] + 0.1)).sum())
                       for c in range(5)])  # fmt: skip
    by_hand_all = pos.sum() / 5 + neg.sum() / 5
    by_hand_present = pos[:3].sum() / 3 + neg.sum() / 5
    assert ProxyAnchorLoss(positive_divisor="all")(embeddings, labels, proxies).item() == (
        pytest.approx(by_hand_all.item(), rel=1e-5)
    )
    assert ProxyAnchorLoss()(embeddings, labels, proxies).item() == pytest.approx(
        by_hand_present.item(), rel=1e-5
    )


@pytest.mark.parametrize("kind", ["m-per-class", "class-random"])
def test_both_samplers_give_batch_over_m_classes_of_m_images(kind):
    """class-random is the reference's sampler (classes drawn afresh per batch)."""
    from collections import Counter

    import numpy as np

    from dmlbench.data.sampling import ResumableMPerClassSampler

    np.random.seed(0)
    targets = [c for c in range(10) for _ in range(5)]
    sampler = ResumableMPerClassSampler(targets, m=2, batch_size=8, steps_per_epoch=6, seed=0,
                                        kind=kind)  # fmt: skip
    sampler.begin_epoch(1)
    order = [index for index, _ in sampler]
    assert len(order) == 48
    for b in range(6):
        counts = Counter(targets[i] for i in order[8 * b : 8 * b + 8])
        assert sorted(counts.values()) == [2, 2, 2, 2]


def test_against_reference_names_a_folder_that_is_no_clone(tmp_path, capsys):
    """The check imports the authors' code from the user's clone; anything else is one
    line and exit 2, before any model is built."""
    script = benchmark_script("against_reference")
    with pytest.raises(SystemExit) as missing:
        script.main(["--reference", str(tmp_path / "nowhere")])
    assert missing.value.code == 2
    (tmp_path / "architectures").mkdir()
    (tmp_path / "architectures" / "peft_vit.py").write_text("")
    with pytest.raises(SystemExit) as partial:
        script.main(["--reference", str(tmp_path)])
    assert partial.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].endswith("no such folder; clone the authors' repository there")
    assert lines[1].endswith("is not a clone of Noahsark/ParameterEfficient-DML "
                             "(no criteria/dml_proxy_peft.py)")  # fmt: skip
