"""Pieces shared by the data-driven subcommands (train, evaluate, bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from worker.data.datasets import LabelledImages, Protocol, idx_test_set, load_labelled_folder
from worker.data.images import InputSpec
from worker.errors import UserError

DatasetName = Literal["fashion-mnist", "idx", "folder"]
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

# Field declarations reused by several settings classes (same meaning everywhere).
DATASET = Field("fashion-mnist", description="fashion-mnist or idx (IDX files in --data-dir), or folder (--folder)")
DATA_DIR = Field(DEFAULT_DATA_DIR, description="directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
PROTOCOL = Field("leave-one-out", description="leave-one-out: class K is the anomaly; one-class: class K is normal")
KLASS = Field(0, ge=0, description="the protocol's class K", json_schema_extra={"cli": "--class"})
DEVICE = Field("auto", description="auto, cpu, cuda or cuda:N")


def check_one_weight_average(ema_decay: float, swa_start: int) -> None:
    """fit ships one kind of averaged weights at most; say so before any data are loaded."""
    if ema_decay > 0 and swa_start > 0:
        msg = "choose one of --ema-decay and --swa-start"
        raise UserError(msg)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {requested} requested but CUDA is not available"
        raise UserError(msg)
    return dev


def labelled_test_set(dataset: DatasetName, data_dir: Path, folder: Path | None, protocol: Protocol, klass: int, spec: InputSpec) -> tuple[LabelledImages, list[str]]:
    if dataset == "folder":
        if folder is None:
            msg = "--folder is required with --dataset folder"
            raise UserError(msg)
        return load_labelled_folder(folder, spec)
    return idx_test_set(data_dir, protocol, klass, spec), []
