"""Per-epoch study of candidate anomaly scores (a development tool, not a selection step).

Trains one GANomaly model with the usual loop and, after every epoch, scores held-out
normals (validation) and the official test split with several candidate scores. The
rows show how each score evolves with training; *decisions made from them must come
from development classes*, never from the class whose number is reported.

Candidate scores (statistics from training normals only, never the test set):
- latent:   mean_k (z_k - z'_k)^2 (the paper's)
- recon:    mean |x - G(x)|
- latent_w: mean_k (z_k - z'_k)^2 / E_train[(z_k - z'_k)^2] (per-dimension whitened latent error)
- maha_z:   Mahalanobis distance of z = G_E(x) to the training normals' z (Ledoit-Wolf covariance)
- maha_zh:  the same for z' = E(G(x))
- feat:     mean (f(x) - f(G(x)))^2 over the discriminator's last features
- pbn_*:    the same scores after "precise BatchNorm": the running statistics recomputed as
            a plain average over the reference normals (instead of the momentum-0.1 average
            of the last few training batches)
- swa_latent: the latent score of one generator whose weights are the average of the epoch-end
            weights so far (stochastic weight averaging), with precise BatchNorm
- ens_latent: the mean of the standardised latent scores of this and the previous epochs' snapshots
- tta_latent: the latent score averaged over the image and its left-right mirror image
- latent_l1: mean_k |z_k - z'_k| (the paper's formula read as an L1 norm, as some re-implementations do)
- shift_latent (``--shift-tta``): the latent score averaged over the image and its four one-pixel
            shifts (up, down, left, right; the uncovered edge filled with the background value).
            Unlike the mirror image, a one-pixel shift keeps every garment as the normals show it
- latent_rel: ||z - z'||^2 / ||z||^2 (the latent error relative to the code's own size)
- latent_cos: 1 - cos(z, z')
- recon_rel: mean |x - G(x)| / mean (x - min x) (the L1 error relative to the image's ink)
- znorm:     ||z||^2 (a diagnostic: is the anomalous class's code smaller or larger?)
- latent_resid: log latent - (a + b log ||z||^2), with a, b fitted by least squares on
            this epoch's held-out normals: the latent error relative to what normals with a code
            of that size show (the ratio scores assume b = 1; this lets the normals say)
- cross_enc: mean_k (G_E(x)_k - E(x)_k)^2: the two encoders on the same image. E has only ever
            seen reconstructions, which look normal, so it has no reason to agree with G_E on an
            image unlike them
- e_cycle:  mean_k (E(x)_k - E(G(x))_k)^2: the image and its reconstruction through the second encoder
- ge_cycle: mean_k (G_E(x)_k - G_E(G(x))_k)^2: the same through the first encoder
- ibn_latent, ibn_recon (``--ibn``): the latent and recon scores of the same generator with every
            BatchNorm layer normalising by the image's own per-channel statistics (train-mode
            BatchNorm at batch size 1, as the original authors advised for testing; no running
            statistic is read or changed), so a score still depends on its image alone
- ema{D}_latent, ema{D}_recon (``--ema D``, repeatable, also with ``--lean``): the scores of a
            bias-corrected exponential moving average of the generator's weights with decay D
            (fit's ``update_ema``), BatchNorm re-estimated on the reference normals; it runs beside
            the trained generator without changing its trajectory, so each row compares the two
            on the same run

With ``--lean`` only latent, recon and the cheap scores from latent_rel to ge_cycle are computed
(faster; the discriminator is not run). Every row also carries, under "pseudo", the AUROC
of the latent and recon scores for held-out normals against pseudo-anomalies made from them
(ganomaly.training.pseudo_anomalies): validation-only signals whose agreement with the test
AUROC across epochs is what the study checks.

    python benchmarks/score_study.py --protocol leave-one-out --class 2 --epochs 5 --max-train-images 12000 --out runs/study-2.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
from torch.optim.swa_utils import AveragedModel

from ganomaly.data.datasets import idx_splits
from ganomaly.data.images import RESIZE_POLICIES, InputSpec
from ganomaly.model import AdvLoss, Discriminator, DiscriminatorLoss, GanomalyConfig, Generator, GeneratorLoss
from ganomaly.training.fit import seed_everything, train_step, update_ema, with_recomputed_bn
from ganomaly.training.pseudo_anomalies import TRANSFORMS, make_pseudo_anomalies


@torch.inference_mode()
def features(g: Generator, d: Discriminator | None, x: torch.Tensor, bs: int = 500) -> dict[str, np.ndarray]:
    """Per-image codes and errors; ``d=None`` skips the discriminator (the lean scores don't use it)."""
    g.eval()
    if d is not None:
        d.eval()
    out: dict[str, list[torch.Tensor]] = {"z": [], "zh": [], "ex": [], "zc": [], "recon": [], "feat": [], "ink": []}
    for i in range(0, len(x), bs):
        xb = x[i : i + bs]
        xh, z, zh = g(xb)
        if d is not None:
            _, fr = d(xb)
            _, ff = d(xh)
            out["feat"].append((fr - ff).pow(2).flatten(1).mean(1))
        out["z"].append(z.flatten(1))
        out["zh"].append(zh.flatten(1))
        out["ex"].append(g.encoder2(xb).flatten(1))  # E(x): the second encoder on the image itself
        out["zc"].append(g.encoder1(xh).flatten(1))  # G_E(G(x)): the first encoder on the reconstruction
        out["recon"].append((xb - xh).abs().flatten(1).mean(1))
        # the background is each image's darkest pixel, so this is the mean brightness above it
        out["ink"].append((xb - xb.flatten(1).amin(1).view(-1, 1, 1, 1)).flatten(1).mean(1))
    g.train()
    if d is not None:
        d.train()
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in out.items() if v}


