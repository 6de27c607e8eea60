"""The GANomaly training loop.

Update order per batch follows the original code and anomalib: forward G, generator
step (feature-matching adversarial + contextual + encoder losses), then a
discriminator step on the detached fake; D is re-initialised when its loss collapses
below 1e-5. After every epoch the generator is scored in eval mode on *held-out
normal* images; the epoch with the best validation criterion is kept. The test set is
never touched here.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from ganomaly.errors import UserError
from ganomaly.model import (
    AdvLoss,
    Calibration,
    Discriminator,
    DiscriminatorLoss,
    GanomalyConfig,
    Generator,
    GeneratorLoss,
    GeneratorLossParts,
    Scorer,
    ScoreSpec,
    calibrate,
)
from ganomaly.model.scoring import latent_score

SelectBy = Literal["val_latent", "val_recon", "val_loss", "last"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    w_adv: float = 1.0
    w_con: float = 50.0
    w_enc: float = 1.0
    adv_loss: AdvLoss = "features"  # "bce": the pre-2019 code's adversarial term (ganomaly.model.loss)
    target_fpr: float = 0.01
    # val_latent (the epoch with the lowest mean latent score on held-out normals) is an option,
    # not the default: +0.016 mean AUROC over 18 development runs at 12k x 5, -0.005 over the
    # 4,000 x 3 table's 24 runs (docs/results.md, "The paper's target on class 0")
    select_by: SelectBy = "val_recon"
    seed: int = 0
    ema_decay: float = 0.0  # >0: validate, select and ship a (bias-corrected) moving average of G's weights, BatchNorm re-estimated
    # >0: from this epoch on, validate, select and ship the average of G's epoch-end weights
    # (stochastic weight averaging) with BatchNorm statistics recomputed on training normals
    swa_start: int = 0
    score: str = "latent"  # the shipped score kind (see ganomaly.model.scoring.ScoreSpec)


@dataclass
class EpochStats:
    epoch: int
    seconds: float
    images_per_s: float
    loss_g: float
    loss_d: float
    loss_adv: float
    loss_con: float
    loss_enc: float
    d_reinits: int
    val_recon: float  # mean L1 reconstruction error on held-out normals (eval mode)
    val_loss: float  # w_con * val_recon + w_enc * mean latent error: the G objective minus its adversarial part
    val_score_mean: float  # mean latent score on held-out normals (the val_latent criterion)


@dataclass
class FitResult:
    generator: Generator
    calibration: Calibration
    best_epoch: int
    history: list[EpochStats] = field(default_factory=list)
    score_spec: ScoreSpec = field(default_factory=ScoreSpec)

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(h) for h in self.history]


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def train_step(
    netg: Generator,
    netd: Discriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    g_loss: GeneratorLoss,
    d_loss: DiscriminatorLoss,
    xb: torch.Tensor,
) -> tuple[GeneratorLossParts, torch.Tensor, int]:
    """One GANomaly update: G step, then D step on the detached fake. Returns (G parts, D loss, D re-inits)."""
    x_hat, z, z_hat = netg(xb)
    _, feat_real = netd(xb)
    pred_fake_g, feat_fake = netd(x_hat)
    parts = g_loss(xb, x_hat, z, z_hat, feat_real.detach(), feat_fake, pred_fake_g)
    opt_g.zero_grad(set_to_none=True)
    parts.total.backward()
    opt_g.step()
    pred_real, _ = netd(xb)
    pred_fake, _ = netd(x_hat.detach())
    ld = d_loss(pred_real, pred_fake)
    opt_d.zero_grad(set_to_none=True)
    ld.backward()
    opt_d.step()
    if ld.item() < 1e-5:  # D won outright: restart it, as the original does
        netd.reset_parameters()
        return parts, ld, 1
    return parts, ld, 0


def ema_decay_at(decay: float, step: int) -> float:
    """The effective decay for the ``step``-th update (1-based) that makes the average exactly the
    bias-corrected one (Adam's correction): sum_s decay**(step-s) w_s / sum_s decay**(step-s).

    The first update takes the weights as they are (0.0), so nothing of the random initialisation
    is kept; a plain decay would keep decay**step of it (at 0.995, 0.9 % after the 935 steps of a
    12,000-image x 5-epoch run; 39 % at 0.999). From then on the average's window is 1/(1-decay)
    steps, as its decay says.
    """
    return decay * (1.0 - decay ** (step - 1)) / (1.0 - decay**step)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Exponential moving average of parameters (``step`` counts updates from 1, across resumes).

    BatchNorm buffers are copied only so that ``ema`` is usable at all; averaged weights match no
    network's running statistics, so what is validated and shipped gets them re-estimated
    (``with_recomputed_bn``).
    """
    d = ema_decay_at(decay, step)
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - d)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


