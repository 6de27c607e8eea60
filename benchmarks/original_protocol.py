"""Our trained models scored the way the original GANomaly code scores them (a diagnostic, not a selection step).

The issue's class-0 target (leave-one-out, 12,000 images x 5 epochs) quotes the original code:
AUROC 0.70 at its best epoch *chosen on the test set*, 0.55 at its last epoch. That code also
scores with BatchNorm in train mode (each test batch of 64 normalised by its own statistics)
on its own test set (the test split's normals plus *every* image of the anomalous class, from
both splits; shuffled for MNIST-like data). This script trains exactly as ``ganomaly train``
does (same data, seed and loop; it calls the command's ``run``) and after every epoch scores the
epoch's generator four ways with the paper's latent score:

- ``ours``:            eval mode, the official test split (what this project reports)
- ``ours_trainbn``:    train-mode BatchNorm over shuffled batches of 64, the official test split
- ``orig_set``:        eval mode, the original's test set
- ``orig_protocol``:   train-mode BatchNorm over shuffled batches of 64, the original's test set
                       (the original's evaluation)

Each row is one epoch; the last line of the output file summarises each way's last epoch and
its best epoch on the test set (how the original's 0.70 was picked). Nothing here feeds back
into training, selection or the artifact, which is written as ``ganomaly train`` writes it.

    python benchmarks/original_protocol.py --class 0 --seed 0 --out benchmarks/results/original-protocol-12k5.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from ganomaly.cli.commands.train import TrainSettings, run
from ganomaly.data.datasets import arrays_to_tensor, idx_test_set
from ganomaly.data.idx import load_split
from ganomaly.data.images import InputSpec, default_value_range
from ganomaly.model import latent_score

TEST_BATCH = 64  # the original's --batchsize, used for its test loader too


@torch.inference_mode()
def latent_scores(g: nn.Module, x: torch.Tensor, *, train_bn: bool, order: torch.Tensor | None = None) -> np.ndarray:
    """The paper's score per image; with ``train_bn`` every batch of 64 (in ``order``) is normalised by its own statistics."""
    g = copy.deepcopy(g)  # train mode would move the running statistics of the generator being trained
    g.train(train_bn)
    device = next(g.parameters()).device  # the generator being trained may be on a GPU
    idx = order if order is not None else torch.arange(len(x))
    out = torch.empty(len(x))
    for i in range(0, len(x), TEST_BATCH):
        b = idx[i : i + TEST_BATCH]
        _, z, zh = g(x[b].to(device))
        out[b] = latent_score(z, zh).cpu()
    return out.numpy()


def original_test_set(data_dir: Path, klass: int, spec: InputSpec) -> tuple[torch.Tensor, np.ndarray]:
    """The original's unseeded leave-one-out test set: the test split's normals and every class-K image of both splits."""
    test = idx_test_set(data_dir, "leave-one-out", klass, spec)
    images, labels = load_split(data_dir, "train")
    extra = arrays_to_tensor(images[labels == klass], spec)
    return torch.cat([test.x, extra]), np.r_[test.y, np.ones(len(extra), np.int64)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--class", dest="klass", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-train-images", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/original-protocol.jsonl"))
    a = ap.parse_args()
    low, high = default_value_range("latent")
    spec = InputSpec(value_range=(low, high))
    ours = idx_test_set(a.data_dir, "leave-one-out", a.klass, spec)
    ours_x, ours_y = ours.x, ours.y
    orig_x, orig_y = original_test_set(a.data_dir, a.klass, spec)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float | int]] = []

    def on_snapshot(epoch: int, g: nn.Module) -> None:
        t0 = time.monotonic()
        # the original's MNIST test loader shuffles; a fixed order per epoch keeps the rows reproducible
        shuffle = torch.Generator().manual_seed(1000 * a.seed + epoch)
        auroc = {
            "ours": roc_auc_score(ours_y, latent_scores(g, ours_x, train_bn=False)),
            "ours_trainbn": roc_auc_score(ours_y, latent_scores(g, ours_x, train_bn=True, order=torch.randperm(len(ours_x), generator=shuffle))),
            "orig_set": roc_auc_score(orig_y, latent_scores(g, orig_x, train_bn=False)),
            "orig_protocol": roc_auc_score(orig_y, latent_scores(g, orig_x, train_bn=True, order=torch.randperm(len(orig_x), generator=shuffle))),
        }
        row = {"class": a.klass, "seed": a.seed, "epoch": epoch, "max_train_images": a.max_train_images,
               "n_orig_set": len(orig_y), "n_orig_anomalies": int(orig_y.sum()), "seconds": round(time.monotonic() - t0, 1)}
        row |= {k: round(float(v), 4) for k, v in auroc.items()}
        rows.append(row)
        with a.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainSettings(out=Path(tmp) / "model", data_dir=a.data_dir, protocol="leave-one-out", klass=a.klass,
                                 epochs=a.epochs, max_train_images=a.max_train_images, seed=a.seed)
        manifest = run(settings, on_snapshot=on_snapshot)
    ways = ("ours", "ours_trainbn", "orig_set", "orig_protocol")
    summary = {"class": a.klass, "seed": a.seed, "summary": True, "version": manifest["version"],
               "selected_epoch": manifest["metrics"]["best_epoch"], "selected_test_auroc": round(manifest["metrics"]["test"]["auroc"], 4),
               "last": {k: rows[-1][k] for k in ways},
               "best_on_test": {k: max(rows, key=lambda r: r[k])[k] for k in ways},
               "best_epoch_on_test": {k: max(rows, key=lambda r: r[k])["epoch"] for k in ways}}
    with a.out.open("a") as fh:
        fh.write(json.dumps(summary) + "\n")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
