"""Training state as data: tensors in safetensors, everything else as JSON.

Checkpoints and pretraining state live in run directories, and run
directories are what researchers share; a pickle (``torch.save``) in one runs
code when it is read. Nothing dmlbench writes for itself is therefore a
pickle: a state file is one safetensors file whose tensors are the state's
tensors and whose header metadata holds the rest of the structure as JSON
(dicts, lists, tuples, numbers, strings, ``None``), each tensor referenced by
name. Reading it parses JSON and copies bytes; no object is ever constructed
from the file's say-so.

Why by hand: safetensors stores a flat ``{name: tensor}`` map and string
metadata, not nested state (optimizer, scheduler, RNG states, epoch records);
``torch.load(weights_only=True)`` keeps the nesting but is still an unpickler
whose allow-list has had bypasses. This module is the small bridge between
the two formats safetensors and JSON, and nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmlbench.atomic import atomic_open

FORMAT = "dmlbench-state/1"
_STATE_KEY = "dmlbench_state"
_FORMAT_KEY = "format"
_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__pairs__")
# numpy dtypes a tensor holds as they are; others (numpy's RNG key is uint32) are
# widened to int64 and narrowed back on reading, exactly.
_AS_IS = {np.dtype(t) for t in ("float16", "float32", "float64", "int8", "int16", "int32",
                                "int64", "uint8", "bool")}  # fmt: skip


class CorruptState(Exception):
    """The file is not a readable dmlbench state file (torn, truncated, foreign)."""


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def _store(self, tensor: torch.Tensor) -> str:
        name = f"t{len(self.tensors)}"
        # A copy of its own (one, also from an accelerator): safetensors refuses tensors
        # that share memory.
        self.tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
        return name

    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, np.generic):  # a numpy scalar in an epoch record
            return value.item()
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self._store(value)}
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise TypeError(f"{where}: numpy array of dtype {value.dtype} cannot be stored")
            kept = value if value.dtype in _AS_IS else value.astype(np.int64)
            stored = self._store(torch.from_numpy(np.ascontiguousarray(kept)))
            return {"__ndarray__": stored, "dtype": str(value.dtype)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            plain = all(isinstance(k, str) for k in value) and not (
                len(value) == 1 and next(iter(value)) in _TAGS
            )
            if plain:
                return {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}
            return {"__pairs__": [[self.encode(k, f"{where} key"), self.encode(v, f"{where}.{k}")]
                                  for k, v in value.items()]}  # fmt: skip
        raise TypeError(f"{where}: a {type(value).__name__} is not data a state file can hold")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__tensor__"}:
        return tensors[value["__tensor__"]]
    if set(value) == {"__ndarray__", "dtype"}:
        return tensors[value["__ndarray__"]].numpy().astype(np.dtype(value["dtype"]))
    if set(value) == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if set(value) == {"__pairs__"}:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in value["__pairs__"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, list | dict):
        raise CorruptState(f"a dict key of type {type(key).__name__}")
    return key


def state_bytes(state: Any) -> bytes:
    """``state`` (nested dicts, lists, tuples, scalars, strings, tensors, numpy arrays)
    as the bytes of a state file; anything else is a TypeError naming where it is."""
    from safetensors.torch import save

    encoder = _Encoder()
    skeleton = encoder.encode(state, "state")
    metadata = {_FORMAT_KEY: FORMAT, _STATE_KEY: json.dumps(skeleton, allow_nan=True)}
    return save(encoder.tensors, metadata=metadata)


def save_state(path: Path, state: Any) -> None:
    """Write ``state`` to ``path`` atomically (see :func:`state_bytes`)."""
    with atomic_open(path, "wb") as f:
        f.write(state_bytes(state))


def load_state(path: Path) -> Any:
    """The state :func:`save_state` wrote; :class:`CorruptState` if the file is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get(_FORMAT_KEY) != FORMAT or _STATE_KEY not in metadata:
                raise CorruptState(f"not a {FORMAT} file")
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        skeleton = json.loads(metadata[_STATE_KEY])
        return _decode(skeleton, tensors)
    except CorruptState:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors' own error, bad JSON, a missing tensor
        raise CorruptState(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
