"""Where the model errs, as one picture (a torchvision grid): the false alarms and misses next to their reconstructions.

``evaluate`` writes it beside the ROC, PR and histogram plots. Rows, each image above what the
generator made of it: the normal test images scored highest (the likeliest false alarms), then
the anomalies scored lowest (the likeliest misses). A reconstruction that looks like its input
says the score missed it; one that does not says the threshold did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from ganomaly.model import Generator


def worst_cases(y: np.ndarray, scores: np.ndarray, per_row: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the highest-scoring normals and the lowest-scoring anomalies (up to ``per_row`` each, worst first)."""
    normals, anomalies = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    # stable sorts: ties keep the test set's order, so the picture is the same from run to run
    false_alarms = normals[np.argsort(-scores[normals], kind="stable")[:per_row]]
    misses = anomalies[np.argsort(scores[anomalies], kind="stable")[:per_row]]
    return false_alarms, misses


@torch.inference_mode()
def write_examples(x: torch.Tensor, y: np.ndarray, scores: np.ndarray, generator: Generator, value_range: tuple[float, float], path: Path,
                   *, per_row: int = 8, device: torch.device | str = "cpu") -> dict[str, list[int]]:
    """Write the picture to ``path`` (PNG); returns the test-set indices shown, by row kind."""
    false_alarms, misses = worst_cases(y, scores, per_row)
    if len(false_alarms) + len(misses) == 0:
        return {"false_alarms": [], "misses": []}  # nothing scored: no picture
    generator = generator.eval()
    rows = []
    for idx in (false_alarms, misses):
        if len(idx) == 0:
            continue
        inputs = x[torch.from_numpy(idx)].to(device)
        recon = generator(inputs)[0]
        pad = per_row - len(idx)  # short rows padded with blank tiles, so each input stays above its reconstruction
        blank = torch.full((pad, *inputs.shape[1:]), value_range[0], device=device)
        rows += [torch.cat([inputs, blank]), torch.cat([recon, blank])]
    # pixel values are in the model's input range (the Tanh output of a reconstruction may fall outside it): clamp, then 0-255
    grid = make_grid(torch.cat(rows).float().cpu(), nrow=per_row, padding=2, normalize=True, value_range=value_range, pad_value=1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written by Pillow: torchvision.io's encoders are deprecated since 0.29 (superseded by TorchCodec)
    Image.fromarray(grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()).save(path, format="PNG")
    return {"false_alarms": false_alarms.tolist(), "misses": misses.tolist()}
