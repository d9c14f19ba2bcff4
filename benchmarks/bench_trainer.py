"""Overhead of dmlbench's training step over a bare PyTorch loop, side by side.

Same model, method, batch, optimizer and loss, no data loader: dmlbench's
``Trainer.train_epoch`` (progress, NaN check, method hooks, schedule, the
step's bookkeeping) against the plain loop a researcher would write
(forward, proxies, loss, backward, step). Rounds alternate between the two in
one process so both see the same machine; the ratio of their median seconds
per step is printed (target ≤ 1.05).

    python benchmarks/bench_trainer.py --method vpt --batch 32
    python benchmarks/bench_trainer.py --method linear-probe --backbone vit_small_patch16_224
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    import torch

    from dmlbench.nn.losses import ProxyAnchorLoss
    from dmlbench.nn.model import build_model
    from dmlbench.registry import get_method
    from dmlbench.train.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="vpt")
    parser.add_argument("--backbone", default="vit_glyph_patch8_48")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    method = get_method(args.method).from_values({})
    model = build_model(args.backbone, None, None, args.classes)
    method.setup(model)
    model.to(device).train()
    optimizer = torch.optim.AdamW(method.param_groups(model, 1e-4, 1e-2), lr=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loss_fn = ProxyAnchorLoss()
    trainer = Trainer(model, method, loss_fn, optimizer, schedule, device)
    size = model.backbone.patch_embed.img_size
    images = torch.randn(args.batch, 3, *size, device=device)
    labels = (torch.arange(args.batch, device=device) // 2) % args.classes
    batches = [(images, labels)] * args.steps

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def bare() -> float:
        start = time.perf_counter()
        for x, y in batches:
            loss = loss_fn(model(x), y, method.proxies(model, x, y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            method.after_step(model, optimizer, 1.0)
        sync()
        return (time.perf_counter() - start) / args.steps

    def ours() -> float:
        start = time.perf_counter()
        trainer.train_epoch(batches, epoch=1)
        sync()
        return (time.perf_counter() - start) / args.steps

    bare(), ours()  # warm-up: allocator, optimizer state
    times: dict[str, list[float]] = {"bare": [], "dmlbench": []}
    for _ in range(args.rounds):
        times["bare"].append(bare())
        times["dmlbench"].append(ours())
    b, d = statistics.median(times["bare"]), statistics.median(times["dmlbench"])
    print(f"{args.method} on {args.backbone}, batch {args.batch}, {args.device}, "
          f"{args.rounds} rounds of {args.steps} steps")  # fmt: skip
    print(f"bare loop: {b * 1e3:.1f} ms/step; dmlbench Trainer: {d * 1e3:.1f} ms/step")
    print(f"ratio dmlbench / bare: {d / b:.3f} (target ≤ 1.05)")


if __name__ == "__main__":
    main()
