"""Converting a trusted old-format state file (a ``torch.save`` pickle) to data.

dmlbench ≤ 0.2 wrote checkpoints and pretraining state with ``torch.save``; a
pickle runs code when read, so dmlbench never reads one on its own. This is
the one place that does, and only for a file the user names and vouches for
with ``--trust``: it is read once, fully, by torch's restricted (``weights_only``)
unpickler, which refuses anything that would call code, and written in the
data-only format beside it (the pickle itself is left where it was).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np

from dmlbench.errors import UserError
from dmlbench.state_file import save_state

try:  # numpy >= 2 pickles arrays through numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

# What a pickled numpy array (np.random.get_state()'s key array) names: constructors of
# data that call no other code.
_NUMPY_DATA = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


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
        # torch's restricted unpickler: tensors, containers, numbers and numpy arrays (the
        # old checkpoints' RNG state) load, anything else that would call code is refused
        # (torch also warns about what it refused: the one line below says it)
        with torch.serialization.safe_globals(_NUMPY_DATA), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: holds more than data, not converted ({first})") from None
    except Exception as e:  # noqa: BLE001 - whatever a torn or foreign pickle raises
        raise UserError(f"{path}: cannot be read as a checkpoint ({e})") from None
    try:
        save_state(target, state)
    except TypeError as e:
        raise UserError(f"{path}: holds something that is not data ({e}); not converted") from None
    return target
