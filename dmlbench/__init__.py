"""dmlbench: benchmarking parameter-efficient fine-tuning of ViTs for deep metric learning.

The public API, importable from here (as timm's ``create_model`` is): ``RunConfig``
and ``execute`` to run, ``load`` to read the run store as a pandas table,
``get_method`` / ``get_dataset`` to look plugins up. Plugin authors import from
:mod:`dmlbench.plugin`. Names load on first use, so ``import dmlbench`` stays cheap.
"""

from dmlbench import _moved

__version__ = "0.2.0"

_moved.install()

_PUBLIC = {
    "RunConfig": "dmlbench.config",
    "make_config": "dmlbench.config",
    "execute": "dmlbench.run.execute",
    "load": "dmlbench.store.results",
    "get_method": "dmlbench.registry",
    "method_names": "dmlbench.registry",
    "get_dataset": "dmlbench.registry",
    "dataset_names": "dmlbench.registry",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'dmlbench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
