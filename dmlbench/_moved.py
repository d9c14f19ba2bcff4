"""Import paths of modules that moved in 0.2, kept working for one release.

``import dmlbench.backbone`` (and ``from dmlbench.backbone import X``) still
works: a module is made on the fly that looks each name up in the new
modules and warns once (DeprecationWarning) with the new path. Installed by
``dmlbench/__init__.py`` at the end of ``sys.meta_path``, so it is asked only
for names no real module has.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old module → the new modules its names now live in
MOVED: dict[str, tuple[str, ...]] = {
    "dmlbench.adapters": ("dmlbench.nn.adapters",),
    "dmlbench.backbone": ("dmlbench.nn.backbone", "dmlbench.nn.model"),
    "dmlbench.losses": ("dmlbench.nn.losses",),
    "dmlbench.prompts": ("dmlbench.nn.prompts",),
    "dmlbench.prompt_bank": ("dmlbench.nn.prompt_bank",),
    "dmlbench.evaluate": ("dmlbench.eval.retrieval",),
    "dmlbench.trainer": ("dmlbench.train.trainer", "dmlbench.train.optim"),
    "dmlbench.checkpoint": ("dmlbench.train.checkpoint",),
    "dmlbench.state": ("dmlbench.train.state",),
    "dmlbench.distributed": ("dmlbench.train.distributed",),
    "dmlbench.meter": ("dmlbench.train.meter",),
    "dmlbench.seeding": ("dmlbench.train.seeding",),
    "dmlbench.pretrain": ("dmlbench.train.pretrain",),
    "dmlbench.pretrain_config": ("dmlbench.train.pretrain_config",),
    "dmlbench.params": ("dmlbench.cost.params",),
    "dmlbench.results": ("dmlbench.store.results",),
    "dmlbench.report": ("dmlbench.store.report",),
    "dmlbench.plots": ("dmlbench.store.plots",),
    "dmlbench.sweep": ("dmlbench.run.sweep",),
    "dmlbench.sweep_submitit": ("dmlbench.run.slurm",),
    "dmlbench.data.cub": ("dmlbench.data.public.cub",),
    "dmlbench.data.cars": ("dmlbench.data.public.cars",),
    "dmlbench.data.sop": ("dmlbench.data.public.sop",),
    "dmlbench.data.inshop": ("dmlbench.data.public.inshop",),
    "dmlbench.data.fetch": ("dmlbench.data.public.fetch",),
    "dmlbench.data.fonts": ("dmlbench.data.glyphs.fonts",),
    "dmlbench.data.glyph_classes": ("dmlbench.data.glyphs.classes",),
    "dmlbench.data.glyph_benchmark": ("dmlbench.data.glyphs.benchmark",),
}


class _Forwarding(types.ModuleType):
    """An old module path: every attribute comes from the new modules."""

    def __getattr__(self, name: str):
        for target in self.__dict__["_targets"]:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        module = _Forwarding(spec.name)
        module.__dict__["_targets"] = MOVED[spec.name]
        return module

    def exec_module(self, module) -> None:
        targets = " and ".join(MOVED[module.__name__])
        warnings.warn(
            f"{module.__name__} moved to {targets}; the old path goes in the next release "
            "(plugins: import from dmlbench.plugin)",
            DeprecationWarning,
            stacklevel=2,
        )


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


def install() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
