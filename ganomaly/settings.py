"""Setting types shared by every process's settings class (imports no torch: ``--help`` reads them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from ganomaly.errors import UserError

T = TypeVar("T")

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


def _split_commas(value: Any) -> Any:
    """``a,b`` and repeated flags (a list of such strings) both become one flat list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            out += [p.strip() for p in item.split(",") if p.strip()]
        else:
            out.append(item)
    return out


# A list setting: ``--flag a,b``, ``--flag a --flag b`` and the env variable ``a,b`` all parse
# (NoDecode: pydantic-settings would otherwise expect JSON in the env variable).
CommaList = Annotated[list[T], NoDecode, BeforeValidator(_split_commas)]


Amp = Literal["bf16", "fp16"]


def check_one_weight_average(ema_decay: float, swa_start: int) -> None:
    """fit ships one kind of averaged weights at most; say so before any data are loaded."""
    if ema_decay > 0 and swa_start > 0:
        msg = "choose one of --ema-decay and --swa-start"
        raise UserError(msg)
