"""Which layout an image folder has, decided from its directory names alone (no image is read).

- ``mvtec``: MVTec AD's: ``train/good/`` (normal training images), ``test/good/`` (normal test images),
  ``test/<defect type>/`` (anomalies, one folder per defect type) and an optional ``ground_truth/``
  (masks, not used here).
- ``labelled``: ``normal/`` and ``anomaly/`` (or another name in NORMAL_DIRS / ANOMALY_DIRS).
- ``flat``: any other folder: every image under it, recursively.

No torch here: the producer uses it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Layout = Literal["mvtec", "labelled", "flat"]
NORMAL_DIRS = {"normal", "0.normal", "good", "ok"}
ANOMALY_DIRS = {"anomaly", "abnormal", "1.abnormal", "defect", "bad"}
MVTEC_GOOD = "good"


def is_mvtec(root: Path) -> bool:
    return (root / "train" / MVTEC_GOOD).is_dir() or (root / "test" / MVTEC_GOOD).is_dir()


def detect_layout(root: Path) -> Layout:
    if is_mvtec(root):
        return "mvtec"
    if root.is_dir() and any(p.is_dir() and p.name.lower() in NORMAL_DIRS | ANOMALY_DIRS for p in root.iterdir()):
        return "labelled"
    return "flat"


def mvtec_categories(root: Path) -> list[str]:
    """Subfolders of ``root`` that are MVTec categories themselves (``root`` being the whole MVTec AD tree)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_mvtec(p)) if root.is_dir() else []


def mvtec_test_groups(root: Path) -> list[tuple[str, Path]]:
    """(defect type, folder) of every ``test/`` subfolder, ``good`` first."""
    test = root / "test"
    subs = sorted((p for p in test.iterdir() if p.is_dir()), key=lambda p: (p.name != MVTEC_GOOD, p.name)) if test.is_dir() else []
    return [(p.name, p) for p in subs]


def label_of(rel: Path, layout: Layout) -> tuple[str | None, str | None]:
    """(label, defect type) of an image at ``rel`` (relative to the folder root) in ``layout``."""
    parts = rel.parts
    if layout == "mvtec" and len(parts) >= 3 and parts[0] == "test":
        return ("normal" if parts[1] == MVTEC_GOOD else "anomaly"), parts[1]
    if layout == "labelled" and len(parts) >= 2:
        name = parts[0].lower()
        if name in NORMAL_DIRS:
            return "normal", None
        if name in ANOMALY_DIRS:
            return "anomaly", None
    return None, None
