"""Converting a trusted old-format state file (a ``torch.save`` pickle) to data.

dmlbench ≤ 0.2 wrote checkpoints and pretraining state with ``torch.save``; a
pickle runs code when read, so dmlbench never reads one on its own. This is
the one place that does, and only for a file the user names and vouches for
with ``--trust``: it is read once, fully, and written in the data-only format
beside it (the pickle itself is left where it was).
"""

from __future__ import annotations

from pathlib import Path

from dmlbench.errors import UserError
from dmlbench.state_file import save_state


def converted_path(path: Path) -> Path:
    return path.with_suffix(".safetensors")


def convert_trusted(path: Path) -> Path:
    """Read ``path`` as the pickle it is (the caller has the user's word that it is
    trusted) and write its content as a state file; returns the new file."""
    import torch

    target = converted_path(path)
    if path.suffix != ".pt":
        raise UserError(f"{path}: not an old-format state file (those end in .pt)")
    if target.exists():
        raise UserError(f"{path}: {target.name} exists already; nothing was converted")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # the user trusts it
    except Exception as e:  # noqa: BLE001 - whatever a torn or foreign pickle raises
        raise UserError(f"{path}: cannot be read as a checkpoint ({e})") from None
    try:
        save_state(target, state)
    except TypeError as e:
        raise UserError(f"{path}: holds something that is not data ({e}); not converted") from None
    return target
