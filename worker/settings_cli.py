"""Bridge from a pydantic-settings class to argparse flags.

Every field becomes ``--kebab-name`` (or the ``cli`` name in its json_schema_extra);
flags override environment variables, which override defaults. ``--help`` lists
every setting with its env variable, so there is one source of truth per process.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TypeVar, get_args, get_origin

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from worker.errors import UserError

S = TypeVar("S", bound=BaseSettings)


def _flag(name: str, extra: Any) -> str:
    if isinstance(extra, dict) and "cli" in extra:
        return str(extra["cli"])
    return "--" + name.replace("_", "-")


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or (get_origin(annotation) is not None and bool in get_args(annotation) and len(get_args(annotation)) <= 2)


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type[BaseSettings], *, positional: tuple[str, ...] = ()) -> None:
    """``positional`` fields become positional arguments (optional ones with nargs='?')."""
    prefix = cls.model_config.get("env_prefix", "")
    for name in positional:
        field = cls.model_fields[name]
        parser.add_argument(name, nargs=None if field.is_required() else "?", default=argparse.SUPPRESS, help=field.description)
    for name, field in cls.model_fields.items():
        if name in positional:
            continue
        flag = _flag(name, field.json_schema_extra)
        default = "required" if field.is_required() else f"default: {field.default!r}"
        help_ = f"{field.description or ''} [env {prefix}{name.upper()}; {default}]".replace("%", "%%")
        if _is_bool(field.annotation):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        else:
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=name.upper(), help=help_)


def settings_from_args(cls: type[S], ns: argparse.Namespace) -> S:
    given = {k: v for k, v in vars(ns).items() if k in cls.model_fields}
    try:
        return cls(**given)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors())
        msg = f"invalid settings: {problems}"
        raise UserError(msg) from None


def settings_json(settings: BaseSettings) -> str:
    return json.dumps(settings.model_dump(mode="json"), sort_keys=True)