class _PerImageBatchNorm(torch.nn.Module):
    """A BatchNorm2d's scale and shift applied after normalising by each image's own statistics."""

    def __init__(self, bn: torch.nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def per_image_bn(generator: Generator) -> Generator:
    """A copy of ``generator`` whose BatchNorm layers use each image's statistics."""
    g = copy.deepcopy(generator)
    for module in list(g.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(module, child_name, _PerImageBatchNorm(child))
    return g


def scores(f: dict[str, np.ndarray], ref: dict[str, np.ndarray], lean: bool = False) -> dict[str, np.ndarray]:
    dz = (f["z"] - f["zh"]) ** 2
    zz = (f["z"] ** 2).sum(1)
    cos = (f["z"] * f["zh"]).sum(1) / np.maximum(np.sqrt(zz * (f["zh"] ** 2).sum(1)), 1e-12)
    out = {"latent": dz.mean(1), "latent_l1": np.sqrt(dz).mean(1), "recon": f["recon"], "latent_rel": dz.sum(1) / np.maximum(zz, 1e-12),
           "latent_cos": 1 - cos, "recon_rel": f["recon"] / np.maximum(f["ink"], 1e-12), "znorm": zz,
           "cross_enc": ((f["z"] - f["ex"]) ** 2).mean(1), "e_cycle": ((f["ex"] - f["zh"]) ** 2).mean(1),
           "ge_cycle": ((f["z"] - f["zc"]) ** 2).mean(1)}
    if lean:
        return out
    dref = ((ref["z"] - ref["zh"]) ** 2).mean(0)
    out |= {"latent_w": (dz / np.maximum(dref, 1e-12)).mean(1), "feat": f["feat"]}
    for name in ("z", "zh"):
        lw = LedoitWolf().fit(ref[name])
        out[f"maha_{name}"] = lw.mahalanobis(f[name])
    return out


def shifted(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """``x`` moved by (dy, dx) pixels (each -1, 0 or 1), the uncovered row or column set to ``fill``."""
    out = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if dy:
        out[..., 0 if dy > 0 else -1, :] = fill
    if dx:
        out[..., :, 0 if dx > 0 else -1] = fill
    return out


def latent_residual(val: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Residuals of log latent on log code size, the line fitted on held-out normals only."""
    def logs(f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        # ||z||^2 rather than its mean over dimensions: the constant factor only moves the intercept
        return np.log(np.maximum(f["znorm"], 1e-12)), np.log(np.maximum(f["latent"], 1e-12))

    vx, vy = logs(val)
    b, a = np.polyfit(vx, vy, 1)
    tx, ty = logs(test)
    return vy - (a + b * vx), ty - (a + b * tx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--protocol", default="leave-one-out")
    ap.add_argument("--class", dest="klass", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-train-images", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-low", type=float, default=-1.0)
    ap.add_argument("--input-high", type=float, default=1.0)
    ap.add_argument("--resize", default="bilinear-stretch", choices=RESIZE_POLICIES, help="the input spec's resize policy")
    ap.add_argument("--ref-images", type=int, default=4000, help="training normals used for the score statistics")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--adv-loss", default="features", choices=get_args(AdvLoss), help="the generator's adversarial term (ganomaly.model.loss)")
    ap.add_argument("--cosine", action="store_true", help="cosine-decay both learning rates to zero over the run")
    ap.add_argument("--lean", action="store_true", help="latent and recon only (no Mahalanobis, precise BN, SWA, ensemble)")
    ap.add_argument("--pseudo-images", type=int, default=2000, help="held-out normals turned into pseudo-anomalies")
    ap.add_argument("--no-tta", action="store_true", help="skip the mirror-image row (saves a pass over the test split)")
    ap.add_argument("--shift-tta", action="store_true", help="also score the mean over four one-pixel shifts (shift_latent)")
    ap.add_argument("--ibn", action="store_true", help="also score with per-image BatchNorm statistics (ibn_*)")
    ap.add_argument("--ema", type=float, action="append", default=[], help="also score a moving average of G with this decay")
    ap.add_argument("--out", type=Path, default=Path("runs/study.jsonl"))
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    spec = InputSpec(value_range=(a.input_low, a.input_high), resize=a.resize)
    sp = idx_splits(a.data_dir, a.protocol, a.klass, spec, max_train_images=a.max_train_images, seed=a.seed)  # type: ignore[arg-type]
    assert sp.test is not None
    rng = seed_everything(a.seed)
    cfg = GanomalyConfig()
    g, d = Generator(cfg), Discriminator(cfg)
    opt_g = torch.optim.Adam(g.parameters(), lr=a.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=a.lr, betas=(0.5, 0.999))
    gl, dl = GeneratorLoss(1.0, 50.0, 1.0, a.adv_loss), DiscriminatorLoss()
    ref_x = sp.train.x[torch.randperm(len(sp.train.x), generator=torch.Generator().manual_seed(1))[: a.ref_images]]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    nb = len(sp.train.x) // 64
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=nb * a.epochs) for o in (opt_g, opt_d)] if a.cosine else []
    pseudo_base = sp.val.x[: a.pseudo_images]
    pseudo = make_pseudo_anomalies(pseudo_base, a.input_low, tuple(TRANSFORMS), seed=a.seed) if a.pseudo_images else {}
    snaps: list[np.ndarray] = []
    swa = AveragedModel(g)
    cpu = torch.device("cpu")
    emas = {decay: copy.deepcopy(g) for decay in a.ema}
    for epoch in range(1, a.epochs + 1):
        t0 = time.monotonic()
        perm = torch.randperm(len(sp.train.x), generator=rng)
        for b in range(nb):
            train_step(g, d, opt_g, opt_d, gl, dl, sp.train.x[perm[b * 64 : (b + 1) * 64]])
            for decay, ema in emas.items():
                update_ema(ema, g, decay, (epoch - 1) * nb + b + 1)
            for sc in scheds:
                sc.step()
        # the lean scores need no reference statistics, so the lean mode skips that pass
        ref = {} if a.lean else features(g, d, ref_x)
        d_or_none = None if a.lean else d
        val, test = (features(g, d_or_none, x) for x in (sp.val.x, sp.test.x))
        vs, ts = scores(val, ref, a.lean), scores(test, ref, a.lean)
        vs["latent_resid"], ts["latent_resid"] = latent_residual(vs, ts)
        if not a.no_tta:  # test-time augmentation: the latent score averaged over the image and its mirror image
            ts["tta_latent"] = (ts["latent"] + scores(features(g, d, torch.flip(sp.test.x, dims=[-1])), ref, True)["latent"]) / 2
        if a.shift_tta:
            parts = [ts["latent"]] + [scores(features(g, None, shifted(sp.test.x, dy, dx, a.input_low)), {}, True)["latent"]
                                      for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))]
            ts["shift_latent"] = np.mean(parts, axis=0)
        base = scores(features(g, d, pseudo_base), ref, True) if pseudo else {}
        pseudo_auroc: dict[str, dict[str, float]] = {}
        for name, px in pseudo.items():
            ps = scores(features(g, d, px), ref, True)
            pseudo_auroc[name] = {
                k: round(float(roc_auc_score(np.r_[np.zeros(len(base[k])), np.ones(len(ps[k]))], np.r_[base[k], ps[k]])), 4)
                for k in ("latent", "recon")
            }
        val_stats = {"recon": float(val["recon"].mean()), "latent": float(vs["latent"].mean())}
        variants = ({"ibn": per_image_bn(g)} if a.ibn else {}) | {f"ema{decay}": with_recomputed_bn(ema, ref_x, cpu, 64)
                                                                  for decay, ema in emas.items()}
        for name, vg in variants.items():  # another generator's latent and recon scores, beside the trained one's
            vvs, vts = (scores(features(vg, None, x), {}, True) for x in (sp.val.x, sp.test.x))
            for k in ("latent", "recon"):
                ts[f"{name}_{k}"] = vts[k]
                val_stats[f"{name}_{k}"] = float(vvs[k].mean())
        if not a.lean:
            pg = with_recomputed_bn(g, ref_x, cpu, 64)
            pref, pval, ptest = (features(pg, d, x) for x in (ref_x, sp.val.x, sp.test.x))
            pvs, pts = scores(pval, pref), scores(ptest, pref)
            for k in ("latent", "recon", "latent_w"):
                vs[f"pbn_{k}"], ts[f"pbn_{k}"] = pvs[k], pts[k]
            mu, sd = pvs["latent"].mean(), pvs["latent"].std()
            snaps.append((pts["latent"] - mu) / sd)
            ts["ens_latent"] = np.mean(snaps, axis=0)
            ts["ens2_latent"] = np.mean(snaps[-2:], axis=0)
            swa.update_parameters(g)
            sg = with_recomputed_bn(swa.module, ref_x, cpu, 64)
            sref, sval, stest = (features(sg, d, x) for x in (ref_x, sp.val.x, sp.test.x))
            svs, sts = scores(sval, sref), scores(stest, sref)
            for k in ("latent", "recon"):
                vs[f"swa_{k}"], ts[f"swa_{k}"] = svs[k], sts[k]
            val_stats |= {"feat": float(vs["feat"].mean()), "latent_cv": float(vs["latent"].std() / max(vs["latent"].mean(), 1e-12)),
                          "pbn_recon": float(pval["recon"].mean()), "pbn_latent": float(pvs["latent"].mean())}
        row = {"protocol": a.protocol, "class": a.klass, "seed": a.seed, "epoch": epoch, "range": [a.input_low, a.input_high],
               "lr": a.lr, "cosine": a.cosine, "resize": a.resize, "adv_loss": a.adv_loss, "seconds": round(time.monotonic() - t0, 1),
               "test_auroc": {k: round(float(roc_auc_score(sp.test.y, v)), 4) for k, v in ts.items()},
               "val": val_stats,  # validation-only statistics (candidates for selection rules)
               "pseudo": pseudo_auroc}
        with a.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
