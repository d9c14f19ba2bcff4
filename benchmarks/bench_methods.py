"""Training cost of every method on one model, batch and input, each in a fresh process.

Per method: tunable parameters, peak memory during training (CUDA: allocator
peak and NVML device memory; CPU: peak RSS growth over the process's state
before the first step), and seconds per training step after warm-up — each
also as a ratio to full fine-tuning. A fresh subprocess per method keeps one
method's allocator history out of the next one's peak.

    python benchmarks/bench_methods.py                       # ViT-S/16 shape, CPU
    python benchmarks/bench_methods.py --device cuda --batch 64 --amp bf16

Expected (issue 3) on CPU with a ViT-S/16-shaped model: linear probe ≤ 30%
of full-FT memory, VPT ≤ 60%, VPT step time ≤ 0.8× full FT.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def table_rows() -> list[tuple[str, str, dict]]:
    """(row label, method, options) of every Table-1 row the registered methods declare
    (plugins' too); the full fine-tuning row is the reference of the ratios."""
    from dmlbench.registry import table_row_methods

    return [(row.label, name, row.options) for name, row in table_row_methods()]


def worker(args) -> dict:
    import torch

    from dmlbench.nn.losses import ProxyAnchorLoss
    from dmlbench.nn.model import build_model
    from dmlbench.registry import get_method
    from dmlbench.train.meter import PeakMemory, count_parameters, peak_memory_mb
    from dmlbench.train.trainer import Trainer, autocast_dtype

    torch.manual_seed(0)
    device = torch.device(args.device)
    method = get_method(args.method).from_values(json.loads(args.options))
    model = build_model(args.backbone, None, args.embedding_dim, args.classes)
    method.setup(model)
    model.to(device)
    size = model.backbone.default_cfg["input_size"][-1]
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, size, size, generator=gen).to(device)
    labels = (torch.arange(args.batch) // 2 % args.classes).to(device)  # k = 2 per class
    groups = method.param_groups(model, lr=1e-4, proxy_lr=1e-2)
    optimizer = torch.optim.AdamW(groups, lr=1e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    amp = autocast_dtype(args.amp, device)
    trainer = Trainer(model, method, ProxyAnchorLoss(), optimizer, scheduler, device, amp)
    with PeakMemory(device) as memory:
        trainer.train_epoch([(images, labels)] * args.warmup, epoch=0)
        record = trainer.train_epoch([(images, labels)] * args.steps, epoch=1)
    result = memory.result()
    return {
        "tunable": count_parameters(model).tunable,
        "peak_mb": peak_memory_mb(result),
        "nvml_mb": result["nvml_peak_used_mb"],
        "step_s": record["train_seconds"] / args.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--embedding-dim", type=int, default=384)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    parser.add_argument(
        "--rows", nargs="+", default=None, help="Only these rows (full-ft always runs)."
    )
    parser.add_argument("--method", help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(worker(args)))
        return

    import pandas as pd

    rows = []
    every = table_rows()
    full_ft = next(label for label, method, _ in every if method == "full-ft")
    unknown = sorted(set(args.rows or []) - {r[0] for r in every})
    if unknown:
        valid = ", ".join(repr(r[0]) for r in every)
        print(f"--rows: unknown row {unknown[0]!r}; valid rows: {valid}", file=sys.stderr)
        sys.exit(2)
    chosen = [r for r in every if args.rows is None or r[0] in {full_ft, *args.rows}]
    forwarded = [a for a in sys.argv[1:] if a not in (args.rows or []) and a != "--rows"]
    for label, method, options in chosen:
        cmd = [sys.executable, __file__, *forwarded, "--method", method]
        cmd += ["--options", json.dumps(options)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{label} failed: {done.stderr.strip().splitlines()[-1]}")
        rows.append({"method": label, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(f"{label}: {rows[-1]}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows).set_index("method")
    full = table.loc[full_ft]
    table["memory / full-ft"] = table["peak_mb"] / full["peak_mb"]
    table["step time / full-ft"] = table["step_s"] / full["step_s"]
    if table["nvml_mb"].isna().all():
        table = table.drop(columns=["nvml_mb"])
    print(
        f"{args.backbone}, batch {args.batch}, {args.steps} steps after {args.warmup} warm-up, "
        f"device {args.device}, amp {args.amp}"
    )
    print(table.to_string(float_format=lambda v: f"{v:,.3f}"))


if __name__ == "__main__":
    main()
