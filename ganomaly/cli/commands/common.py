"""Pieces shared by the data-driven subcommands (train, evaluate, bench).

This module, like every settings module, imports without torch: ``--help`` reads the
settings classes, and must not pay torch's seconds of start-up. The choice types below
repeat those of the modules that use them (which import torch); a unit test keeps each
pair identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ganomaly.errors import UserError
from ganomaly.settings import Amp  # noqa: F401  (the commands' choice types live together here)

if TYPE_CHECKING:
    from ganomaly.data.datasets import LabelledImages
    from ganomaly.data.images import InputSpec

DatasetName = Literal["fashion-mnist", "idx", "folder"]
Protocol = Literal["leave-one-out", "one-class"]  # = ganomaly.data.datasets.Protocol
AdvLoss = Literal["features", "bce"]  # = ganomaly.model.loss.AdvLoss
SelectBy = Literal["val_latent", "val_recon", "val_loss", "last"]  # = ganomaly.training.fit.SelectBy
ScoreKind = Literal["latent", "recon", "hybrid"]  # = ganomaly.model.scoring.SCORE_KINDS
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

# Field declarations reused by several settings classes (same meaning everywhere).
DATASET = Field("fashion-mnist", description="fashion-mnist or idx (IDX files in --data-dir), or folder (--folder)")
DATA_DIR = Field(DEFAULT_DATA_DIR, description="directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
PROTOCOL = Field("leave-one-out", description="leave-one-out: class K is the anomaly; one-class: class K is normal")
KLASS = Field(0, ge=0, description="the protocol's class K (a label that occurs in the data)", json_schema_extra={"cli": "--class"})
DEVICE = Field("auto", description="auto, cpu, cuda or cuda:N")


def labelled_test_set(dataset: DatasetName, data_dir: Path, folder: Path | None, protocol: Protocol, klass: int, spec: InputSpec) -> tuple[LabelledImages, list[str]]:
    from ganomaly.data.datasets import idx_test_set, load_labelled_folder

    if dataset == "folder":
        if folder is None:
            msg = "--folder is required with --dataset folder"
            raise UserError(msg)
        return load_labelled_folder(folder, spec)
    return idx_test_set(data_dir, protocol, klass, spec), []
