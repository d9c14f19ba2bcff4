"""The package layout keeps data flowing one way, and old import paths still work.

Stages, in the order data flows: shared utilities → data → nn → the plugin
interface (method, registry, config, methods) → eval → train → cost → store →
run → command line. A module may import from its own stage or earlier ones,
never from a later one (imports inside functions included).
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
STAGES = [
    (
        "errors",
        "paths",
        "atomic",
        "progress",
        "options",
        "assets",
        "_moved",
        "entry_points",
        "state_file",
        "textfile",
    ),
    ("data",),
    ("nn",),
    ("method", "peft_method", "registry", "config", "methods", "plugin"),
    ("eval",),
    ("train",),
    ("cost",),
    ("store",),
    ("run",),
    ("cli", "cli_options", "__main__", "testing", "__init__"),
]
STAGE_OF = {name: i for i, names in enumerate(STAGES) for name in names}


def _module_name(path: Path) -> str:
    if path.is_relative_to(ROOT / "methods"):
        return "dmlbench.methods." + ".".join(
            path.relative_to(ROOT / "methods").with_suffix("").parts
        )
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _stage(module: str) -> int:
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    if first.endswith("__init__") or first == "__init__":
        first = "__init__"
    return STAGE_OF[first]


def _sources():
    yield from (ROOT / "dmlbench").rglob("*.py")
    yield from (ROOT / "methods").rglob("*.py")


def test_every_module_has_a_stage():
    unknown = set()
    for path in _sources():
        name = _module_name(path)
        try:
            _stage(name)
        except KeyError:
            unknown.add(name)
    assert not unknown


def test_no_module_imports_from_a_later_stage():
    backward = []
    for path in _sources():
        name = _module_name(path)
        own = _stage(name)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            for target in targets:
                if target.startswith("dmlbench.") and _stage(target) > own:
                    backward.append(f"{name} imports {target}")
    assert not backward, "\n".join(backward)


@pytest.mark.parametrize(
    "old,name",
    [("dmlbench.backbone", "EmbeddingModel"), ("dmlbench.backbone", "build_model"),
     ("dmlbench.results", "load"), ("dmlbench.data.glyph_benchmark", "GlyphDataset")],
)  # fmt: skip
def test_old_import_paths_work_with_a_deprecation_warning(old, name):
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to dmlbench"):
        module = importlib.import_module(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(module, name) is not None
