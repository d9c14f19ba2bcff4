"""Name → class registries for methods and datasets.

Built-in methods are discovered by importing every module of
``dmlbench.methods``; third-party methods arrive through the entry-point group
``dmlbench.methods`` so a pip-installed package can add one without touching
dmlbench.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

from dmlbench.errors import UserError

if TYPE_CHECKING:
    from dmlbench.method import Method

ENTRY_POINT_GROUP = "dmlbench.methods"

_METHODS: dict[str, type[Method]] = {}
_discovered = False

M = TypeVar("M", bound="type[Method]")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make a Method subclass available under ``name``."""

    def decorate(cls: M) -> M:
        existing = _METHODS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"method name {name!r} is taken by {existing.__module__}.{existing.__qualname__}"
            )
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def load_entry_point_methods() -> list[str]:
    """Import every plugin of the ``dmlbench.methods`` entry-point group.

    Each entry point names a module (or an object in it) whose import runs
    ``@register_method``; returns the entry-point names that were loaded.
    """
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
        loaded.append(ep.name)
    return loaded


def discover_methods() -> None:
    """Import the built-in method modules and the entry-point plugins once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import dmlbench.methods as builtin

    for info in pkgutil.iter_modules(builtin.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{builtin.__name__}.{info.name}")
    load_entry_point_methods()


def method_names() -> list[str]:
    discover_methods()
    return sorted(_METHODS)


def get_method(name: str) -> type[Method]:
    discover_methods()
    try:
        return _METHODS[name]
    except KeyError:
        raise UserError(
            f"unknown method {name!r}; valid methods: {', '.join(sorted(_METHODS))}"
        ) from None