@torch.inference_mode()
def validate(generator: Generator, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Latent scores and L1 reconstruction errors per image, in eval mode."""
    was_training = generator.training
    generator.eval()
    scores, recons = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True)
        x_hat, z, z_hat = generator(xb)
        scores.append(latent_score(z, z_hat).cpu())
        recons.append((xb - x_hat).abs().flatten(1).mean(1).cpu())
    generator.train(was_training)
    return torch.cat(scores).numpy(), torch.cat(recons).numpy()


def with_recomputed_bn(generator: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int, max_images: int = 4096) -> Generator:
    """A copy of ``generator`` in eval mode whose BatchNorm statistics are a plain mean over (up to
    ``max_images``) images of ``x`` in train-mode batches of ``batch_size``.

    Averaged weights (SWA) match no network's running statistics, so those must be re-estimated.
    """
    g = copy.deepcopy(generator)
    xs = x[:max_images]
    update_bn((xs[i : i + batch_size] for i in range(0, len(xs) - batch_size + 1, batch_size)), g, device=device)
    return g.eval()


def _state_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.train-state.pt"


def fit(
    model_config: GanomalyConfig,
    cfg: TrainConfig,
    train_x: torch.Tensor,
    val_x: torch.Tensor,
    *,
    device: torch.device,
    out_dir: Path | None = None,
    resume: bool = False,
    init_generator: Generator | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_snapshot: Callable[[int, nn.Module], None] | None = None,
    progress: Callable[[int, str], Any] | None = None,
) -> FitResult:
    """Train and select. ``progress(total_batches, desc)`` returns a tqdm-like bar or None.

    ``on_snapshot(epoch, generator)`` sees each epoch's candidate generator after validation, for
    diagnostics that score it (``benchmarks/original_protocol.py``); it must leave the generator
    as it found it (work on a copy to change modes) and has no say in selection.
    """
    if len(train_x) < cfg.batch_size:
        msg = f"{len(train_x)} training images is fewer than one batch of {cfg.batch_size}: lower the batch size or add images"
        raise UserError(msg)
    if cfg.ema_decay > 0 and cfg.swa_start > 0:
        msg = "choose one of ema_decay and swa_start"
        raise ValueError(msg)
    gen_rng = seed_everything(cfg.seed)
    netg = init_generator if init_generator is not None else Generator(model_config)
    netg = netg.to(device).train()
    netd = Discriminator(model_config).to(device).train()
    opt_g = torch.optim.Adam(netg.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(netd.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    g_loss, d_loss = GeneratorLoss(cfg.w_adv, cfg.w_con, cfg.w_enc, cfg.adv_loss), DiscriminatorLoss()

    history: list[EpochStats] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    start_epoch = 0
    st: dict[str, Any] = {}  # the resume state, empty when starting afresh
    state_path = _state_path(out_dir) if out_dir is not None else None
    if state_path is not None:
        # --out may name a folder that does not exist yet; the epoch checkpoint sits beside it
        state_path.parent.mkdir(parents=True, exist_ok=True)
    if resume and state_path is not None and state_path.exists():
        # weights_only=True: the resume file holds tensors and plain containers only; nothing is unpickled.
        st = torch.load(state_path, map_location=device, weights_only=True)
        netg.load_state_dict(st["netg"])
        netd.load_state_dict(st["netd"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        gen_rng.set_state(st["rng"])
        start_epoch = int(st["epoch"])
        history = [EpochStats(**h) for h in st["history"]]
        if st.get("best_state") is not None:
            best = (float(st["best_value"]), int(st["best_epoch"]), st["best_state"])

    ema = copy.deepcopy(netg).eval() if cfg.ema_decay > 0 else None
    if ema is not None and st.get("ema") is not None:
        ema.load_state_dict(st["ema"])
    swa = AveragedModel(netg) if cfg.swa_start > 0 else None
    if swa is not None and st.get("swa") is not None:
        swa.load_state_dict(st["swa"])
    n_batches = len(train_x) // cfg.batch_size  # drop_last, like the original loader
    pin = device.type == "cuda"
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.monotonic()
        perm = torch.randperm(len(train_x), generator=gen_rng)
        sums = dict.fromkeys(("g", "d", "adv", "con", "enc"), 0.0)
        reinits = 0
        bar = progress(n_batches, f"epoch {epoch + 1}/{cfg.epochs}") if progress else None
        for b in range(n_batches):
            xb = train_x[perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            xb = (xb.pin_memory() if pin else xb).to(device, non_blocking=True)
            parts, ld, reinit = train_step(netg, netd, opt_g, opt_d, g_loss, d_loss, xb)
            reinits += reinit
            if ema is not None:
                update_ema(ema, netg, cfg.ema_decay, epoch * n_batches + b + 1)
            for k, v in (("g", parts.total), ("d", ld), ("adv", parts.adv), ("con", parts.con), ("enc", parts.enc)):
                sums[k] += float(v.detach())
            if bar is not None:
                bar.update(1)
                if b % 20 == 0:
                    bar.set_postfix(g=f"{parts.total.item():.3f}", d=f"{ld.item():.3f}")
        if bar is not None:
            bar.close()
        train_s = time.monotonic() - t0
        shipped: nn.Module = netg
        if ema is not None:
            shipped = with_recomputed_bn(ema, train_x, device, cfg.batch_size)
        if swa is not None and epoch + 1 >= cfg.swa_start:
            swa.update_parameters(netg)
            shipped = with_recomputed_bn(swa.module, train_x, device, cfg.batch_size)
        scores, recons = validate(shipped, val_x, device)
        stats = EpochStats(
            epoch=epoch + 1,
            seconds=round(time.monotonic() - t0, 3),
            images_per_s=round(n_batches * cfg.batch_size / max(train_s, 1e-9), 1),
            loss_g=sums["g"] / n_batches,
            loss_d=sums["d"] / n_batches,
            loss_adv=sums["adv"] / n_batches,
            loss_con=sums["con"] / n_batches,
            loss_enc=sums["enc"] / n_batches,
            d_reinits=reinits,
            val_recon=float(recons.mean()),
            val_loss=float(cfg.w_con * recons.mean() + cfg.w_enc * scores.mean()),
            val_score_mean=float(scores.mean()),
        )
        history.append(stats)
        value = {"val_latent": stats.val_score_mean, "val_recon": stats.val_recon, "val_loss": stats.val_loss,
                 "last": -float(epoch)}[cfg.select_by]
        if not math.isfinite(value):
            value = math.inf
        if best is None or value <= best[0]:
            best = (value, epoch + 1, copy.deepcopy({k: v.detach().cpu() for k, v in shipped.state_dict().items()}))
        if on_epoch:
            on_epoch(stats)
        if on_snapshot:
            on_snapshot(epoch + 1, shipped)
        if state_path is not None:
            tmp = state_path.with_suffix(".tmp")
            torch.save(
                {"netg": netg.state_dict(), "netd": netd.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                 "rng": gen_rng.get_state(), "epoch": epoch + 1, "history": [asdict(h) for h in history],
                 "best_value": best[0], "best_epoch": best[1], "best_state": best[2],
                 "ema": ema.state_dict() if ema is not None else None, "swa": swa.state_dict() if swa is not None else None},
                tmp,
            )
            tmp.replace(state_path)

    assert best is not None  # at least one epoch ran (or was resumed)
    final = Generator(model_config)
    final.load_state_dict(best[2])
    final.to(device)
    val_latent, val_recon = validate(final, val_x, device)
    spec = ScoreSpec(kind=cfg.score, latent_mean=float(val_latent.mean()), latent_std=float(val_latent.std()),
                     recon_mean=float(val_recon.mean()), recon_std=float(val_recon.std()))
    val_scores = spec.combine(torch.from_numpy(val_latent), torch.from_numpy(val_recon)).numpy()
    calibration = calibrate(val_scores, cfg.target_fpr)
    return FitResult(generator=final.cpu(), calibration=calibration, best_epoch=best[1], history=history, score_spec=spec)


def clear_resume_state(out_dir: Path) -> None:
    _state_path(out_dir).unlink(missing_ok=True)


def score_tensor(scorer: Scorer, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Scores for a whole tensor of images, in batches."""
    return np.concatenate([scorer.score(x[i : i + batch_size]).score.numpy() for i in range(0, len(x), batch_size)]) if len(x) else np.empty(0)
