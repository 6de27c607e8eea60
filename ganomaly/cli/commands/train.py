"""``ganomaly train``: fit on normal images, select and calibrate on held-out normals, write an artifact."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ganomaly.cli.commands.common import (
    DATA_DIR,
    DATASET,
    DEVICE,
    KLASS,
    PROTOCOL,
    AdvLoss,
    DatasetName,
    Protocol,
    ScoreKind,
    SelectBy,
)
from ganomaly.data.images import ResizePolicy
from ganomaly.device import resolve_device
from ganomaly.errors import UserError
from ganomaly.settings import LogLevel, OutputDir, check_one_weight_average

if TYPE_CHECKING:
    from torch import nn
    from tqdm import tqdm

    from ganomaly.data.datasets import Splits
    from ganomaly.data.images import InputSpec

log = structlog.get_logger("train")


class TrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_TRAIN_", frozen=True)

    out: OutputDir = Field(description="artifact directory to write")
    dataset: DatasetName = DATASET
    data_dir: Path = DATA_DIR
    folder: Path | None = Field(None, description="folder of normal images (with --dataset folder); for an MVTec AD category (detected) its train/good")
    skip_unreadable: bool = Field(False, description="with --dataset folder: skip (and count) unreadable images instead of stopping")
    protocol: Protocol = PROTOCOL
    klass: int = KLASS
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=2)
    max_train_images: int | None = Field(None, ge=1, description="subsample the normal training images")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of normal training images held out for selection and threshold")
    max_val_images: int = Field(5000, ge=10)
    seed: int = 0
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    w_adv: float = Field(1.0, ge=0)
    w_con: float = Field(50.0, ge=0)
    w_enc: float = Field(1.0, ge=0)
    adv_loss: AdvLoss = Field("features", description="the adversarial term: features (feature matching, the 2019 code's) or bce (BCE(D(G(x)), 1), the code of the paper's time)")
    target_fpr: float = Field(0.01, gt=0, lt=1, description="threshold = the (1 - target_fpr) quantile of validation scores")
    select_by: SelectBy = Field("val_recon", description="epoch selection on held-out normals: val_recon, val_latent, val_loss or last")
    score: ScoreKind = Field("latent", description="the shipped anomaly score: latent (the paper's), recon or hybrid")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="ship an exponential moving average of the generator's weights with this decay (bias-corrected, so the random initial weights drop out), BatchNorm statistics recomputed on training normals (0: off)")
    swa_start: int = Field(0, ge=0, description="from this epoch on, ship the average of the generator's epoch-end weights (stochastic weight averaging, BatchNorm statistics recomputed on training normals; 0: off)")
    input_low: float | None = Field(None, description="pixel value 0 maps to this (default: -0.4242 for the latent score, MNIST-style mean/std; -1 for recon and hybrid)")
    input_high: float | None = Field(None, description="pixel value 255 maps to this (default: 2.8215 for the latent score; 1 for recon and hybrid)")
    isize: int = Field(32, ge=16, multiple_of=16)
    resize: ResizePolicy = Field("bilinear-stretch", description="how images reach isize x isize: bilinear-stretch (the original's), letterbox (aspect kept, padded) or pad (letterbox that never enlarges)")
    channels: int = Field(1, description="1 or 3")
    jpeg_draft: bool = Field(True, description="JPEGs at least twice the size the resize needs are decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder (DCT scaling: a 640x480 frame for a 128x128 model decodes 2-3x faster, pixels within ~1/255); shipped in the artifact so serving decodes alike")
    nz: int = Field(100, ge=1)
    ngf: int = Field(64, ge=1)
    extra_layers: int = Field(0, ge=0)
    device: str = DEVICE
    resume: bool = Field(False, description="continue an interrupted run of the same --out")
    evaluate_test: bool = Field(True, description="also score the official test split after training and store the metrics (never used for selection)")
    log_level: LogLevel = "info"


def load_splits(s: TrainSettings, spec: InputSpec) -> Splits:
    from ganomaly.data.datasets import folder_splits, idx_splits

    if s.dataset == "folder":
        if s.folder is None:
            msg = "--folder is required with --dataset folder"
            raise UserError(msg)
        return folder_splits(s.folder, spec, val_fraction=s.val_fraction, seed=s.seed, max_train_images=s.max_train_images,
                             skip_unreadable=s.skip_unreadable)
    return idx_splits(
        s.data_dir, s.protocol, s.klass, spec,
        max_train_images=s.max_train_images, val_fraction=s.val_fraction, max_val_images=s.max_val_images,
        seed=s.seed, with_test=s.evaluate_test,
    )


def check_enough_for_a_batch(n_train: int, n_val: int, batch_size: int) -> None:
    """Training drops the last partial batch, as the original loader does: fewer images than one batch train nothing."""
    if n_train < batch_size:
        hint = f"lower --batch-size to {n_train} or less, or add images" if n_train >= 2 else "add images"
        msg = f"{n_train} training images (after holding out {n_val} for validation) is fewer than one batch of {batch_size}; {hint}"
        raise UserError(msg)


def run(s: TrainSettings, on_snapshot: Callable[[int, nn.Module], None] | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from ganomaly.artifact import save_artifact
    from ganomaly.data.images import InputSpec, default_value_range
    from ganomaly.evaluation.metrics import detection_metrics
    from ganomaly.model import GanomalyConfig, Scorer
    from ganomaly.model.calibration import FewCalibrationScores
    from ganomaly.training.fit import EpochStats, TrainConfig, clear_resume_state, fit, score_tensor

    check_one_weight_average(s.ema_decay, s.swa_start)
    device = resolve_device(s.device)
    mcfg = GanomalyConfig(isize=s.isize, nc=s.channels, nz=s.nz, ngf=s.ngf, extra_layers=s.extra_layers)
    low, high = default_value_range(s.score)
    low, high = (low if s.input_low is None else s.input_low), (high if s.input_high is None else s.input_high)
    if not high > low:
        msg = f"--input-high ({high}) must be above --input-low ({low})"
        raise UserError(msg)
    if s.out.exists() and not s.out.is_dir():
        msg = f"--out {s.out} is a file; give a directory to write the artifact to"
        raise UserError(msg)
    spec = InputSpec(isize=s.isize, channels=s.channels, value_range=(low, high), resize=s.resize, jpeg_draft=s.jpeg_draft)
    t0 = time.monotonic()
    splits = load_splits(s, spec)
    log.info("data_loaded", **{k: v for k, v in splits.summary.items() if k != "sha256"}, seconds=round(time.monotonic() - t0, 2))
    check_enough_for_a_batch(len(splits.train), len(splits.val), s.batch_size)
    try:  # the resume state lives next to --out from the first epoch on
        s.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        msg = f"cannot create {s.out.parent}: {e.strerror}"
        raise UserError(msg) from e
    tcfg = TrainConfig(
        epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, beta1=s.beta1, w_adv=s.w_adv, w_con=s.w_con, w_enc=s.w_enc, adv_loss=s.adv_loss,
        target_fpr=s.target_fpr, select_by=s.select_by, seed=s.seed, score=s.score, ema_decay=s.ema_decay, swa_start=s.swa_start,
    )

    def on_epoch(st: EpochStats) -> None:
        log.info("epoch", **vars(st))

    def progress(total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None)  # None: off when not a TTY

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewCalibrationScores)
        result = fit(mcfg, tcfg, splits.train.x, splits.val.x, device=device, out_dir=s.out, resume=s.resume, on_epoch=on_epoch,
                     on_snapshot=on_snapshot, progress=progress)
    for w in caught:  # the threshold's warning as this command's own event; anything else as it came
        if issubclass(w.category, FewCalibrationScores):
            log.warning("few_held_out_images", n_val=len(splits.val), message=str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    metrics: dict[str, Any] = {"best_epoch": result.best_epoch, "val_recon": result.history[result.best_epoch - 1].val_recon}
    if splits.test is not None:
        scores = score_tensor(Scorer(result.generator, device, spec=result.score_spec), splits.test.x)
        metrics["test"] = detection_metrics(splits.test.y, scores, result.calibration.threshold)
        result.generator.cpu()
    manifest = save_artifact(
        s.out, result.generator, spec, result.calibration,
        training={**tcfg.__dict__, "device": str(device), "history": result.history_dicts(), "seconds": round(time.monotonic() - t0, 1)},
        data=splits.summary, metrics=metrics, score_spec=result.score_spec,
    )
    clear_resume_state(s.out)
    summary = {"out": str(s.out), "version": manifest["version"], "best_epoch": result.best_epoch,
               "threshold": result.calibration.threshold, "test_auroc": metrics.get("test", {}).get("auroc")}
    log.info("artifact_written", **summary)
    print(json.dumps(summary))
    return manifest

