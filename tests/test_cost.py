"""Cost figures without an accelerator: the step-memory estimate, FLOPs, stored size,
the `dmlbench memory` command, and what runs and reports record of them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.cost.memory import StepShape, estimate_step_memory, track_real_step
from dmlbench.registry import get_method, method_names

TINY = StepShape(backbone="vit_glyph_patch8_48", batch=16, amp="bf16", optimizer="adamw",
                 num_classes=8, images_per_class=2)  # fmt: skip
CASES = [(n, {}) for n in method_names()] + [("vptsp-g", {"bank": "lazy"})]


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o}" for n, o in CASES])
def test_the_estimate_is_the_tensor_peak_of_a_real_step(name, options):
    """Fake tensors (no memory, no arithmetic) give the peak that real CPU tensors,
    tracked the same way, reach: within 1% (in practice to the byte)."""
    estimate = estimate_step_memory(get_method(name).from_values(options), TINY)
    real, _ = track_real_step(get_method(name).from_values(options), TINY)
    assert estimate.peak_bytes == pytest.approx(real.peak_bytes, rel=0.01)
    assert estimate.breakdown["parameters"] > 0 and estimate.breakdown["activations"] > 0
    if options.get("bank") == "lazy":  # the memory bank stays in host memory
        assert estimate.host_bytes == real.host_bytes > 0


RSS_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from dmlbench.cost.memory import StepShape, step_batch, step_model, step_trainer, track_step
    from dmlbench.registry import get_method
    from dmlbench.train.meter import PeakMemory
    shape = StepShape(backbone="vit_glyph_patch8_48", batch=16, amp="off", num_classes=8)
    with PeakMemory(torch.device("cpu")) as memory:
        method = get_method(sys.argv[1]).from_values({})
        model = step_model(method, shape)
        trainer = step_trainer(model, method, shape)
        size, labels = step_batch(model, shape)
        tracker = track_step(model, trainer, method, torch.randn(size), labels)
    print(json.dumps([tracker.peak / 2**20, memory.result()["peak_rss_growth_mb"]]))
""")


@pytest.mark.parametrize("name", ["linear-probe", "full-ft", "vptsp-g"])
def test_a_fresh_process_grows_its_rss_by_at_least_the_tensor_peak(name):
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, name], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    tensors, rss = json.loads(done.stdout.strip().splitlines()[-1])
    assert rss >= tensors > 0


def test_full_fine_tuning_needs_more_than_a_linear_probe_and_fp32_more_than_fp16():
    full = estimate_step_memory(get_method("full-ft")(), TINY)
    probe = estimate_step_memory(get_method("linear-probe")(), TINY)
    assert full.peak_bytes > 2 * probe.peak_bytes
    from dmlbench.cost.memory import step_model

    tensors = len(list(step_model(get_method("full-ft")(), TINY).parameters()))
    # AdamW: two moments per parameter, and a float32 step count per parameter tensor
    assert full.breakdown["optimizer state"] == 2 * full.breakdown["parameters"] + 4 * tensors
    fp32 = estimate_step_memory(get_method("full-ft")(), StepShape(**{**TINY.__dict__,
                                                                       "amp": "off"}))  # fmt: skip
    assert fp32.breakdown["activations"] > full.breakdown["activations"]


def test_bias_tuning_rows_count_their_biases_although_models_are_built_once_per_shape():
    """``memory --all`` copies one initialised model per row; a copy must still know its
    pretrained biases, or BitFit's estimate silently equals the linear probe's."""
    probe = estimate_step_memory(get_method("linear-probe")(), TINY)
    bitfit = estimate_step_memory(get_method("bitfit")(), TINY)
    vpt, vpt_b = (estimate_step_memory(get_method("vpt").from_values({"bias": b}), TINY)
                  for b in (False, True))  # fmt: skip
    assert bitfit.breakdown["gradients"] > probe.breakdown["gradients"]
    assert vpt_b.peak_bytes > vpt.peak_bytes


def test_a_copied_model_keeps_its_own_pretrained_parameters():
    import copy

    from dmlbench.cost.memory import step_model

    model = step_model(get_method("linear-probe")(), TINY)
    copied = copy.deepcopy(model)
    biases = list(model.pretrained_biases())
    # a conv stem of four, six per block (norms, qkv, proj, fc1, fc2), the final norm
    assert len(biases) == 4 + 6 * 6 + 1 and list(copied.pretrained_biases()) == biases
    originals = {id(p) for p in model.parameters()}
    assert not any(id(p) in originals for p in copied.pretrained_parameters().values())


def tiny_vit_model(method_name: str, options: dict):
    """A plain ViT (linear 8×8 patches, width 32, depth 2, 2 heads) at 16²: 4 patches."""
    import timm

    from dmlbench.nn.model import EmbeddingModel

    backbone = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=8,
                                 embed_dim=32, depth=2, num_heads=2, num_classes=0)  # fmt: skip
    model = EmbeddingModel(backbone, 16, 4)
    get_method(method_name).from_values(options).setup(model)
    return model


