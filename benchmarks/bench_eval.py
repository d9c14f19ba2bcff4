"""Evaluation at SOP scale: dmlbench vs PML's AccuracyCalculator vs a bare faiss search.

One process, 60,000 × 384 random unit embeddings, 11,318 classes. Each
contender runs with peak-RSS sampling; PML runs last because its allocations
are the largest. The metrics compared are the ones PML computes with
k="max_bin_count": precision@1 (= R@1), MAP@R, R-precision.

    python benchmarks/bench_eval.py [--n 60000] [--dim 384] [--classes 11318]

Targets (issue 2): ≥ 1.8× faster than PML, ≤ 1.15× the bare faiss search,
peak memory ≤ 1/4 of PML's.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from dmlbench.eval.retrieval import retrieval_metrics
from dmlbench.train.meter import PeakMemory


def measure(fn):
    with PeakMemory("cpu", interval_s=0.01) as mem:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return out, seconds, mem.result()["peak_rss_growth_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=11_318)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    emb = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = rng.integers(0, args.classes, args.n)
    max_bin = int(np.bincount(labels).max())
    print(
        f"{args.n} × {args.dim} embeddings, {args.classes} classes, largest class {max_bin}, "
        f"{faiss.omp_get_max_threads()} threads"
    )

    ours, t_ours, m_ours = measure(lambda: retrieval_metrics(emb, labels, ks=(1,)))

    def bare_faiss():
        index = faiss.IndexFlatIP(args.dim)
        index.add(emb)
        return index.search(emb, max_bin)  # the same k as ours: R_max + 1 (self)

    _, t_faiss, m_faiss = measure(bare_faiss)

    def pml():
        calc = AccuracyCalculator(
            include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
            k="max_bin_count",
        )
        return calc.get_accuracy(emb, labels)

    theirs, t_pml, m_pml = measure(pml)

    print(f"\n{'':<22}{'seconds':>9}{'peak RSS MB':>13}")
    print(f"{'dmlbench':<22}{t_ours:>9.1f}{m_ours:>13.0f}")
    print(f"{'bare faiss search':<22}{t_faiss:>9.1f}{m_faiss:>13.0f}")
    print(f"{'PML AccuracyCalc.':<22}{t_pml:>9.1f}{m_pml:>13.0f}")
    print(f"\nspeed-up vs PML        {t_pml / t_ours:.2f}×   (target ≥ 1.8×)")
    print(f"time vs bare faiss     {t_ours / t_faiss:.2f}×   (target ≤ 1.15×)")
    print(f"memory vs PML          {m_ours / m_pml:.3f}    (target ≤ 0.25)")
    pairs = [
        ("recall@1", "precision_at_1"),
        ("map@r", "mean_average_precision_at_r"),
        ("r_precision", "r_precision"),
    ]
    worst = max(abs(ours[a] - theirs[b]) for a, b in pairs)
    for a, b in pairs:
        print(f"{a:<12} dmlbench {ours[a]:.8f}  PML {theirs[b]:.8f}")
    print(f"largest difference {worst:.2e} ({'agree' if worst <= 1e-6 else 'DISAGREE'} to 1e-6)")


if __name__ == "__main__":
    main()
