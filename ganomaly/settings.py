"""Setting types shared by every process's settings class (imports no torch: ``--help`` reads them)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator
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


def _writable_ancestor(path: Path, *, itself: bool) -> None:
    """The nearest existing ancestor of ``path`` (from ``path`` itself when ``itself``) must be a directory
    a file can be made in, so the output and any missing parents can be made: checked before a run,
    not after it. The check makes and removes a directory there (permission bits say nothing to root,
    nor about a read-only or special file system)."""
    ancestor = path if itself else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        msg = f"{ancestor} is a file, not a directory"
        raise ValueError(msg)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ganomaly-check-", dir=ancestor))
    except OSError as e:
        msg = f"cannot write in {ancestor} ({e.strerror or e})"
        raise ValueError(msg) from None


def _output_file(path: Path) -> Path:
    if path.is_dir():
        msg = f"{path} is a directory: give a file path"
        raise ValueError(msg)
    if path.exists() and not os.access(path, os.W_OK):
        msg = f"{path}: cannot write it"
        raise ValueError(msg)
    _writable_ancestor(path, itself=False)
    return path


def _output_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        msg = f"{path} is a file: give a directory"
        raise ValueError(msg)
    _writable_ancestor(path, itself=True)
    return path


# A path the command will write (a report, a CSV, a PNG) or a directory it will write into;
# refused up front when that is impossible, so a long run does not fail at its end.
OutputFile = Annotated[Path, AfterValidator(_output_file)]
OutputDir = Annotated[Path, AfterValidator(_output_dir)]


def check_one_weight_average(ema_decay: float, swa_start: int) -> None:
    """fit ships one kind of averaged weights at most; say so before any data are loaded."""
    if ema_decay > 0 and swa_start > 0:
        msg = "choose one of --ema-decay and --swa-start"
        raise UserError(msg)
