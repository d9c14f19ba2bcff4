import math

import pytest
import torch
from pytorch_metric_learning.losses import ProxyAnchorLoss as PMLProxyAnchor

from dmlbench.nn.losses import ProxyAnchorLoss


def test_equals_pml_with_the_same_proxies():
    torch.manual_seed(0)
    embeddings, labels = torch.randn(32, 16), torch.randint(0, 10, (32,))
    pml = PMLProxyAnchor(10, 16, margin=0.1, alpha=32)
    ours = ProxyAnchorLoss(alpha=32, margin=0.1)(embeddings, labels, pml.proxies)
    assert ours.item() == pytest.approx(pml(embeddings, labels).item(), rel=1e-6)


def test_hand_computed_two_proxies():
    # One embedding of class 0 equal to proxy 0, orthogonal to proxy 1.
    e = torch.tensor([[1.0, 0.0]])
    proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a, d = 32.0, 0.1
    pos = math.log(1 + math.exp(-a * (1 - d)))  # proxy 0, the only one with positives
    neg1 = math.log(1 + math.exp(a * (0 + d)))  # proxy 1 sees the embedding as negative
    neg0 = 0.0  # proxy 0 has no negatives: log(1 + 0)
    expected = pos / 1 + (neg0 + neg1) / 2
    loss = ProxyAnchorLoss(alpha=a, margin=d)(e, torch.tensor([0]), proxies)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    all_c = ProxyAnchorLoss(alpha=a, margin=d, positive_divisor="all")(
        e, torch.tensor([0]), proxies
    )
    assert all_c.item() == pytest.approx(pos / 2 + (neg0 + neg1) / 2, rel=1e-6)


def test_gradient_reaches_external_proxies():
    proxies = torch.randn(5, 8, requires_grad=True)
    loss = ProxyAnchorLoss()(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2]), proxies)
    loss.backward()
    assert proxies.grad is not None
    # Proxies 3 and 4 have no positives, yet receive negative-term gradients.
    assert proxies.grad[3].abs().sum() > 0 and proxies.grad[4].abs().sum() > 0


def test_rejects_unknown_divisor():
    with pytest.raises(ValueError, match="positive_divisor"):
        ProxyAnchorLoss(positive_divisor="some")


def test_computes_in_at_least_float32_and_never_narrows():
    """Half-precision inputs are widened (α·cos overflows fp16's range in exp); float64
    inputs stay float64, so a float64 run (benchmarks/against_reference.py) is not
    rounded to float32 at the loss."""
    torch.manual_seed(0)
    embeddings, proxies = torch.randn(4, 8, dtype=torch.float64), torch.randn(3, 8)
    labels = torch.tensor([0, 0, 1, 2])
    loss = ProxyAnchorLoss()(embeddings, labels, proxies.double())
    assert loss.dtype == torch.float64
    narrowed = ProxyAnchorLoss()(embeddings.float(), labels, proxies)
    assert abs(loss.item() - narrowed.item()) < 1e-5
    assert ProxyAnchorLoss()(embeddings.bfloat16(), labels, proxies.half()).dtype == torch.float32
