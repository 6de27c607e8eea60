"""The Fashion-MNIST results table: every class under both protocols, at a stated budget.

For each (protocol, class, seed): train on the official train split's normal images
(held-out normals select the epoch and set the thresholds), then score the official
test split once and report AUROC/AUPRC for the three score kinds the artifact can ship
(latent = the paper's, recon, hybrid), each with its threshold calibrated on held-out
normals only. All three come from the same trained model; none is chosen on the test set.

    python benchmarks/fashion_mnist_table.py --epochs 3 --max-train-images 4000 --out runs/table.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from ganomaly.data.datasets import idx_splits
from ganomaly.data.images import InputSpec, default_value_range
from ganomaly.device import resolve_device
from ganomaly.evaluation.metrics import detection_metrics
from ganomaly.model import GanomalyConfig, ScoreSpec, calibrate
from ganomaly.training.fit import SelectBy, TrainConfig, fit, validate


def one(data_dir: Path, protocol: str, klass: int, seed: int, epochs: int, max_train: int, max_val: int, value_range: tuple[float, float],
        select_by: str, device: torch.device) -> dict:
    t0 = time.monotonic()
    spec = InputSpec(value_range=value_range)
    sp = idx_splits(data_dir, protocol, klass, spec, max_train_images=max_train, max_val_images=max_val, seed=seed)  # type: ignore[arg-type]
    cfg = TrainConfig(epochs=epochs, seed=seed, select_by=select_by)  # type: ignore[arg-type]
    res = fit(GanomalyConfig(), cfg, sp.train.x, sp.val.x, device=device)
    vl, vr = validate(res.generator, sp.val.x, device)
    tl, tr = validate(res.generator, sp.test.x, device)  # type: ignore[union-attr]
    row = {"protocol": protocol, "class": klass, "seed": seed, "epochs": epochs, "n_train": len(sp.train), "n_val": len(sp.val),
           "best_epoch": res.best_epoch, "select_by": select_by, "range": list(value_range), "device": device.type, "seconds": round(time.monotonic() - t0, 1)}
    for kind in ("latent", "recon", "hybrid"):
        spec = ScoreSpec(kind=kind, latent_mean=float(vl.mean()), latent_std=float(vl.std()), recon_mean=float(vr.mean()), recon_std=float(vr.std()))
        val_s = spec.combine(torch.from_numpy(vl), torch.from_numpy(vr)).numpy()
        test_s = spec.combine(torch.from_numpy(tl), torch.from_numpy(tr)).numpy()
        m = detection_metrics(sp.test.y, test_s, calibrate(val_s, 0.01).threshold)  # type: ignore[union-attr]
        row[kind] = {k: m[k] for k in ("auroc", "auprc", "precision", "recall", "fpr")}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--protocols", default="leave-one-out,one-class")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-train-images", type=int, default=4000, help="0: all the split's normal training images")
    ap.add_argument("--max-val-images", type=int, default=2000)
    # one model serves all three score kinds, so one range: train's default for its default (latent) score
    ap.add_argument("--input-low", type=float, default=default_value_range("latent")[0])
    ap.add_argument("--input-high", type=float, default=default_value_range("latent")[1])
    # choices checked here: fit only looks the rule up after a whole epoch of training
    ap.add_argument("--select-by", default=TrainConfig.select_by, choices=get_args(SelectBy),
                    help="epoch selection on held-out normals (train's default)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    ap.add_argument("--out", type=Path, default=Path("runs/table.jsonl"))
    a = ap.parse_args()
    device = resolve_device(a.device)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if a.out.exists():  # resumable: skip rows already written
        for line in a.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["protocol"], r["class"], r["seed"], r["epochs"], r.get("select_by", "val_recon")))  # older rows: val_recon
    for protocol in a.protocols.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            for k in (int(c) for c in a.classes.split(",")):
                if (protocol, k, seed, a.epochs, a.select_by) in done:
                    continue
                row = one(a.data_dir, protocol, k, seed, a.epochs, a.max_train_images, a.max_val_images, (a.input_low, a.input_high), a.select_by, device)
                with a.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
