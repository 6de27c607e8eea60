"""evaluate's examples picture (torchvision grid): the worst-scored test images above their reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganomaly.evaluation.examples import worst_cases, write_examples
from ganomaly.model import GanomalyConfig, Generator

PAD = 2


def _tile(picture: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    top, left = PAD + row * (size + PAD), PAD + col * (size + PAD)
    return picture[top : top + size, left : left + size]


def test_worst_cases_are_the_top_scored_normals_and_the_bottom_scored_anomalies() -> None:
    y = np.array([0, 1, 0, 0, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.9, 0.5, 0.05, 0.7, 0.5])
    false_alarms, misses = worst_cases(y, scores, per_row=3)
    assert false_alarms.tolist() == [2, 3, 6]  # ties in test-set order
    assert misses.tolist() == [4, 1, 5]


def test_picture_shows_each_worst_case_above_its_reconstruction(tmp_path: Path) -> None:
    torch.manual_seed(0)
    size, per_row, lo, hi = 32, 4, -1.0, 1.0
    x = torch.rand(10, 1, size, size) * (hi - lo) + lo
    y = np.array([0] * 6 + [1] * 4)
    scores = np.arange(10, dtype=float)[::-1].copy()  # normals 0..5 score 9..4; anomalies 6..9 score 3..0
    g = Generator(GanomalyConfig(isize=size, nc=1, nz=8, ngf=8)).eval()
    path = tmp_path / "plots" / "examples.png"
    shown = write_examples(x, y, scores, g, (lo, hi), path, per_row=per_row)
    assert shown == {"false_alarms": [0, 1, 2, 3], "misses": [9, 8, 7, 6]}
    picture = np.asarray(Image.open(path).convert("L"))
    assert picture.shape == (4 * (size + PAD) + PAD, per_row * (size + PAD) + PAD)

    def pixels(t: torch.Tensor) -> np.ndarray:
        return ((t.clamp(lo, hi) - lo) / (hi - lo) * 255).round().to(torch.uint8)[0].numpy()

    with torch.inference_mode():
        for row, idx in ((0, shown["false_alarms"]), (2, shown["misses"])):
            recon = g(x[idx])[0]
            for col, i in enumerate(idx):
                assert np.abs(_tile(picture, row, col, size).astype(int) - pixels(x[i]).astype(int)).max() <= 1
                assert np.abs(_tile(picture, row + 1, col, size).astype(int) - pixels(recon[col]).astype(int)).max() <= 1
