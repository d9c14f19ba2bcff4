import math

import pytest
import torch

from dmlbench.backbone import build_model
from dmlbench.registry import get_method
from dmlbench.trainer import NonFiniteLoss, Trainer, autocast_dtype, cosine_schedule


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
