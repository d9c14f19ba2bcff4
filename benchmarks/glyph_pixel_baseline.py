"""Raw-pixel kNN on the glyph classes: the floor a learned embedding must clear.

Each image (at the backbone's 48² input, after the benchmark's test transform,
mean-centred) is used as its own embedding; the same evaluation as the runs.
Reported beside the methods so readers see how much the backbone and the
training add.

    python benchmarks/glyph_pixel_baseline.py                       # glyphs, val classes
    python benchmarks/glyph_pixel_baseline.py --dataset glyphs-v1 --split test
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dmlbench.data.image_list import ImageListDataset
from dmlbench.data.spec import get_dataset
from dmlbench.data.transforms import test_transform
from dmlbench.eval.retrieval import retrieval_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="glyphs")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    args = parser.parse_args()
    spec = get_dataset(args.dataset)
    records = [r for r in spec.records() if r.split == args.split]
    data = ImageListDataset(records, test_transform(spec.transform, 48, (0.5,) * 3, (0.5,) * 3))
    pixels = torch.stack([data[i][0] for i in range(len(data))]).flatten(1).numpy()
    pixels = pixels - pixels.mean(axis=1, keepdims=True)
    pixels /= np.linalg.norm(pixels, axis=1, keepdims=True)
    m = retrieval_metrics(pixels, np.array(data.targets), ks=spec.recall_ks)
    recalls = "  ".join(f"R@{k} {m[f'recall@{k}']:.4f}" for k in spec.recall_ks)
    print(
        f"raw pixels, {args.dataset} {args.split} classes ({m['queries']} queries): {recalls}  "
        f"MAP@R {m['map@r']:.4f}  R-precision {m['r_precision']:.4f}"
    )


if __name__ == "__main__":
    main()
