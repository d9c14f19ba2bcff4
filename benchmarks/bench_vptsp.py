"""VPTSP's costs and the paper's convergence claim.

    python benchmarks/bench_vptsp.py speed        # step time vptsp-g / vpt, inference time
    python benchmarks/bench_vptsp.py scale        # memory with 11,318 vs 100 classes
    python benchmarks/bench_vptsp.py convergence  # R@1 after 1, 2, 4 epochs on glyphs

Targets (issue 4): step time of vptsp-g ≤ 2.1× vpt on the same batch;
inference time equal to vpt; peak accelerator memory with 11,318 classes
≤ 1.2× that with 100 (the class-prompt bank and its optimizer state live in
host memory; only the batch's rows move). Without a GPU, "accelerator
memory" is reported as the exact bytes of what would live there (parameters,
gradients, optimizer state, buffers outside the bank) beside peak RSS growth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def build(method_name: str, backbone: str, classes: int, device, options=None):
    import torch

    from dmlbench.nn.model import build_model
    from dmlbench.registry import get_method

    torch.manual_seed(0)
    method = get_method(method_name).from_values(options or {})
    model = build_model(backbone, None, None, classes)
    method.setup(model)
    return model.to(device), method


def trainer_for(model, method, device):
    import torch

    from dmlbench.nn.losses import ProxyAnchorLoss
    from dmlbench.train.trainer import Trainer

    optimizer = torch.optim.AdamW(method.param_groups(model, 1e-4, 1e-2), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return Trainer(model, method, ProxyAnchorLoss(), optimizer, scheduler, device), optimizer


def batch(model, size: int, classes: int, device):
    import torch

    side = model.backbone.default_cfg["input_size"][-1]
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(size, 3, side, side, generator=gen).to(device)
    labels = (torch.arange(size) // 2 % classes).to(device)  # k = 2
    return images, labels


def speed(args) -> None:
    import torch

    device = torch.device(args.device)
    times = {}
    for name in ("vpt", "vptsp-m", "vptsp-g"):
        model, method = build(name, args.backbone, 100, device)
        trainer, _ = trainer_for(model, method, device)
        images, labels = batch(model, args.batch, 100, device)
        trainer.train_epoch([(images, labels)] * 2, epoch=0)
        record = trainer.train_epoch([(images, labels)] * args.steps, epoch=1)
        model.eval()
        with torch.no_grad():
            model(images)
            start = time.perf_counter()
            for _ in range(args.steps):
                model(images)
            if device.type == "cuda":
                torch.cuda.synchronize()
            infer = (time.perf_counter() - start) / args.steps
        times[name] = (record["train_seconds"] / args.steps, infer)
    base_step, base_infer = times["vpt"]
    print(f"{args.backbone}, batch {args.batch}, {args.steps} steps, device {args.device}")
    print(f"{'method':<10} {'step s':>8} {'/ vpt':>6} {'infer s':>8} {'/ vpt':>6}")
    for name, (step, infer) in times.items():
        print(
            f"{name:<10} {step:8.3f} {step / base_step:6.2f} {infer:8.3f} {infer / base_infer:6.2f}"
        )


def scale_worker(args) -> dict:
    import torch

    from dmlbench.train.meter import PeakMemory, peak_memory_mb

    device = torch.device(args.device)
    # the reference's memory bank, as its SOP and In-Shop configs use it
    model, method = build("vptsp-g", args.backbone, args.classes, device, {"bank": "lazy"})
    trainer, optimizer = trainer_for(model, method, device)
    images, labels = batch(model, args.batch, args.classes, device)
    with PeakMemory(device) as memory:
        trainer.train_epoch([(images, labels)] * 3, epoch=1)
    bank = model.semantic.bank
    bank_ids = {id(bank.weight)}
    resident = sum(t.numel() * t.element_size() for t in model.buffers() if t.device == device)
    for p in model.parameters():
        if id(p) in bank_ids:
            continue
        resident += p.numel() * p.element_size()
        if p.grad is not None:
            resident += p.grad.numel() * p.grad.element_size()
    for state in optimizer.state.values():
        resident += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    host = bank.weight.numel() * 4 * (1 + len(bank._state))
    # The bank's optimizer state is allocated during the measured window (the
    # weights before it); on an accelerator it would be host memory.
    bank_state = sum(t.numel() * t.element_size() for t in bank._state.values())
    result = memory.result()
    peak = peak_memory_mb(result)
    return {
        "classes": args.classes,
        "peak_mb": peak,
        "device_state_mb": resident / 2**20,
        "host_bank_mb": host / 2**20,
        "device_peak_estimate_mb": peak if device.type == "cuda" else peak - bank_state / 2**20,
    }


def scale(args) -> None:
    rows = []
    for classes in (100, 11_318):
        cmd = [sys.executable, __file__, "scale-worker", "--classes", str(classes)]
        cmd += ["--backbone", args.backbone, "--batch", str(args.batch), "--device", args.device]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    small, large = rows
    kind = "CUDA allocator peak" if args.device.startswith("cuda") else "peak RSS growth"
    print(f"vptsp-g, {args.backbone}, batch {args.batch}, device {args.device}")
    for row in rows:
        print(
            f"  {row['classes']:>6} classes: {kind} {row['peak_mb']:.0f} MB, "
            f"accelerator-resident state {row['device_state_mb']:.1f} MB, "
            f"host bank (+ optimizer state) {row['host_bank_mb']:.0f} MB"
        )
    print(
        f"  ratio 11,318 / 100: accelerator-resident state "
        f"{large['device_state_mb'] / small['device_state_mb']:.3f}, "
        f"{kind} {large['peak_mb'] / small['peak_mb']:.3f}"
    )
    if not args.device.startswith("cuda"):
        estimate = large["device_peak_estimate_mb"] / small["device_peak_estimate_mb"]
        print(
            f"  without a GPU, the accelerator's peak estimated as peak RSS growth minus the "
            f"host-side bank optimizer state: {small['device_peak_estimate_mb']:.0f} → "
            f"{large['device_peak_estimate_mb']:.0f} MB, ratio {estimate:.3f} (target ≤ 1.2)"
        )


def convergence(args) -> None:
    from dmlbench.config import make_config
    from dmlbench.run.execute import execute

    epochs = max(args.at)
    print(f"glyphs, {epochs} epochs (cosine over {epochs}), seeds {args.seeds}")
    with tempfile.TemporaryDirectory() as output:
        for name in args.methods:
            by_epoch: dict[int, list[float]] = {e: [] for e in args.at}
            for seed in args.seeds:
                config = make_config(
                    None,
                    {"method": name, "seed": seed, "epochs": epochs, "eval_every": 1,
                     "output": output},
                )  # fmt: skip
                result = execute(config, echo=lambda _: None)
                with open(result.run_dir / "epochs.jsonl") as f:
                    for line in f:
                        record = json.loads(line)
                        if record["epoch"] in by_epoch:
                            by_epoch[record["epoch"]].append(record["recall@1"])
            cells = []
            for e in args.at:
                values = by_epoch[e]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"ep{e} {statistics.mean(values):.4f} ± {spread:.4f}")
            print(f"{name:<8} R@1  " + "  ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["speed", "scale", "scale-worker", "convergence"])
    parser.add_argument("--backbone", default="vit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--at", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--methods", nargs="+", default=["vpt", "vptsp-m", "vptsp-g"])
    args = parser.parse_args()
    if args.part == "scale-worker":
        print(json.dumps(scale_worker(args)))
    else:
        {"speed": speed, "scale": scale, "convergence": convergence}[args.part](args)


if __name__ == "__main__":
    main()
