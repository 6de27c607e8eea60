"""Bridge from a pydantic-settings class to argparse flags.

Every field becomes ``--kebab-name`` (or the ``cli`` name in its json_schema_extra);
flags override environment variables, which override defaults. The connection blocks a
settings class composes (``ganomaly.connections.compose``: Kafka, Redis) are flattened:
their fields are flags of the process like any other, shown with their shared env names. ``--help`` lists
every setting with its env variable, its default and, for a choice, the choices,
so there is one source of truth per process.

pydantic-settings' own CLI source was considered: it names env variables after
aliases (``--class`` would have to become ``klass``'s alias, renaming its env
variable), shows no env variable in ``--help`` and prints its own multi-line
errors; a few dozen lines here keep all three as users know them.
"""

from __future__ import annotations

import argparse
import enum
import json
import types
from pathlib import PurePath
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from ganomaly.connections.compose import blocks, env_name
from ganomaly.errors import UserError
from ganomaly.settings import _split_commas

S = TypeVar("S", bound=BaseSettings)
T = TypeVar("T")

def _flag(name: str, extra: Any) -> str:
    if isinstance(extra, dict) and "cli" in extra:
        return str(extra["cli"])
    return "--" + name.replace("_", "-")


def _members(annotation: Any) -> list[Any]:
    """The non-None members of an Optional/Union, with Annotated wrappers removed."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) if a is not type(None) for m in _members(a)]
    return [annotation]


def _is_bool(annotation: Any) -> bool:
    return _members(annotation) == [bool]


def _is_list(annotation: Any) -> bool:
    return any(get_origin(m) in (list, tuple, set, frozenset) for m in _members(annotation))


def _is_secret(annotation: Any) -> bool:
    return SecretStr in _members(annotation)


def _choices(annotation: Any) -> list[str] | None:
    lits = [m for m in _members(annotation) if get_origin(m) is Literal]
    if len(lits) != 1 or len(_members(annotation)) != 1:
        return None
    return [str(a) for a in get_args(lits[0])]


def _item_choices(annotation: Any) -> list[str] | None:
    lists = [m for m in _members(annotation) if get_origin(m) in (list, tuple, set, frozenset)]
    return _choices(get_args(lists[0])[0]) if lists and get_args(lists[0]) else None


def _render(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, enum.Enum):
        return _render(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_render(v) for v in value) or "none"
    if isinstance(value, str):
        return value or '""'
    return str(value)


def default_text(field: Any) -> str:
    """``required``, ``default: <value>`` or, for a secret, ``default: (secret)``; never a repr."""
    if field.is_required():
        return "required"
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "default_help" in extra:  # a default computed at start (host names, pids) says how, not what it was for --help
        return f"default: {extra['default_help']}"
    value = field.get_default(call_default_factory=True, validated_data={})
    if _is_secret(field.annotation) and value is not None:
        return "default: (secret)"
    return f"default: {_render(value)}"


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type[BaseSettings], *, positional: tuple[str, ...] = ()) -> None:
    """``positional`` fields become positional arguments (optional ones with nargs='?')."""
    for name in positional:
        field = cls.model_fields[name]
        parser.add_argument(name, nargs=None if field.is_required() else "?", default=argparse.SUPPRESS, help=field.description,
                            choices=_choices(field.annotation))
    composed = blocks(cls)
    for name, field in cls.model_fields.items():
        if name in positional:
            continue
        if name in composed:
            add_settings_arguments(parser, composed[name])
            continue
        flag = _flag(name, field.json_schema_extra)
        ann = field.annotation
        item_choices = _item_choices(ann)
        notes = [f"env {env_name(cls, name)}", default_text(field)]
        if item_choices:
            notes.insert(0, "any of " + ", ".join(item_choices))
        if _is_list(ann):
            notes.insert(0, "comma-separated or repeated")
        help_ = f"{field.description or ''} [{'; '.join(notes)}]".strip().replace("%", "%%")
        if _is_bool(ann):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        elif _is_list(ann):
            parser.add_argument(flag, dest=name, action="extend", type=_split_commas, default=argparse.SUPPRESS,
                                metavar=f"{name.upper()}[,...]", help=help_)
        elif (choices := _choices(ann)) is not None:
            parser.add_argument(flag, dest=name, choices=choices, default=argparse.SUPPRESS, help=help_)
        else:
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=name.upper(), help=help_)


def _flag_of(cls: type[BaseSettings], loc: tuple[Any, ...]) -> str:
    if not loc or loc[0] not in cls.model_fields:
        return "settings"
    field = cls.model_fields[str(loc[0])]
    item = "".join(f"[{p}]" for p in loc[1:])
    return f"{_flag(str(loc[0]), field.json_schema_extra)}{item} (env {env_name(cls, str(loc[0]))})"


def validation_message(cls: type[BaseSettings], e: ValidationError) -> str:
    """One line naming each bad setting by its flag and env variable."""
    problems = []
    for err in e.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            problems.append(f"{_flag_of(cls, err['loc'])} is required")
        elif err["loc"]:
            field = cls.model_fields.get(str(err["loc"][0]))
            if err["type"] == "string_pattern_mismatch" and field is not None and field.description:
                msg = f"expected {field.description}"  # the description reads better than the regular expression
            got = err.get("input")
            shown = f" (got {got!r})" if isinstance(got, str | int | float) and not _is_secret(cls.model_fields[str(err['loc'][0])].annotation) \
                else ""
            problems.append(f"{_flag_of(cls, err['loc'])}: {msg}{shown}")
        else:
            problems.append(msg)
    return "invalid settings: " + "; ".join(problems)


def settings_from_args(cls: type[S], ns: argparse.Namespace) -> S:
    given = {k: v for k, v in vars(ns).items() if k in cls.model_fields}
    try:
        for name, block in blocks(cls).items():  # each block on its own, so that a bad setting is named by its flag
            given[name] = block(**{k: v for k, v in vars(ns).items() if k in block.model_fields})
    except ValidationError as e:
        raise UserError(validation_message(block, e)) from None
    try:
        return cls(**given)
    except ValidationError as e:
        raise UserError(validation_message(cls, e)) from None


def settings_json(settings: BaseSettings) -> str:
    return json.dumps(settings.model_dump(mode="json"), sort_keys=True)
