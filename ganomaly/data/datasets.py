"""Benchmark protocols on IDX datasets and image-folder datasets, as model-ready tensors.

Protocols on Fashion-MNIST (or any 10-class IDX set):
- ``leave-one-out``: class K is the anomaly, the other classes are normal (the paper's).
- ``one-class``: class K is normal, every other class is an anomaly (most later papers').
Training and validation come from the official *train* split's normal images only;
the test set is the official *test* split, never seen during training or selection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ganomaly.data.idx import load_split
from ganomaly.data.images import BadImage, DecodeLimits, InputSpec, array_to_input, decode_image
from ganomaly.data.layout import ANOMALY_DIRS, NORMAL_DIRS, Layout, detect_layout, mvtec_categories, mvtec_test_groups
from ganomaly.errors import UserError

Protocol = Literal["leave-one-out", "one-class"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class LabelledImages:
    """``x``: N×C×H×W float32 in the spec's value range; ``y``: N int64 (1 = anomaly); ``ids``: per-image names;
    ``groups``: per-image defect type (MVTec AD layout: ``good`` or the ``test/`` subfolder), when known."""

    x: torch.Tensor
    y: np.ndarray
    ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    layout: Layout | None = None  # the folder layout the set was read from

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages | None
    summary: dict[str, Any]


def arrays_to_tensor(arrays: np.ndarray, spec: InputSpec) -> torch.Tensor:
    if len(arrays) == 0:
        return torch.empty(0, spec.channels, spec.isize, spec.isize)
    return torch.from_numpy(np.stack([array_to_input(a, spec) for a in arrays]))


def is_anomaly(labels: np.ndarray, protocol: Protocol, klass: int) -> np.ndarray:
    if protocol == "leave-one-out":
        return (labels == klass).astype(np.int64)
    if protocol == "one-class":
        return (labels != klass).astype(np.int64)
    msg = f"unknown protocol {protocol!r} (use leave-one-out or one-class)"
    raise UserError(msg)


def _hash_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def idx_splits(
    data_dir: Path,
    protocol: Protocol,
    klass: int,
    spec: InputSpec,
    *,
    max_train_images: int | None = None,
    val_fraction: float = 0.1,
    max_val_images: int = 5000,
    seed: int = 0,
    with_test: bool = True,
) -> Splits:
    images, labels = load_split(data_dir, "train")
    check_class_occurs(labels, klass, data_dir, "train")
    normal_idx = np.flatnonzero(is_anomaly(labels, protocol, klass) == 0)
    rng = np.random.default_rng(seed)
    normal_idx = rng.permutation(normal_idx)
    n_val = min(max(1, round(len(normal_idx) * val_fraction)), max_val_images)
    val_idx, train_idx = np.sort(normal_idx[:n_val]), normal_idx[n_val:]
    if max_train_images:
        train_idx = train_idx[:max_train_images]
    train_idx = np.sort(train_idx)
    train = LabelledImages(arrays_to_tensor(images[train_idx], spec), np.zeros(len(train_idx), np.int64), [f"train:{i}" for i in train_idx])
    val = LabelledImages(arrays_to_tensor(images[val_idx], spec), np.zeros(len(val_idx), np.int64), [f"train:{i}" for i in val_idx])
    test = idx_test_set(data_dir, protocol, klass, spec) if with_test else None
    summary = {
        "source": str(data_dir),
        "protocol": protocol,
        "class": klass,
        "seed": seed,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "train_classes": sorted({int(c) for c in labels[train_idx]}),
        "sha256": _hash_arrays(images[train_idx], train_idx.astype(np.int64)),
    }
    return Splits(train, val, test, summary)


def check_class_occurs(labels: np.ndarray, klass: int, data_dir: Path, split: str) -> None:
    """A protocol's class K must be a label of the split: otherwise every image is silently one kind."""
    present = sorted({int(c) for c in np.unique(labels)})
    if klass not in present:
        contiguous = len(present) > 2 and present == list(range(present[0], present[-1] + 1))
        shown = f"{present[0]}-{present[-1]}" if contiguous else ", ".join(map(str, present)) or "none"
        msg = f"class {klass} does not occur in the {split} split of {data_dir} (its classes: {shown})"
        raise UserError(msg)


def idx_test_set(data_dir: Path, protocol: Protocol, klass: int, spec: InputSpec) -> LabelledImages:
    images, labels = load_split(data_dir, "t10k")
    check_class_occurs(labels, klass, data_dir, "t10k")
    return LabelledImages(arrays_to_tensor(images, spec), is_anomaly(labels, protocol, klass), [f"t10k:{i}" for i in range(len(labels))])


def list_images(root: Path) -> list[Path]:
    if not root.is_dir():
        msg = f"{root} is not a directory"
        raise UserError(msg)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_folder(root: Path, spec: InputSpec, *, label: int = 0, limits: DecodeLimits | None = None) -> tuple[LabelledImages, list[str]]:
    """All images under ``root`` (recursive), converted to the spec. Returns the set and the unreadable files."""
    lim = limits or DecodeLimits(channel_policy="convert")
    xs, ids, bad = [], [], []
    for p in list_images(root):
        try:
            xs.append(decode_image(p.read_bytes(), spec, lim))
            ids.append(str(p))
        except BadImage as e:
            bad.append(f"{p}: {e.reason}: {e}")
    x = torch.from_numpy(np.stack(xs)) if xs else torch.empty(0, spec.channels, spec.isize, spec.isize)
    return LabelledImages(x, np.full(len(xs), label, np.int64), ids), bad


