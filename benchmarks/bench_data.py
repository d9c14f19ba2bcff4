"""Loader throughput with and without the downsized-image cache.

Makes full-size JPEGs (CUB-like 500×375 by default) in a temporary folder,
then times the training loader (RandomResizedCrop 224 + flip, as for CUB)
over them, reading the originals and then the cached copies (shorter side
256). Prints images/s for both, the ratio, and the one-off cache build time.

    python benchmarks/bench_data.py [--images 400] [--width 500] [--height 375] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dmlbench.data.image_cache import cached_records
from dmlbench.data.image_list import ImageListDataset, ImageRecord
from dmlbench.data.transforms import TransformSpec, train_transform


def make_images(folder: Path, count: int, width: int, height: int) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        # Smooth random content compresses like a photo, not like noise.
        small = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        path = folder / f"{i % 20:03d}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90)
        records.append(ImageRecord(path, str(i % 20), "train"))
    return records


def images_per_second(records, workers: int) -> float:
    transform = train_transform(TransformSpec(), 224, (0.5,) * 3, (0.5,) * 3)
    loader = torch.utils.data.DataLoader(
        ImageListDataset(records, transform), batch_size=32, num_workers=workers
    )
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in loader)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DMLBENCH_CACHE"] = str(Path(tmp) / "cache")
        records = make_images(Path(tmp) / "images", args.images, args.width, args.height)
        start = time.perf_counter()
        cached = cached_records(records, side=256, progress=False)
        build = time.perf_counter() - start
        original = images_per_second(records, args.workers)
        fast = images_per_second(cached, args.workers)
    print(f"{args.images} JPEGs of {args.width}×{args.height}, {args.workers} workers")
    print(f"  originals     {original:8.1f} img/s")
    print(f"  cached (256)  {fast:8.1f} img/s   ratio {fast / original:.2f}×")
    print(f"  cache build   {build:8.1f} s (once)")


if __name__ == "__main__":
    main()
