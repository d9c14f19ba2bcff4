"""Raw-pixel kNN on the glyph classes: the floor a learned embedding must clear.

Each image (at the backbone's 48² input, after the benchmark's test transform,
mean-centred) is used as its own embedding, scored by the same evaluation as the
runs. With ``--store DIR`` the embeddings go through ``dmlbench eval --embeddings``
and are stored as a run in DIR, so ``dmlbench report`` lists the row.

    python benchmarks/glyph_pixel_baseline.py                       # glyphs, val classes
    python benchmarks/glyph_pixel_baseline.py --dataset glyphs-v1 --split test
    python benchmarks/glyph_pixel_baseline.py --split test --store results/runs/table1-glyphs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from dmlbench.config import RunConfig
from dmlbench.data.image_list import ImageListDataset
from dmlbench.data.spec import get_dataset
from dmlbench.data.transforms import test_transform
from dmlbench.run.data import evaluation_order, split_records
from dmlbench.run.zero_shot import evaluate_embeddings

LABEL = "Raw-pixel kNN (no model)"


def pixel_embeddings(dataset_name: str, split: str) -> np.ndarray:
    """One row per evaluation image, in the order ``dmlbench eval --dump-order`` writes."""
    spec = get_dataset(dataset_name)
    view = split_records(spec, RunConfig(dataset=dataset_name, split=split))
    records = [r for items in evaluation_order(view, view.records) for r in items]
    data = ImageListDataset(records, test_transform(spec.transform, 48, (0.5,) * 3, (0.5,) * 3))
    pixels = torch.stack([data[i][0] for i in range(len(data))]).flatten(1).numpy()
    return pixels - pixels.mean(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="glyphs")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--store", default=None, help="Store the row as a run in this folder.")
    args = parser.parse_args()
    pixels = pixel_embeddings(args.dataset, args.split)
    output = args.store or tempfile.mkdtemp(prefix="pixel-knn-")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pixels.npy"
        np.save(path, pixels.astype(np.float32))
        config = RunConfig(dataset=args.dataset, split=args.split, output=output)
        run_dir, summary = evaluate_embeddings(path, config, label=LABEL)
    m = summary["metrics"]
    ks = get_dataset(args.dataset).recall_ks
    recalls = "  ".join(f"R@{k} {m[f'recall@{k}']:.4f}" for k in ks)
    print(
        f"raw pixels, {args.dataset} {args.split} classes ({m['queries']} queries): {recalls}  "
        f"MAP@R {m['map@r']:.4f}  R-precision {m['r_precision']:.4f}"
    )
    if args.store:
        print(f"stored in {run_dir}")


if __name__ == "__main__":
    main()
