"""The top-N scored images with their anomaly maps, as one contact sheet: what the model finds anomalous."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganomaly.data.images import InputSpec
from ganomaly.data.overlay import SheetItem, contact_sheet
from ganomaly.model import Scorer


def input_to_frame(x: torch.Tensor, spec: InputSpec) -> Image.Image:
    """A model input (``C×H×W`` in the spec's value range) as the picture the model saw."""
    lo, hi = spec.value_range
    arr = ((x.float().cpu().numpy() - lo) * (255.0 / (hi - lo))).clip(0, 255).round().astype(np.uint8)
    return Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), mode="RGB")


def _original(image_id: str) -> Image.Image | None:
    """The source file of a folder dataset image, when the id names one (IDX images have none)."""
    p = Path(image_id)
    try:
        if p.is_file():
            with Image.open(p) as im:
                return im.convert("RGB")
    except (OSError, ValueError):
        return None
    return None


def top_scored_sheet(scorer: Scorer, x: torch.Tensor, scores: np.ndarray, spec: InputSpec, *, n: int, threshold: float,
                     labels: np.ndarray | None = None, ids: Sequence[str] = (), cols: int = 6) -> Image.Image:
    """The ``n`` highest-scored images, each beside its map, captioned with score, threshold and label.

    Maps are recomputed for these ``n`` only (one batch), so a sheet costs nothing on the other images.
    Folder images are shown as their original files with the map brought back onto them; others as the model's input.
    """
    top = np.argsort(-scores, kind="stable")[:n]
    maps = scorer.score(x[torch.from_numpy(top)], with_maps=True).maps
    assert maps is not None
    # the model's own input is already on the model's grid: its map lays over it square for square
    on_grid = InputSpec(isize=spec.isize, channels=spec.channels, value_range=spec.value_range, resize="bilinear-stretch")
    items = []
    for k, i in enumerate(top.tolist()):
        original = _original(ids[i]) if i < len(ids) else None
        frame = input_to_frame(x[i], spec) if original is None else original
        label = "" if labels is None else (" anomaly" if int(labels[i]) else " normal")
        flag = ">" if scores[i] > threshold else "<="
        items.append(SheetItem(frame, maps[k].numpy(), f"#{k + 1} {scores[i]:.3f} {flag} {threshold:.3f}{label}",
                               on_grid if original is None else None))
    return contact_sheet(items, spec, cols=cols)
