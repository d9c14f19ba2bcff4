"""Every third-party module the package imports is a declared dependency.

A module that arrives only as another package's dependency (fontTools through
matplotlib, huggingface_hub through timm) can disappear with that package's
next release; declaring it is what keeps ``pip install`` honest.
"""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).parents[1]
# Imported only where an optional extra or a present accelerator is in use.
OPTIONAL = {"submitit": "slurm", "mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb"}


def _imported_top_level_modules() -> set[str]:
    found = set()
    for folder in ("dmlbench", "methods"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"dmlbench", "__future__"}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def _requirement_name(requirement: str) -> str:
    """``mlflow-skinny>=3`` → ``mlflow-skinny``."""
    from packaging.requirements import Requirement

    return _normalise(Requirement(requirement).name)


def test_every_imported_module_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(d) for d in project["dependencies"]}
    extras = {k: {_requirement_name(d) for d in v}
              for k, v in project["optional-dependencies"].items()}  # fmt: skip
    distributions = packages_distributions()
    missing = []
    for module in sorted(_imported_top_level_modules()):
        names = {_normalise(d) for d in distributions.get(module, [])}
        if not names:
            pytest.fail(f"module {module} is imported but no installed distribution provides it")
        extra = OPTIONAL.get(module)
        if names & declared or (extra and names & extras[extra]):
            continue
        missing.append(f"{module} ({', '.join(sorted(names))})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
