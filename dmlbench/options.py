"""Typed method options: a dataclass per method, filled from ``key=value`` strings or YAML.

Each field's ``metadata["help"]`` is its help text; a method validates ranges
in ``__post_init__`` by raising ``ValueError`` with the valid range, which
becomes a one-line user error naming the method and option.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from dmlbench.errors import UserError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def option(default: Any, help: str, **kwargs) -> Any:
    """A dataclass field with help text (shown by ``dmlbench methods --verbose`` and as
    the CLI option's help); pass ``default_factory=`` (and None) for mutable defaults."""
    if "default_factory" in kwargs:
        return dataclasses.field(metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        # The word "none" means None for numbers; for strings it stays a word
        # (``weights=none`` is a value of its own).
        if args[0] is not str and isinstance(value, str) and value.lower() in {"none", "null"}:
            return None
        return _convert(value, args[0])
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be true or false")
    if annotation is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError("must be an integer") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
    if annotation is str:
        return str(value)
    if origin in (list, tuple):
        return _convert_sequence(value, origin, typing.get_args(annotation))
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping (in YAML: {key: value, …})")
        return dict(value)
    if annotation is Any:
        return value
    raise ValueError(
        f"has type {_type_name(annotation)}, which dmlbench cannot read from a value; "
        "declare it as bool, int, float, str, a Literal, or a list of those"
    )


def _convert_sequence(value: Any, origin: type, args: tuple) -> list | tuple:
    """``1,2,3``, ``[1, 2, 3]`` (text) or a YAML list → a list/tuple of the item type."""
    items = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import yaml

            try:
                items = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ValueError("must be a list such as [1, 2] or 1,2") from None
        else:
            items = [part.strip() for part in text.split(",")] if text else []
    if not isinstance(items, list | tuple):
        raise ValueError("must be a list such as [1, 2] or 1,2")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(items) != len(args):
            raise ValueError(f"must have exactly {len(args)} items")
        converted = [_convert(v, a) for v, a in zip(items, args, strict=True)]
    else:
        item_type = args[0] if args else Any
        converted = [_convert(v, item_type) for v in items]
    return tuple(converted) if origin is tuple else converted


def parse_key_values(pairs: Iterable[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--opt {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def build_options(cls: type, values: Mapping[str, Any], owner: str) -> Any:
    """Instantiate the options dataclass ``cls`` from raw values, or raise a one-line UserError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types_ = _field_types(cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        valid = ", ".join(fields) or "(none)"
        raise UserError(f"{owner}: unknown option {unknown[0]!r}; valid options: {valid}")
    converted = {}
    for key, raw in values.items():
        try:
            converted[key] = _convert(raw, types_[key])
        except ValueError as e:
            raise UserError(f"{owner}: option {key}={raw!r} {e}") from None
    try:
        return cls(**converted)
    except ValueError as e:
        raise UserError(f"{owner}: {e}") from None


def describe_options(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) for each option."""
    types_ = _field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        rows.append((f.name, _type_name(types_[f.name]), f.default, f.metadata.get("help", "")))
    return rows


def _type_name(annotation: Any) -> str:
    """``int``, ``int or none``, ``xavier|normal|zeros``: how a user writes the value."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return f"{_type_name(args[0])} or none"
    if origin is typing.Literal:
        return "|".join(map(str, typing.get_args(annotation)))
    if origin in (list, tuple):
        items = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return f"list of {_type_name(items[0])}" if items else "list"
    if origin is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))
