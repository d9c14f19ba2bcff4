import math

import pytest
import torch

from dmlbench.nn.model import build_model
from dmlbench.registry import get_method
from dmlbench.train.optim import cosine_schedule
from dmlbench.train.trainer import NonFiniteLoss, Trainer, autocast_dtype


def test_cosine_schedule_with_warmup():
    f = cosine_schedule(total_steps=10, warmup_steps=2)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == 1.0  # first step after warm-up: the peak
    assert f(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert f(10) == pytest.approx(0.0)


def test_no_autocast_on_cpu():
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("fp16", torch.device("cpu")) is None


def test_non_finite_loss_names_the_step():
    model = build_model("vit_glyph_patch8_48", None, 16, 4)
    method = get_method("linear-probe")()
    method.setup(model)
    opt = torch.optim.SGD(method.param_groups(model, 0.1, 0.1), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    def nan_loss(embeddings, labels, proxies):
        return (embeddings.sum() + proxies.sum()) * float("nan")

    trainer = Trainer(model, method, nan_loss, opt, sched, torch.device("cpu"))
    batches = [(torch.randn(4, 3, 48, 48), torch.tensor([0, 0, 1, 1]))]
    with pytest.raises(NonFiniteLoss, match="at step 0 \\(epoch 1\\)"):
        trainer.train_epoch(batches, epoch=1)


def test_a_methods_extra_loss_term_is_added_to_the_step():
    """Method.extra_loss (e.g. a regulariser) joins the loss without a trainer change."""
    from dmlbench.methods.linear_probe import LinearProbe

    from dmlbench.nn.losses import ProxyAnchorLoss

    class Regularised(LinearProbe):
        def extra_loss(self, model, embeddings, labels):
            return 10.0 * model.proxies.pow(2).sum()

    torch.manual_seed(0)
    model = build_model("vit_glyph_patch8_48", None, 16, 4)
    plain, regularised = LinearProbe(), Regularised()
    plain.setup(model)
    opt = torch.optim.SGD(plain.param_groups(model, 0.1, 0.1), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    x, y = torch.randn(4, 3, 48, 48), torch.tensor([0, 0, 1, 1])
    base = Trainer(model, plain, ProxyAnchorLoss(), opt, sched, torch.device("cpu"))
    extra = Trainer(model, regularised, ProxyAnchorLoss(), opt, sched, torch.device("cpu"))
    model.train()
    expected = base.forward_loss(x, y) + 10.0 * model.proxies.pow(2).sum()
    torch.testing.assert_close(extra.forward_loss(x, y), expected)


def test_methods_declare_a_search_space_with_a_default():
    from dmlbench.method import Choice, LogUniform
    from dmlbench.registry import get_method

    space = get_method("vpt").search_space()
    assert space["lr"] == LogUniform(1e-5, 1e-2) and space["images_per_class"] == Choice((1, 2, 4))
