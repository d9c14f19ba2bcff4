"""The cost figures a run's summary records beside its metrics.

Memory: the accelerator peak is the figure users compare methods by. On CUDA
it is measured (the allocator's peak, NVML beside it); on a CPU it cannot be,
so the run records the estimate for its own shapes (dmlbench.cost.memory) and
says so, with the host's RSS growth kept as its own, differently named figure.
Inference: FLOPs per image, extra tokens, stored size of the tunable state.
"""

from __future__ import annotations

import torch

from dmlbench.config import RunConfig
from dmlbench.cost.inference import inference_cost
from dmlbench.cost.memory import StepShape, estimate_step_memory
from dmlbench.data.spec import DatasetSpec
from dmlbench.method import Method
from dmlbench.nn.model import EmbeddingModel

ESTIMATED = "estimated (tensors on the accelerator, this run's shapes)"
MEASURED = "measured (CUDA allocator)"


def step_shape(config: RunConfig, dataset: DatasetSpec, world: int = 1) -> StepShape:
    """The run's training step as the estimator takes it (per process under torchrun)."""
    amp = {"fp16": "fp16", "bf16": "bf16", "off": "off"}.get(config.amp or "auto", "bf16")
    return StepShape(
        backbone=config.backbone,
        batch=config.batch_size // world,
        amp=amp,
        optimizer=config.optimizer,
        num_classes=dataset.num_train_classes,
        embedding_dim=config.embedding_dim,
        images_per_class=max(1, min(config.images_per_class, config.batch_size // world)),
        proxy_init=config.proxy_init,
    )


def memory_summary(measured: dict, estimate: dict | None) -> dict:
    """The summary's ``memory``: ``peak_mb`` is the accelerator figure (measured on
    CUDA, else estimated), ``peak_kind`` says which; RSS stays as its own key."""
    out = {
        "rss_growth_mb": measured.get("peak_rss_growth_mb"),
        "peak_rss_mb": measured.get("peak_rss_mb"),
        "cuda_max_allocated_mb": measured.get("cuda_max_allocated_mb"),
        "nvml_peak_used_mb": measured.get("nvml_peak_used_mb"),
    }
    if estimate is not None and "peak_mb" in estimate:
        out["accelerator_estimate"] = estimate
    if out["cuda_max_allocated_mb"] is not None:
        out.update(peak_mb=out["cuda_max_allocated_mb"], peak_kind=MEASURED)
        if "accelerator_estimate" in out:
            out["measured_over_estimate"] = out["peak_mb"] / estimate["peak_mb"]
    elif "accelerator_estimate" in out:
        out.update(peak_mb=estimate["peak_mb"], peak_kind=ESTIMATED)
    else:
        out.update(peak_mb=out["rss_growth_mb"], peak_kind="measured (host RSS growth)")
    return out


def estimate_for_run(config: RunConfig, dataset: DatasetSpec, method: Method, world: int) -> dict:
    """The estimate for the run's shapes, leaving the global RNG as it was (the run's
    bit-identical resume depends on it); a method the estimator cannot trace gets
    the reason instead of a figure, and the run goes on."""
    fresh = type(method)(method.options)
    state = torch.get_rng_state()
    try:
        return estimate_step_memory(fresh, step_shape(config, dataset, world)).as_summary()
    except Exception as e:  # noqa: BLE001 - a cost figure never fails a finished run
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    finally:
        torch.set_rng_state(state)


def inference_summary(model: EmbeddingModel) -> dict:
    try:
        return inference_cost(model).as_summary()
    except Exception as e:  # noqa: BLE001 - as above
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
