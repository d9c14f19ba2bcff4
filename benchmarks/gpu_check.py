"""The accelerator path in one command: every built-in row's measured memory beside the
estimate, with its speed; a VPTSP-G run end to end; a torchrun run. One markdown table.

    python benchmarks/gpu_check.py                      # a CUDA machine: ~8 minutes
    python benchmarks/gpu_check.py --device cpu --steps 2 --backbone vit_glyph_patch8_48 \\
        --batch 8 --rows "Linear probe" --rows "VPTSP-G"   # the same code paths on a CPU

Why a script: an accelerator is lent to this project rarely and for minutes, so the
check is prepared, bounded (``--budget-s``: rows left when it runs out are listed as
not run) and writes what it measured (``--output``, default
``results/gpu/gpu-check.md``; an existing file is never overwritten: a new name is
chosen). Per row of ``dmlbench memory --all`` (ViT-S/16 at 224², batch 64, fp16,
random weights, CUB's 100 classes, the CUB recipe's SGD): ``torch.cuda.max_memory_
allocated`` and NVML's peak over one training step beside ``dmlbench memory``'s
estimate and their ratios, then ``--steps`` timed steps (img/s). Then a VPTSP-G run
through ``dmlbench run`` on a generated folder in CUB_200_2011's layout (1 epoch,
AMP and the GradScaler on the device), and ``dmlbench run`` under torchrun (NCCL
on CUDA, gloo on a CPU) with one process per GPU (2 on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dmlbench.cost.memory import StepShape
from dmlbench.cost.table import measure_on_device, rows_for_table
from dmlbench.data.spec import get_dataset
from dmlbench.testing import write_cub_layout


def write_generated_cub(root: Path, classes: int = 200, per_class: int = 2, size: int = 64) -> Path:
    """CUB's layout over generated images whose colour follows the class (so one epoch
    can learn something)."""

    def write_image(path: Path, class_id: int, index: int) -> None:
        rng = np.random.default_rng([class_id, index])
        base = np.random.default_rng(class_id).integers(0, 256, 3)
        pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)

    return write_cub_layout(root, range(1, classes + 1), per_class, write_image)


def memory_rows(args, device: torch.device, deadline: float) -> list[dict]:
    recipe = get_dataset("cub").recipe
    shape = StepShape(backbone=args.backbone, batch=args.batch, amp=args.amp,
                      optimizer=recipe.optimizer, num_classes=100,
                      images_per_class=recipe.images_per_class,
                      proxy_init=recipe.proxy_init)  # fmt: skip
    skipped: list[str] = []
    rows = rows_for_table(shape, recipe, skipped, set(args.rows) if args.rows else None)
    out = []
    for row in rows:
        if time.monotonic() > deadline:
            out.append({"row": row.label, "status": "not run (time budget spent)"})
            continue
        started = time.monotonic()
        try:
            measured = measure_on_device(type(row.method)(row.method.options), shape, device,
                                         timed_steps=args.steps)  # fmt: skip
            out.append({"row": row.label, "status": "ok", **measured,
                        "seconds": time.monotonic() - started})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - one row's failure is a result, not the end
            out.append({"row": row.label, "status": f"failed: {type(e).__name__}: {e}"[:300]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out += [{"row": line.split(":")[0], "status": line.split(": ", 1)[1]} for line in skipped]
    return out


def run_command(command: list[str], env: dict, timeout: float) -> dict:
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s", "seconds": timeout}
    lines = (done.stderr + done.stdout).strip().splitlines()
    errors = [line for line in lines if "Error" in line or line.startswith("error")]
    tail = (errors or lines or [""])[-1]
    status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {tail[:200]}"
    return {"status": status, "seconds": time.monotonic() - started}


def end_to_end(args, device: torch.device, work: Path) -> list[dict]:
    """A VPTSP-G run on a CUB-layout folder, and a run under torchrun."""
    data = work / "data"
    write_generated_cub(data)
    # the folder is CUB's layout at a fraction of its size, on purpose: counts unchecked
    env = {**os.environ, "DMLBENCH_DATA": str(data), "DMLBENCH_UNCHECKED_COUNTS": "1"}
    common = ["--dataset", "cub", "--data-root", str(data), "--backbone", args.backbone,
              "--weights", "none", "--epochs", "1", "--batch-size", "16",
              "--images-per-class", "2", "--device", device.type]  # fmt: skip
    results = []
    vptsp = [sys.executable, "-m", "dmlbench", "run", "--method", "vptsp-g", *common,
             "--output", str(work / "vptsp")]  # fmt: skip
    results.append({"row": "VPTSP-G end to end (dmlbench run, CUB layout, 1 epoch)",
                    **run_command(vptsp, env, args.e2e_timeout)})  # fmt: skip
    summaries = list((work / "vptsp").glob("*/summary.json"))
    if summaries:
        summary = json.loads(summaries[0].read_text())
        results[-1]["recall@1"] = summary.get("metrics", {}).get("recall@1")
        results[-1]["amp"] = summary.get("config", {}).get("amp")
    processes = max(torch.cuda.device_count(), 1) if device.type == "cuda" else 2
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"]  # fmt: skip
    ddp = [*launcher, "-m", "dmlbench", "run", "--method", "vptsp-g", *common,
           "--output", str(work / "torchrun")]  # fmt: skip
    backend = "NCCL" if device.type == "cuda" else "gloo"
    results.append({"row": f"VPTSP-G under torchrun ({processes} processes, {backend})",
                    **run_command(ddp, env, args.e2e_timeout)})  # fmt: skip
    return results


def number(value, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def markdown(args, device: torch.device, rows: list[dict], runs: list[dict]) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    lines = [
        f"# dmlbench GPU check: {name or device.type}",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; "
        f"{args.backbone}, batch {args.batch}, amp {args.amp}, random weights, CUB's 100 "
        f"classes, SGD; one measured step, then {args.steps} timed steps per row. Memory in "
        "MiB: measured (CUDA allocator peak; NVML's device-wide peak, which includes the "
        "CUDA context) beside dmlbench's estimate from shapes.",
        "",
        "| row | status | estimate | cuda max allocated | ratio | NVML peak | img/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['status']} | {number(r.get('estimate_mb'))} | "
            f"{number(r.get('cuda_max_allocated_mb'))} | "
            f"{number(r.get('cuda_max_allocated_mb / estimate'), 3)} | "
            f"{number(r.get('nvml_peak_used_mb'))} | {number(r.get('train_images_per_s'), 1)} |"
        )
    lines += ["", "| run | status | seconds | R@1 |", "|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['row']} | {r['status']} | {number(r.get('seconds'))} | "
                     f"{number(r.get('recall@1'), 3)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def fresh_path(path: Path) -> Path:
    """``path``, or ``path`` with a counter when that exists (nothing is overwritten)."""
    candidate, n = path, 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.stem}-{n}{path.suffix}"), n + 1
    return candidate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="vit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--amp", choices=["fp16", "bf16", "off"], default="fp16")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument("--rows", action="append", help="only these rows (repeatable)")
    parser.add_argument("--budget-s", type=float, default=360, help="for the memory rows")
    parser.add_argument("--e2e-timeout", type=float, default=120)
    parser.add_argument("--skip-runs", action="store_true", help="no end-to-end runs")
    parser.add_argument("--output", type=Path, default=Path("results/gpu/gpu-check.md"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --device cpu for the CPU paths",
              file=sys.stderr)  # fmt: skip
        return 2
    deadline = time.monotonic() + args.budget_s
    rows = memory_rows(args, device, deadline)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [] if args.skip_runs else end_to_end(args, device, Path(tmp))
    text = markdown(args, device, rows, runs)
    output = fresh_path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
