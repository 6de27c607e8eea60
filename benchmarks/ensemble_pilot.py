"""Does averaging independently initialised GANomaly members beat one member? (development classes only)

Trains ``--members`` generators on the same leave-one-out split (split seed 0, 12,000 images,
5 epochs, epoch selected on held-out normals as ``ganomaly train`` does) that differ only in
their initialisation seed, then compares each member's test AUROC with the AUROC of the mean
of their scores, each standardised by its own held-out normal scores (no test statistics).

    python benchmarks/ensemble_pilot.py --class 2 --members 3 --out runs/ensemble-2.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ganomaly.data.datasets import idx_splits
from ganomaly.data.images import MNIST_STD_RANGE, InputSpec
from ganomaly.model import GanomalyConfig, Scorer
from ganomaly.training.fit import TrainConfig, fit, score_tensor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--class", dest="klass", type=int, default=2)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-train-images", type=int, default=12000)
    ap.add_argument("--out", type=Path, default=Path("runs/ensemble.jsonl"))
    a = ap.parse_args()
    sp = idx_splits(a.data_dir, "leave-one-out", a.klass, InputSpec(value_range=MNIST_STD_RANGE), max_train_images=a.max_train_images, seed=0)
    assert sp.test is not None
    standardised, members = [], []
    for seed in range(a.members):
        res = fit(GanomalyConfig(), TrainConfig(epochs=a.epochs, seed=seed), sp.train.x, sp.val.x, device=torch.device("cpu"))
        scorer = Scorer(res.generator, "cpu", spec=res.score_spec)
        test, val = score_tensor(scorer, sp.test.x), score_tensor(scorer, sp.val.x)
        standardised.append((test - val.mean()) / val.std())
        members.append({"init_seed": seed, "best_epoch": res.best_epoch, "auroc": round(float(roc_auc_score(sp.test.y, test)), 4)})
        print(json.dumps(members[-1]), flush=True)
    corr = np.corrcoef(np.stack(standardised))
    row = {"protocol": "leave-one-out", "class": a.klass, "epochs": a.epochs, "n_train": len(sp.train.x), "members": members,
           "mean_member_auroc": round(float(np.mean([m["auroc"] for m in members])), 4),
           "ensemble_auroc": round(float(roc_auc_score(sp.test.y, np.mean(standardised, axis=0))), 4),
           "score_correlation": [round(float(corr[i, j]), 3) for i in range(a.members) for j in range(i + 1, a.members)]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