def vit_flops(tokens: int, dim: int = 32, depth: int = 2, patches: int = 4) -> int:
    """2 FLOPs per multiply-add: patch projection, per block qkv, QKᵀ, AV, output
    projection and the two MLP layers (ratio 4), then the head's Linear(D, E)."""
    patch = 2 * patches * (3 * 8 * 8) * dim
    block = (2 * tokens * dim * 3 * dim + 2 * 2 * tokens * tokens * dim
             + 2 * tokens * dim * dim + 2 * 2 * tokens * dim * 4 * dim)  # fmt: skip
    return patch + depth * block + 2 * dim * 16


@pytest.mark.parametrize("method,options,tokens", [
    ("linear-probe", {}, 5), ("vpt", {"prompts": 3}, 8), ("vpt", {"prompts": 3, "layers": 1}, 8),
])  # fmt: skip
def test_inference_flops_match_the_hand_formula(method, options, tokens):
    from dmlbench.cost.inference import inference_cost

    model = tiny_vit_model(method, options)
    cost = inference_cost(model)
    if options.get("layers") == 1:  # prompts in block 1 only: block 2 sees 5 tokens again
        expected = vit_flops(8, depth=1) + vit_flops(5, depth=1) - vit_flops(5, depth=0)
    else:
        expected = vit_flops(tokens)
    assert cost.flops_per_image == expected
    assert (cost.tokens, cost.extra_tokens) == (tokens, tokens - 5)
    assert cost.stored_bytes > 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_memory_command_prints_every_table_row_beside_the_papers():
    from dmlbench.registry import table_row_methods

    args = ["memory", "--all", "--image-size", "32", "--batch", "4"]  # ViT-S, CUB: Table 1
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for _, row in table_row_methods():
        assert f"{row.label} " in result.output
    assert "paper memory" in result.output and "6.0G" in result.output
    assert "excludes the CUDA context" in result.output


@pytest.mark.parametrize("args,message", [
    (["--backbone", "vit_nothing"], "unknown backbone 'vit_nothing'"),
    (["--method", "nothing"], "unknown method 'nothing'"),
    (["--batch", "0"], "Invalid value for '--batch'"),
    (["--image-size", "50"], "size 8 of vit_glyph_patch8_48.dmlbench_glyphs_v2 does not divide"),
    (["--batch", "9"], "--batch 9 is not divisible by 4 images per class"),
])  # fmt: skip
def test_memory_bad_input_is_one_line(args, message):
    result = CliRunner().invoke(main, ["memory", "--dataset", "glyphs", *args])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line, line


def test_measured_figures_sit_beside_the_estimate_with_their_ratio():
    """The CUDA branch's bookkeeping, fed what a CUDA run measures; and on a CPU the
    same call measures the host's RSS."""
    from dmlbench.cost.table import measure_on_device
    from dmlbench.run.costs import ESTIMATED, MEASURED, memory_summary

    estimate = {"peak_mb": 100.0}
    cuda = memory_summary({"cuda_max_allocated_mb": 104.0, "nvml_peak_used_mb": 600.0,
                           "peak_rss_growth_mb": 50.0}, estimate)  # fmt: skip
    assert (cuda["peak_mb"], cuda["peak_kind"]) == (104.0, MEASURED)
    assert cuda["measured_over_estimate"] == pytest.approx(1.04)
    cpu = memory_summary({"cuda_max_allocated_mb": None, "peak_rss_growth_mb": 50.0}, estimate)
    assert (cpu["peak_mb"], cpu["peak_kind"], cpu["rss_growth_mb"]) == (100.0, ESTIMATED, 50.0)
    measured = measure_on_device(get_method("linear-probe")(), TINY, torch.device("cpu"))
    assert measured["estimate_mb"] > 0 and "peak_rss_growth_mb / estimate" in measured


def test_a_run_records_the_estimate_the_inference_cost_and_rss_apart(tiny_run_args):
    from pathlib import Path

    result = CliRunner().invoke(main, [*tiny_run_args, "--method", "vpt", "--backbone",
                                       "vit_glyph_patch8_48"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "estimated (tensors on the accelerator" in result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("stored in ")[1])
    summary = json.loads((run_dir / "summary.json").read_text())
    memory, inference = summary["memory"], summary["inference"]
    assert memory["peak_mb"] == memory["accelerator_estimate"]["peak_mb"] > 0
    assert memory["rss_growth_mb"] is not None and "excludes" in memory["accelerator_estimate"][
        "convention"]  # fmt: skip
    assert inference["extra_tokens"] == 10 and inference["gflops_per_image"] > 0
