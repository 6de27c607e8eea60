"""The torch device a process runs on, from the ``--device`` setting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganomaly.errors import UserError

if TYPE_CHECKING:
    import torch


def resolve_device(requested: str) -> torch.device:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except RuntimeError as e:
        msg = f"--device {requested!r}: use auto, cpu, cuda or cuda:N"
        raise UserError(msg) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {requested} requested but CUDA is not available"
        raise UserError(msg)
    return dev
