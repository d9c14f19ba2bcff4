import pytest
import torch

from dmlbench.nn.losses import ProxyAnchorLoss
from dmlbench.nn.model import build_model
from dmlbench.registry import get_method
from dmlbench.train.meter import count_parameters

D, E, C = 192, 64, 10


def make(method_name):
    torch.manual_seed(0)
    model = build_model("vit_glyph_patch8_48", None, E, C)
    method = get_method(method_name)()
    method.setup(model)
    return model, method


def train_steps(model, method, steps=2):
    groups = method.param_groups(model, lr=1e-2, proxy_lr=1e-1)
    opt = torch.optim.SGD(groups, lr=1e-2)
    loss_fn = ProxyAnchorLoss()
    torch.manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 3, 48, 48), torch.arange(8) % C
        loss = loss_fn(model(x), y, method.proxies(model, x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_linear_probe_count_is_head_plus_proxies():
    model, _ = make("linear-probe")
    head = 2 * D + D * E + E  # LayerNorm(D) + Linear(D, E)
    assert count_parameters(model).tunable == head + C * E


def test_full_ft_trains_everything():
    model, _ = make("full-ft")
    counts = count_parameters(model)
    assert counts.tunable == counts.total
    assert counts.backbone == counts.total - (2 * D + D * E + E) - C * E


def test_linear_probe_keeps_backbone_bit_identical_and_moves_head():
    model, method = make("linear-probe")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model, method)
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("backbone."):
            assert torch.equal(value, after[key]), key
    assert not torch.equal(before["head.proj.weight"], after["head.proj.weight"])
    assert not torch.equal(before["proxies"], after["proxies"])


def record_backbone_grad(model) -> dict:
    seen = {}

    def hook(module, inputs, output):
        seen["grad"] = output.requires_grad

    model.backbone.register_forward_hook(hook)
    return seen


def test_frozen_backbone_runs_without_autograd():
    model, _ = make("linear-probe")
    seen = record_backbone_grad(model)
    model(torch.randn(2, 3, 48, 48)).sum().backward()
    assert seen["grad"] is False


def test_full_ft_backbone_records_autograd():
    model, _ = make("full-ft")
    seen = record_backbone_grad(model)
    model(torch.randn(2, 3, 48, 48))
    assert seen["grad"] is True


def test_proxies_get_their_own_learning_rate():
    model, method = make("full-ft")
    groups = {g["name"]: g for g in method.param_groups(model, lr=1e-4, proxy_lr=1e-2)}
    assert groups["proxies"]["lr"] == 1e-2 and groups["model"]["lr"] == 1e-4
    assert groups["proxies"]["params"] == [model.proxies]


@pytest.mark.parametrize("name", ["full-ft", "linear-probe"])
def test_methods_have_descriptions(name):
    assert get_method(name).description


MERGED = ["lora", "ssf", "dora", "vera", "ia3", "loha", "lokr", "oft", "fourierft"]


@pytest.mark.parametrize("name", MERGED)
def test_merged_methods_cost_the_backbone_at_inference(name):
    """LoRA, SSF and the peft zoo fold into the backbone's weights for evaluation: the
    merged model embeds as the trained one (1e-5) at exactly the plain backbone's FLOPs."""
    from dmlbench.cost.inference import inference_cost
    from dmlbench.testing import batches, prepared, trainer_for

    model, method = prepared(get_method(name), {})
    trainer_for(model, method).train_epoch(batches(2), epoch=1)
    merged = method.inference_model(model).eval()
    model.eval()
    images = batches(1, seed=5)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(merged(images), model(images), rtol=1e-5, atol=1e-5)
    probe, _ = prepared(get_method("linear-probe"), {})
    assert inference_cost(merged).flops_per_image == inference_cost(probe).flops_per_image
    if name in ("lora", "dora", "loha", "lokr", "oft"):  # unmerged, their products add
        # matrix FLOPs (SSF's, (IA)³'s and VeRA's scalings are elementwise, which the
        # counter, like the literature, leaves out; FourierFT's inverse FFT it does not see)
        assert inference_cost(model).flops_per_image > inference_cost(probe).flops_per_image
