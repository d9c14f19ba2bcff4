"""``dmlbench params``: tunable / total parameter counts without images or weights.

The model is built on PyTorch's meta device, so counting ViT-B costs no memory
and no download. Beside our counts stands the paper's convention (vptsp.md):
its totals include the unused classifier of the timm checkpoint (21,843
ImageNet-21k classes for ViT-S/16 in21k), and its "(B)" rows count that
classifier's biases as tuned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import timm
import torch

from dmlbench.data.spec import Recipe
from dmlbench.errors import UserError
from dmlbench.method import Method
from dmlbench.nn.model import EmbeddingModel, build_model


def checkpoint_classifier_size(backbone: str) -> int:
    """Classes of the classifier the timm checkpoint ships with (0 if none)."""
    cfg = timm.models.get_pretrained_cfg(backbone)
    return int(getattr(cfg, "num_classes", 0) or 0) if cfg is not None else 0


class FormulaMismatch(UserError):
    """A method's tunable_formula disagrees with what its attach leaves trainable."""


def check_formula(method: Method, model: EmbeddingModel) -> int | None:
    """The method's formula for ``model`` (after ``setup``), which must equal the count
    of what trains (None: the method gives no formula)."""
    formula = method.tunable_formula(model.spec)
    tunable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if formula is not None and formula != tunable:
        options = dataclasses.asdict(method.options)
        raise FormulaMismatch(
            f"method {method.name} {options}: {tunable:,} parameters train, but its "
            f"tunable_formula gives {formula:,}; fix the formula (from ModelSpec) or attach"
        )
    return formula


def count_row(
    method: Method, backbone: str, embedding_dim: int | None, num_classes: int
) -> dict[str, Any]:
    if not timm.is_model(backbone):
        raise UserError(f"unknown backbone {backbone!r}; use a timm ViT name")
    with torch.device("meta"):
        model = build_model(backbone, None, embedding_dim, num_classes)
    spec = model.spec
    try:
        method.setup(model)
    except ValueError as e:
        raise UserError(f"method {method.name}: {e}") from None
    formula = check_formula(method, model)
    tunable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    classes = checkpoint_classifier_size(backbone)
    classifier = spec.feature_dim * classes + classes if classes else 0
    biases_tuned = all(p.requires_grad for p in model.pretrained_biases().values())
    weights_tuned = all(p.requires_grad for p in model.pretrained_parameters().values())
    paper_tunable = tunable + (classifier if weights_tuned else classes if biases_tuned else 0)
    paper_total = spec.backbone_params + classifier + spec.head_params + spec.proxy_params
    return {
        "method": method.label,
        "tunable": tunable,
        "total": total,
        "% of backbone": 100.0 * tunable / spec.backbone_params,
        "formula": formula,
        "paper-convention tunable": paper_tunable,
        "paper-convention %": 100.0 * paper_tunable / paper_total,
    }


def format_millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def table1_counts(
    backbone: str,
    embedding_dim: int | None,
    num_classes: int,
    recipe: Recipe | None = None,
    skipped: list[str] | None = None,
) -> pd.DataFrame:
    """Every method's Table-1 rows (plugins' too), with the paper's figure beside ours.
    A dataset ``recipe``'s method options (e.g. Cars' prompt layout) apply under each
    row's own. A row the backbone cannot take (an adapter in 7 blocks of a 6-block
    ViT) is left out, with the reason appended to ``skipped``."""
    from dmlbench.registry import get_method, table_row_methods

    rows = []
    for name, r in table_row_methods():
        from_recipe = recipe.defaults_for(name)["method_options"] if recipe else {}
        method = get_method(name).from_values({**from_recipe, **r.options})
        try:
            counts = count_row(method, backbone, embedding_dim, num_classes)
        except FormulaMismatch:
            raise  # a plugin's mistake, not a row this backbone cannot take
        except UserError as e:
            if skipped is None:
                raise
            skipped.append(f"{r.label}: left out ({e})")
            continue
        paper = r.paper.tunable if r.paper is not None and r.paper.tunable else "—"
        rows.append({"row": r.label, **counts, "paper": paper})
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    table = table.drop(columns=["formula"])
    for column in ("tunable", "paper-convention tunable"):
        table[column] = table[column].map(lambda n: f"{n:,} ({format_millions(n)})")
    table["total"] = table["total"].map("{:,}".format)
    for column in ("% of backbone", "paper-convention %"):
        table[column] = table[column].map("{:.2f}".format)
    return table.to_string(index=False)
