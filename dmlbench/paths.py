"""Where dmlbench keeps generated data and downloads."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DMLBENCH_CACHE``, else ``~/.cache/dmlbench`` (XDG_CACHE_HOME respected)."""
    if env := os.environ.get("DMLBENCH_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmlbench"


def data_root() -> Path:
    """Where the public benchmarks live: ``$DMLBENCH_DATA``, else ``<cache>/data``."""
    if env := os.environ.get("DMLBENCH_DATA"):
        return Path(env)
    return cache_root() / "data"
