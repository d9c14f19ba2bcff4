"""Cost of the run-time method-contract check (dmlbench/train/contract.py), side by side.

The check snapshots the trainable parameters before a trainer's first step (to host
memory), looks at their gradients after it, and compares them with the snapshot at
the end of that epoch; every later step pays one boolean test. Here two trainers on
the same initial model run the same first epoch, one with the check and one without,
alternating in one process; printed: the median seconds of that epoch for each, the
ratio, and the extra milliseconds spread over the epoch's steps.

    python benchmarks/bench_contract.py --method full-ft --steps 62   # a glyph epoch
    python benchmarks/bench_contract.py --method vpt
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
    parser.add_argument("--method", default="full-ft")
    parser.add_argument("--backbone", default="vit_glyph_patch8_48")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="steps of the first epoch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    def fresh_model():
        """The same initial model each time (built and attached anew: a deep copy of an
        attached model keeps hooks bound to the original's prompts)."""
        torch.manual_seed(0)
        method = get_method(args.method).from_values({})
        model = build_model(args.backbone, None, None, args.classes)
        method.setup(model)
        return model, method

    template, _ = fresh_model()
    size = template.backbone.patch_embed.img_size
    images = torch.randn(args.batch, 3, *size)
    labels = (torch.arange(args.batch) // 2) % args.classes
    batches = [(images, labels)] * args.steps

    def first_epoch(check: bool) -> float:
        model, method = fresh_model()
        model.train()
        optimizer = torch.optim.AdamW(method.param_groups(model, 1e-4, 1e-2), lr=1e-4)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        trainer = Trainer(model, method, ProxyAnchorLoss(), optimizer, schedule,
                          torch.device("cpu"), check_first_step=check)  # fmt: skip
        start = time.perf_counter()
        trainer.train_epoch(batches, epoch=1)
        return time.perf_counter() - start

    first_epoch(False)  # warm-up
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for check in (False, True):
            times[check].append(first_epoch(check))
    off, on = statistics.median(times[False]), statistics.median(times[True])
    tunable = sum(p.numel() for p in template.parameters() if p.requires_grad)
    print(f"{args.method} on {args.backbone}, batch {args.batch}, {tunable:,} tunable "
          f"parameters, first epoch of {args.steps} steps, {args.rounds} rounds "
          f"({torch.get_num_threads()} threads)")  # fmt: skip
    print(f"without check {off:.3f} s, with check {on:.3f} s: ratio {on / off:.4f}, "
          f"{1000 * (on - off):+.1f} ms per epoch = {1000 * (on - off) / args.steps:+.2f} ms "
          f"per step of {1000 * off / args.steps:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
