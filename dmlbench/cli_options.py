"""Click options made from a config dataclass: one source of truth for each setting's
name, type, default and help (``RunConfig`` → ``dmlbench run``, ``PretrainConfig``
→ ``dmlbench pretrain``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable

import click


def _unwrap(annotation):
    """The type a user gives, without ``| None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def config_options(
    cls: type, exclude: tuple[str, ...] = (), unset_is_none: bool = True
) -> Callable:
    """Decorator adding ``--field-name`` for every field of ``cls`` but ``exclude``.

    ``unset_is_none``: an option not given is None, so that a YAML file and the
    dataset's recipe can fill it (``dmlbench run``); otherwise it defaults to the
    field's default, shown in the help.
    """
    hints = typing.get_type_hints(cls)

    def decorate(command):
        for field in reversed(dataclasses.fields(cls)):
            if field.name in exclude:
                continue
            kind = _unwrap(hints[field.name])
            name = "--" + field.name.replace("_", "-")
            help_text = field.metadata.get("help", "")
            has_default = field.default is not dataclasses.MISSING
            shown = has_default and field.default is not None and "[default" not in help_text
            if unset_is_none and shown:
                help_text += f" [default: {field.default}]"
            default = None if unset_is_none else field.default
            if kind is bool:  # --x/--no-x; unset (None) leaves it to the YAML file
                option = click.option(f"{name}/--no-{name[2:]}", default=default,
                                      help=help_text, show_default=not unset_is_none)  # fmt: skip
            elif typing.get_origin(kind) in (list, tuple):
                items = typing.get_args(kind)
                choices = typing.get_args(items[0]) if items else ()
                if choices and typing.get_origin(items[0]) is typing.Literal:
                    help_text += f" ({', '.join(map(str, choices))})"
                option = click.option(name, multiple=True, callback=_list_value,
                                      metavar="VALUE[,VALUE]", help=help_text)  # fmt: skip
            else:
                if typing.get_origin(kind) is typing.Literal:
                    kind = click.Choice([str(c) for c in typing.get_args(kind)])
                option = click.option(name, type=kind, default=default, help=help_text,
                                      show_default=not unset_is_none)  # fmt: skip
            command = option(command)
        return command

    return decorate


def _list_value(_ctx, _param, given: tuple[str, ...]) -> list[str] | None:
    """``--log a --log b`` or ``--log a,b`` → ["a", "b"]; not given → None (unset)."""
    values = [item.strip() for text in given for item in text.split(",") if item.strip()]
    return values or None
