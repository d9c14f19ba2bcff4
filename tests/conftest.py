"""Shared fixtures: tiny generated image data and a cache isolated per session."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from dmlbench.data.glyphs.fonts import font_files

TINY_BACKBONE = "vit_glyph_patch8_48"


def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` imported as a module (the folder is no package). Registered in
    ``sys.modules`` first, since dataclasses look their module up while it executes."""
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory, request):
    """Tests never write into the user's cache; the glyph eval part is shared across tests."""
    import os

    cache = tmp_path_factory.mktemp("dmlbench-cache")
    old = os.environ.get("DMLBENCH_CACHE")
    os.environ["DMLBENCH_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DMLBENCH_CACHE", None)
    else:
        os.environ["DMLBENCH_CACHE"] = old


def make_glyph_folder(root: Path, n_classes: int = 8, per_class: int = 6, seed: int = 0) -> Path:
    """A class-folder dataset of rendered glyphs (letters), cheap to make."""
    from dmlbench.data.glyphs.render import GlyphStyle, render_instance

    fonts = [f for f in font_files() if f.name.startswith("DejaVuSans")]
    for c in range(n_classes):
        cls_dir = root / f"class_{c:02d}"
        cls_dir.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, c, i])
            image = render_instance(ord("A") + c, fonts[i % len(fonts)], rng, GlyphStyle())
            image.save(cls_dir / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def glyph_folder(tmp_path_factory) -> Path:
    return make_glyph_folder(tmp_path_factory.mktemp("glyph_folder"))


@pytest.fixture(scope="session")
def glyph_csv(glyph_folder) -> Path:
    """The same images as a path,label,split CSV (first half of the classes train)."""
    rows = []
    classes = sorted(p.name for p in glyph_folder.iterdir())
    for i, cls in enumerate(classes):
        for img in sorted((glyph_folder / cls).iterdir()):
            rows.append((f"{cls}/{img.name}", cls, "train" if i < len(classes) // 2 else "test"))
    path = glyph_folder / "list.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    return path


def tiny_run_cli_args(folder: Path, output: Path) -> list[str]:
    """CLI args of a seconds-long run on a tiny folder dataset, random backbone."""
    return [
        "run",
        "--dataset", f"folder:{folder}",
        "--weights", "none",
        "--epochs", "1",
        "--batch-size", "8",
        "--images-per-class", "2",
        "--output", str(output),
    ]  # fmt: skip


@pytest.fixture
def tiny_run_args(glyph_folder, tmp_path) -> list[str]:
    return tiny_run_cli_args(glyph_folder, tmp_path / "runs")
