"""``dmlbench memory``: the cost columns of Table-1 rows, without images or weights.

Per row: the estimated accelerator peak of a training step and its breakdown
(:mod:`dmlbench.cost.memory`), inference FLOPs per image, extra tokens and
the stored size of the tunable state (:mod:`dmlbench.cost.inference`); with
``--all``, every declared Table-1 row and the paper's memory column beside
ours, both as a share of full fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from dmlbench.cost.inference import inference_cost
from dmlbench.cost.memory import (
    ATTENTION,
    CONVENTION,
    MemoryEstimate,
    StepShape,
    estimate_step_memory,
    step_model,
)
from dmlbench.cost.params import FormulaMismatch, check_formula
from dmlbench.data.spec import Recipe
from dmlbench.errors import UserError
from dmlbench.method import Method
from dmlbench.registry import get_method, table_row_methods

SHOWN = ("parameters", "gradients", "optimizer state", "activations", "temporaries")


@dataclass
class CostRow:
    label: str
    method: Method
    estimate: MemoryEstimate
    cost: dict  # inference cost summary
    paper_memory: str | None = None
    paper_pct: float | None = None


def recipe_amp(recipe: Recipe) -> str:
    """The autocast dtype a recipe's runs use on an accelerator (auto: bf16)."""
    return {"fp16": "fp16", "bf16": "bf16", "off": "off"}.get(recipe.amp, "bf16")


def cost_row(label: str, method: Method, shape: StepShape) -> CostRow:
    estimate = estimate_step_memory(method, shape)
    fresh = type(method)(method.options)  # a method instance attaches to one model only
    model = step_model(fresh, shape)
    check_formula(fresh, model)
    cost = inference_cost(fresh.inference_model(model)).as_summary()
    return CostRow(label, method, estimate, cost)


def rows_for_table(
    shape: StepShape,
    recipe: Recipe,
    skipped: list[str] | None = None,
    only: set[str] | None = None,
) -> list[CostRow]:
    """Every declared Table-1 row (or those labelled in ``only``); one the backbone
    cannot take is left out, with the reason appended to ``skipped`` (raised where no
    list is given)."""
    rows = []
    for name, row in table_row_methods():
        if only is not None and row.label not in only:
            continue
        options = {**recipe.defaults_for(name)["method_options"], **row.options}
        try:
            cost = cost_row(row.label, get_method(name).from_values(options), shape)
        except FormulaMismatch:
            raise  # a plugin's mistake, not a row this backbone cannot take
        except UserError as e:
            if skipped is None:
                raise
            skipped.append(f"{row.label}: left out ({e})")
            continue
        if row.paper is not None:
            cost.paper_memory, cost.paper_pct = row.paper.memory, row.paper.memory_pct
        rows.append(cost)
    return rows


def to_frame(rows: list[CostRow]) -> pd.DataFrame:
    full = next((r for r in rows if r.method.name == "full-ft"), None)
    records = []
    for r in rows:
        mb = r.estimate.peak_mb
        record = {"row": r.label, "peak MiB": round(mb)}
        if full is not None:
            record["% of full FT"] = round(100 * mb / full.estimate.peak_mb, 1)
        for key in SHOWN:
            record[key] = round(r.estimate.breakdown.get(key, 0) / 2**20)
        record["host MiB"] = round(r.estimate.host_bytes / 2**20)
        record["GFLOPs/img"] = round(r.cost["gflops_per_image"], 2)
        record["extra tokens"] = r.cost["extra_tokens"]
        record["stored MB"] = round(r.cost["stored_mb"], 2)
        if any(x.paper_memory for x in rows):
            record["paper memory"] = r.paper_memory or "—"
            record["paper % of full FT"] = r.paper_pct if r.paper_pct is not None else "—"
        records.append(record)
    return pd.DataFrame(records)


def describe(shape: StepShape) -> list[str]:
    size = f"{shape.image_size}²" if shape.image_size else "its input size"
    return [
        f"{shape.backbone} at {size}, batch {shape.batch} ({shape.images_per_class} images per "
        f"class), {shape.num_classes} training classes, amp {shape.amp}, {shape.optimizer}",
        f"memory: {CONVENTION}; attention: {ATTENTION}",
        "breakdown at the peak, MiB; host: kept in host memory by the method, not in the peak",
    ]


def measure_on_device(
    method: Method, shape: StepShape, device: torch.device, timed_steps: int = 0
) -> dict:
    """The same step run for real on ``device``: the CUDA allocator's and NVML's peaks
    over the second step (on a CPU, the RSS growth), and their ratios to the estimate;
    with ``timed_steps``, that many more steps timed (``train_images_per_s``, the
    device synchronised before and after)."""
    from dmlbench.cost.memory import step_batch, step_trainer
    from dmlbench.train.meter import PeakMemory
    from dmlbench.train.trainer import Trainer

    if device.type == "cuda" and shape.amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--amp bf16: {torch.cuda.get_device_name(device)} cannot run bf16; "
                        "use --amp fp16 or off")  # fmt: skip
    estimate = estimate_step_memory(type(method)(method.options), shape)
    model = step_model(method, shape)
    cpu_trainer = step_trainer(model, method, shape)
    model.to(device)
    trainer = Trainer(model, method, cpu_trainer.loss_fn, cpu_trainer.optimizer,
                      cpu_trainer.scheduler, device, cpu_trainer.amp_dtype)  # fmt: skip
    input_shape, labels = step_batch(model, shape)
    images = torch.randn(input_shape, device=device)
    labels = labels.to(device)
    model.train()
    trainer.backward_and_step(trainer.forward_loss(images, labels))  # optimizer state
    with PeakMemory(device) as memory:
        trainer.backward_and_step(trainer.forward_loss(images, labels))
    measured = memory.result()
    out = {"estimate_mb": estimate.peak_mb, **measured}
    if timed_steps:
        import time

        synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
        synchronise(device)
        start = time.perf_counter()
        for _ in range(timed_steps):
            trainer.backward_and_step(trainer.forward_loss(images, labels))
        synchronise(device)
        out["train_images_per_s"] = timed_steps * shape.batch / (time.perf_counter() - start)
    for key in ("cuda_max_allocated_mb", "nvml_peak_used_mb", "peak_rss_growth_mb"):
        if measured.get(key) is not None:
            out[f"{key} / estimate"] = measured[key] / estimate.peak_mb
    return out
