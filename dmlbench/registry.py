"""Name → class registries for methods and datasets.

Built-in methods are discovered by importing every module of
``dmlbench.methods``; third-party methods arrive through the entry-point group
``dmlbench.methods`` (datasets: ``dmlbench.datasets``), so a pip-installed
package adds one without touching dmlbench.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from dmlbench.data.spec import dataset_names, get_dataset  # noqa: F401 - the public lookups
from dmlbench.entry_points import (
    NameTaken,
    check_plugin_class,
    clash_message,
    is_builtin,
    load_group,
    origin,
)
from dmlbench.errors import UserError

if TYPE_CHECKING:
    from dmlbench.method import Method, TableRow

ENTRY_POINT_GROUP = "dmlbench.methods"

_METHODS: dict[str, type[Method]] = {}
_discovered = False

M = TypeVar("M", bound="type[Method]")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make a Method subclass available under ``name``."""

    def decorate(cls: M) -> M:
        existing = _METHODS.get(name)
        if existing is not None and origin(existing) != origin(cls):
            raise NameTaken(clash_message("method", name, existing, cls))
        from dmlbench.method import Method

        check_plugin_class("method", cls, Method, "attach", f"@register_method({name!r})",
                           "it sets requires_grad on what trains (see Method.attach)")  # fmt: skip
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def load_entry_point_methods() -> list[str]:
    """Import every plugin of the ``dmlbench.methods`` entry-point group.

    Each entry point names a module (or an object in it) whose import runs
    ``@register_method``; returns the entry-point names that were loaded. A
    plugin that fails to import is reported in one line and skipped.
    """
    return load_group(ENTRY_POINT_GROUP)


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


def table_row_methods() -> list[tuple[str, TableRow]]:
    """(method name, row) for the Table-1 rows every registered method declares: the
    built-in ones in their declared order, then the plugins' (by their order, method
    and label, so two plugins' rows never interleave by chance of install order)."""
    rows = [(name, row) for name in method_names() for row in get_method(name).table_rows]

    def position(pair: tuple[str, TableRow]) -> tuple:
        name, row = pair
        plugin = not is_builtin(get_method(name))
        return (plugin, name if plugin else "", row.order, row.label)

    return sorted(rows, key=position)