def load_labelled_folder(root: Path, spec: InputSpec) -> tuple[LabelledImages, list[str]]:
    """``root/normal/**`` (label 0) and ``root/anomaly/**`` (label 1); other names in NORMAL_DIRS/ANOMALY_DIRS.
    An MVTec AD category (``test/good``, ``test/<defect type>``) is recognised and read as such."""
    if not root.is_dir():
        msg = f"{root} does not exist" if not root.exists() else f"{root} is not a directory"
        raise UserError(msg)
    _refuse_mvtec_tree(root)
    if detect_layout(root) == "mvtec":
        return load_mvtec_test(root, spec)
    parts, bad = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        name = sub.name.lower()
        if name in NORMAL_DIRS or name in ANOMALY_DIRS:
            imgs, b = load_folder(sub, spec, label=int(name in ANOMALY_DIRS))
            imgs.groups = [sub.name] * len(imgs)
            parts.append(imgs)
            bad += b
    if not parts or sum(len(p) for p in parts) == 0:
        msg = f"{root} needs subfolders normal/ and anomaly/ with images"
        raise UserError(msg)
    return LabelledImages(torch.cat([p.x for p in parts]), np.concatenate([p.y for p in parts]), [i for p in parts for i in p.ids],
                          [g for p in parts for g in p.groups], "labelled"), bad


def load_mvtec_test(root: Path, spec: InputSpec) -> tuple[LabelledImages, list[str]]:
    """An MVTec AD category's ``test/``: ``good`` is normal, every other subfolder an anomaly of that defect type."""
    parts, bad = [], []
    for defect, sub in mvtec_test_groups(root):
        imgs, b = load_folder(sub, spec, label=int(defect != "good"))
        imgs.groups = [defect] * len(imgs)
        parts.append(imgs)
        bad += b
    y = np.concatenate([p.y for p in parts]) if parts else np.empty(0, np.int64)
    if not (y == 0).any() or not (y == 1).any():
        msg = f"{root} looks like an MVTec AD category but needs images in test/good/ and in at least one test/<defect type>/"
        raise UserError(msg)
    return LabelledImages(torch.cat([p.x for p in parts]), y, [i for p in parts for i in p.ids], [g for p in parts for g in p.groups],
                          "mvtec"), bad


def _refuse_mvtec_tree(root: Path) -> None:
    """The whole MVTec AD tree (one folder per category) read as one folder would mix categories and defects."""
    cats = mvtec_categories(root)
    if cats and detect_layout(root) == "flat":
        more = f" (and {len(cats) - 3} more)" if len(cats) > 3 else ""
        msg = f"{root} holds MVTec AD categories ({', '.join(cats[:3])}{more}); pass one category's folder, e.g. {root / cats[0]}"
        raise UserError(msg)


def training_folder(root: Path) -> tuple[Path, Layout]:
    """The folder of normal training images under ``root``: ``train/good`` for an MVTec AD category, else ``root``."""
    _refuse_mvtec_tree(root)
    layout = detect_layout(root)
    if layout == "mvtec":
        train = root / "train" / "good"
        if not train.is_dir():
            msg = f"{root} looks like an MVTec AD category but has no train/good/ to train on"
            raise UserError(msg)
        return train, layout
    return root, layout


def folder_splits(root: Path, spec: InputSpec, *, val_fraction: float = 0.1, seed: int = 0, max_train_images: int | None = None,
                  skip_unreadable: bool = False) -> Splits:
    """A folder of normal images: a seeded split into train and validation.

    An unreadable image stops training with its name and reason unless ``skip_unreadable``
    (then it is counted in the summary): training silently on part of a folder hides problems.
    """
    train_root, layout = training_folder(root)
    imgs, bad = load_folder(train_root, spec)
    if bad and not skip_unreadable:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        msg = f"unreadable image {bad[0]}{more}; fix or remove it, or pass --skip-unreadable"
        raise UserError(msg)
    if len(imgs) < 10:
        msg = f"{train_root} holds {len(imgs)} readable images; at least 10 are needed to train and calibrate"
        raise UserError(msg)
    perm = np.random.default_rng(seed).permutation(len(imgs))
    n_val = max(1, round(len(imgs) * val_fraction))
    val_i, tr_i = np.sort(perm[:n_val]), perm[n_val:]
    if max_train_images:
        tr_i = tr_i[:max_train_images]
    tr_i = np.sort(tr_i)

    def pick(ix: np.ndarray) -> LabelledImages:
        return LabelledImages(imgs.x[torch.from_numpy(ix)], imgs.y[ix], [imgs.ids[i] for i in ix])

    summary = {"source": str(root), "protocol": "folder", "layout": layout, "train_folder": str(train_root), "seed": seed, "n_train": len(tr_i), "n_val": len(val_i),
               "unreadable": len(bad), "sha256": _hash_arrays(imgs.x[torch.from_numpy(tr_i)].numpy())}
    return Splits(pick(tr_i), pick(val_i), None, summary)
