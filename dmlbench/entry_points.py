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
        except NameTaken:
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
