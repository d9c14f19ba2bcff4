"""benchmarks/oft_orthogonality.py: its series is peft's, and its error is the formula's."""

import pytest
import torch
from peft.tuners.oft.layer import OFTRotationModule

from tests.conftest import benchmark_script

script = benchmark_script("oft_orthogonality")
cayley, layer_errors, neumann, skew = (script.cayley, script.layer_errors, script.neumann,
                                      script.skew)  # fmt: skip


def _module(block: int, blocks: int) -> OFTRotationModule:
    return OFTRotationModule(r=blocks, n_elements=block * (block - 1) // 2, block_size=block,
                             in_features=block * blocks)  # fmt: skip


def test_the_series_is_peft_s_and_peft_s_exact_branch_is_its_transpose():
    block, blocks = 8, 3
    vec = 0.05 * torch.randn(blocks, block * (block - 1) // 2, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    module = _module(block, blocks)
    series = module._cayley_batch(vec, block, True, 5)
    assert torch.equal(series, neumann(skew(vec, block)))
    exact = module._cayley_batch(vec, block, False, 5).double()
    torch.testing.assert_close(exact, cayley(skew(vec, block)).transpose(-2, -1), atol=1e-6,
                               rtol=0)  # fmt: skip


def test_a_two_by_two_rotation_errs_as_its_closed_form():
    """S = [[0, a], [−a, 0]]: S² = −a²I, so the series gives R = (1 − a²)²I + 2(1 − a²)S and
    RᵀR = (1 − a⁴)²I; the exact transform is orthogonal."""
    a = 0.1
    errors = layer_errors(torch.tensor([[a]], dtype=torch.float64))
    assert errors["orthogonality"] == pytest.approx(1 - (1 - a**4) ** 2, rel=1e-9)
    assert errors["norm_s"] == pytest.approx(a)
    exact = cayley(skew(torch.tensor([[a]], dtype=torch.float64), 2))
    torch.testing.assert_close(exact.mT @ exact, torch.eye(2, dtype=torch.float64)[None])
    # singular values of the series' R: both (1 − a²)² + 4a²(1 − a²)² under a root = 1 − a⁴
    assert errors["smallest_singular"] == pytest.approx(1 - a**4, rel=1e-9)
    assert errors["largest_singular"] == pytest.approx(1 - a**4, rel=1e-9)
    assert layer_errors(torch.zeros(1, 2016)) == {"orthogonality": 0.0, "vs_cayley": 0.0,
                                                  "norm_s": 0.0, "smallest_singular": 1.0,
                                                  "largest_singular": 1.0}  # fmt: skip
