"""Loading third-party plugins (methods, datasets) from installed packages' entry points.

A plugin that fails to import must not take the others down: its failure is
one line on stderr naming the distribution and the error, and every other
method or dataset still works. Two plugins claiming one name is bad input
(:class:`NameTaken`, exit 2), since which one a run would get is arbitrary.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

from dmlbench.errors import UserError


class NameTaken(UserError):
    """A method or dataset name registered twice by different code."""


def origin(obj: object) -> str:
    """Where a registered class comes from: its module, and the distribution if known."""
    module = getattr(obj, "__module__", "?")
    return f"{module}.{getattr(obj, '__qualname__', '')}".rstrip(".")


def is_builtin(obj: object) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] == "dmlbench"


def plugin_name(obj: object) -> str:
    """A registered class as a message names it: its origin and, for a plugin, the
    installed distribution that provides its top-level package (if any)."""
    if is_builtin(obj):
        return f"{origin(obj)} (built into dmlbench)"
    from importlib.metadata import packages_distributions

    top = getattr(obj, "__module__", "").split(".")[0]
    dists = packages_distributions().get(top, [])
    return f"{origin(obj)} (distribution {', '.join(sorted(set(dists)))})" if dists else origin(obj)


def clash_message(kind: str, name: str, existing: object, new: object) -> str:
    """Two classes registering one name: which is built in, and what to do."""
    if is_builtin(existing) or is_builtin(new):
        builtin, plugin = (existing, new) if is_builtin(existing) else (new, existing)
        return (f"{kind} name {name!r} is built into dmlbench ({origin(builtin)}); the "
                f"plugin {plugin_name(plugin)} must register another name")  # fmt: skip
    return (f"{kind} name {name!r} is claimed by both {plugin_name(existing)} and "
            f"{plugin_name(new)}; uninstall one of the two plugins, or rename one")  # fmt: skip


def check_plugin_class(kind: str, cls: object, base: type, required: str, where: str,
                       fix: str) -> None:  # fmt: skip
    """A registered class subclasses ``base``, defines its ``required`` hook and no
    misspelt one; else one line naming the plugin, its distribution and the hook."""
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise PluginError(f"{where}: {plugin_name(cls)} is not a {base.__name__} subclass; "
                          f"subclass dmlbench.plugin.{base.__name__}")  # fmt: skip
    hooks = {n for n in dir(base) if not n.startswith("_")}
    for defined, meant in _misspelt_hooks(cls, hooks):
        raise PluginError(
            f"{kind} {plugin_name(cls)} defines {defined!r}, which is no hook; did you mean "
            f"{meant!r}? (the default {meant} runs instead)"
        )
    if getattr(cls, required) is getattr(base, required):
        raise PluginError(f"{kind} {plugin_name(cls)} defines no {required}() hook: {fix}")


def _misspelt_hooks(cls: type, hooks: set[str]) -> list[tuple[str, str]]:
    """(defined, meant) for each public function of ``cls`` whose name is not a hook but
    close to one (``atach`` for ``attach``): the base class would silently run its
    default in its place."""
    import difflib

    found = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in hooks or not callable(value):
            continue
        close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.8)
        if close:
            found.append((name, close[0]))
    return found


class PluginError(UserError):
    """A plugin's class breaks the contract in a way its author must fix."""


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def load_group(group: str, failures: list[str] | None = None) -> list[str]:
    """Import every entry point of ``group``; returns the names that loaded.

    Import errors are reported (and appended to ``failures``) and skipped;
    :class:`NameTaken` propagates.
    """
    loaded = []
    for ep in entry_points(group=group):
        try:
            ep.load()
        except (NameTaken, PluginError):
            raise
        except Exception as e:  # noqa: BLE001 - any import failure of a third-party plugin
            first = (str(e).strip().splitlines() or [""])[0][:200]
            line = (
                f"warning: plugin {ep.name!r} of {_distribution(ep)} ({group}) failed to "
                f"import and is skipped: {type(e).__name__}: {first}"
            )
            print(line, file=sys.stderr)
            if failures is not None:
                failures.append(line)
            continue
        loaded.append(ep.name)
    return loaded
