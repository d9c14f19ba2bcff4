"""The method contract (dmlbench.testing.check_method) over a table of (method, options).

Every registered name, with and without ``bias``, and options away from the
defaults; a new method, built in or plugged in, is tested by being registered.
"""

from __future__ import annotations

import pytest
import torch

from dmlbench.registry import get_method, method_names, table_row_methods
from dmlbench.testing import CLASSES as C  # noqa: F401 - re-exported for the VPTSP tests
from dmlbench.testing import batches, check_method, prepared, tiny_model, trainer_for

# Options away from each method's defaults: a layer count, a shape, a storage.
NON_DEFAULT = [
    ("adapter", {"layers": 1, "bottleneck": 8, "scale": 0.5}),
    ("vpt", {"layers": 1, "prompts": 2}),
    ("vpt", {"layers": 4, "prompts": 5, "taper": 2, "carry": True, "init": "vpt-uniform"}),
    ("vptsp-m", {"class_layers": 2, "class_prompts": 4, "class_taper": 1, "keep": 0.5}),
    ("vptsp-g", {"bank": "host", "layers": 3, "prompts": 2}),
    ("vptsp-g", {"bank": "lazy", "gru_dropout": 0.1, "alpha": 0.7}),
    ("vptsp-g", {"checkpointing": True, "class_layers": 3}),
    ("lora", {"rank": 2, "targets": "all", "alpha": 4.0}),
    ("dora", {"rank": 2, "targets": "attn"}),
    ("vera", {"rank": 4, "targets": "attn", "d_initial": 0.5}),
    ("ia3", {"targets": "all"}),
    ("loha", {"rank": 2, "targets": "all"}),
    ("lokr", {"rank": 2, "targets": "all", "decompose_factor": 4}),
    ("oft", {"block_size": 12, "targets": "all"}),  # 12 does not divide 32: peft adjusts it
    ("fourierft", {"frequencies": 50, "targets": "attn", "zero_init": True}),
]


def _distinct(cases: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Each (method, resolved options) once: a table row with the defaults' options is
    the plain case again, and checking it twice costs suite time and tests nothing."""
    seen, kept = set(), []
    for name, options in cases:
        resolved = get_method(name).from_values(options).options
        key = (name, repr(resolved))
        if key not in seen:
            seen.add(key)
            kept.append((name, options))
    return kept


CASES = [(name, {"bias": bias}) for name in method_names() for bias in (False, True)]
CASES += [c for c in NON_DEFAULT if c[0] in method_names()]
CASES += [(name, row.options) for name, row in table_row_methods()]
CASES = _distinct(CASES)


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_every_method_keeps_the_contract(name, options):
    check_method(name, options)


def test_the_contract_catches_a_method_that_breaks_it():
    """A method whose formula is off, or that trains a parameter it did not declare."""
    from dmlbench.methods.linear_probe import LinearProbe

    class OffByOne(LinearProbe):
        def tunable_formula(self, spec):
            return super().tunable_formula(spec) + 1

    with pytest.raises(AssertionError, match="formula says"):
        check_method(OffByOne)

    class ClsToo(LinearProbe):
        def attach(self, model):
            super().attach(model)
            model.backbone.cls_token.requires_grad_(True)

        def tunable_formula(self, spec):
            return super().tunable_formula(spec) + spec.feature_dim

    check_method(ClsToo)  # declared (requires_grad and counted): fine

    class Undeclared(LinearProbe):
        def after_step(self, model, optimizer, grad_scale):
            with torch.no_grad():
                model.backbone.cls_token.add_(1.0)  # moves a frozen parameter

    with pytest.raises(AssertionError, match="frozen backbone.cls_token changed"):
        check_method(Undeclared)


def test_every_method_describes_itself():
    for name in method_names():
        cls = get_method(name)
        assert cls.description and cls.name == name
        assert "bias" in {f for f in cls.Options.__dataclass_fields__}


def prepared_method(name: str, bias: bool, seed: int = 0):
    """(model, method, spec) of a registered method on the contract's tiny ViT."""
    model, method = prepared(get_method(name), {"bias": bias}, seed)
    return model, method, model.spec


def train(model, method, steps: int = 3) -> None:
    """A few plain-SGD steps on the contract's tiny batches (used by other tests)."""
    trainer_for(model, method).train_epoch(batches(steps), epoch=1)


__all__ = ["C", "batches", "prepared_method", "tiny_model", "train"]
