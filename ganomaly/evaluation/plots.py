"""PNG plots: ROC, precision-recall, score histograms (matplotlib, headless).

Each PNG also says in words what it draws: its legend entries and the x of each vertical line
(a decision threshold), as JSON in the PNG's ``Description`` text chunk, read back with
``drawn(path)``. A reader of a report can check a plot's thresholds and AUROC labels without
looking at pixels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image
from sklearn.metrics import precision_recall_curve, roc_curve

# A curve's scores, scored against the shared labels, or its own (labels, scores) when curves cover different records.
Curve = np.ndarray | tuple[np.ndarray, np.ndarray]


def _save(fig: Figure, ax: Axes, path: Path) -> None:
    """Write the figure with what it shows, taken from the drawn axes themselves, in the PNG's text."""
    legend = ax.get_legend()
    shown = {"title": ax.get_title(),
             "legend": [t.get_text() for t in legend.get_texts()] if legend is not None else [],
             "vertical_lines": [float(x[0]) for x in (ln.get_xdata() for ln in ax.get_lines()) if len(x) == 2 and x[0] == x[1]]}
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Title": shown["title"], "Description": json.dumps(shown)})
    plt.close(fig)


def drawn(path: Path | str) -> dict[str, Any]:
    """What a plot written here shows: ``{"title", "legend": [texts], "vertical_lines": [x, ...]}``."""
    with Image.open(path) as im:
        return json.loads(im.text["Description"])  # type: ignore[attr-defined]


def _labelled(labels: np.ndarray | None, curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    return curve if isinstance(curve, tuple) else (labels, curve)


def plot_roc(labels: np.ndarray | None, curves: dict[str, Curve], path: Path, title: str = "ROC") -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in curves.items():
        fpr, tpr, _ = roc_curve(*_labelled(labels, curve))
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    _save(fig, ax, path)


def plot_pr(labels: np.ndarray | None, curves: dict[str, Curve], path: Path, title: str = "Precision-recall") -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in curves.items():
        p, r, _ = precision_recall_curve(*_labelled(labels, curve))
        ax.plot(r, p, label=name)
    ax.set(xlabel="recall", ylabel="precision", title=title, ylim=(0, 1.02))
    ax.legend(loc="lower left")
    _save(fig, ax, path)


def plot_histogram(labels: np.ndarray | None, scores: np.ndarray, threshold: float | Mapping[float, int] | None, path: Path,
                   title: str = "Scores") -> None:
    """Score densities, normal vs. anomaly when ``labels`` are given, else of all records, with the decision threshold(s).

    ``threshold`` is one value, or each threshold a model decided with mapped to how many records
    it decided (production workers may override it); None draws no line and says so in the legend.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=60)
    if labels is not None and 0 < labels.sum() < len(labels):
        ax.hist(scores[labels == 0], bins=bins, alpha=0.6, density=True, label="normal")
        ax.hist(scores[labels == 1], bins=bins, alpha=0.6, density=True, label="anomaly")
    else:
        ax.hist(scores, bins=bins, alpha=0.6, density=True, label=f"all {len(scores)} records")
    lines = {float(threshold): None} if isinstance(threshold, int | float) else dict(threshold or {})
    for i, (thr, n) in enumerate(lines.items()):
        ax.axvline(thr, color="k", ls=("--", ":", "-.")[i % 3], label=f"threshold {thr:.4g}" + (f" ({n} records)" if len(lines) > 1 else ""))
    if not lines:
        ax.plot([], [], " ", label="no threshold recorded")
    ax.set(xlabel="anomaly score", ylabel="density", title=title)
    ax.legend()
    _save(fig, ax, path)
