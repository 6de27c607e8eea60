"""Anomaly maps: the per-pixel error of a real model lands on the defect, on the original frame."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganomaly.artifact import load_artifact
from ganomaly.data.idx import load_split
from ganomaly.data.images import InputSpec, array_to_input
from ganomaly.data.overlay import MAX_SIDE, SheetItem, contact_sheet, heatmap, map_to_frame, model_window, overlay, png
from ganomaly.model import Scorer
from ganomaly.model.anomaly_map import pixel_error_maps

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def test_unsmoothed_map_is_the_channel_mean_of_the_absolute_error() -> None:
    x = torch.zeros(2, 3, 8, 8)
    x_hat = torch.zeros(2, 3, 8, 8)
    x_hat[1, :, 2:4, 5:7] = 0.6
    x_hat[1, 0, 0, 0] = -0.9
    m = pixel_error_maps(x, x_hat, sigma=0)
    assert m.shape == (2, 8, 8)
    assert torch.equal(m[0], torch.zeros(8, 8))
    assert m[1, 2, 5].item() == pytest.approx(0.6)
    assert m[1, 0, 0].item() == pytest.approx(0.3)
    smooth = pixel_error_maps(x, x_hat, sigma=1.0)
    assert smooth[1].sum().item() == pytest.approx(m[1].sum().item(), rel=0.25)  # blurred, not lost
    assert smooth[1].argmax().item() // 8 in (2, 3)


def test_letterboxed_frame_gets_its_map_back_without_the_padding() -> None:
    spec = InputSpec(isize=32, channels=1, resize="letterbox")
    assert model_window(64, 32, spec) == (0, 8, 32, 24)  # 64x32 -> 32x16 pasted 8 rows down
    m = np.zeros((32, 32), np.float32)
    m[8:24, :16] = 1.0  # hot on the left half of the picture, nothing in the padding
    m[:8] = 5.0  # padding rows: must not reach the frame
    on = map_to_frame(m, 64, 32, spec)
    assert on.shape == (32, 64)
    assert on[:, :28].min() > 0.9 and on[:, 36:].max() < 0.1 and on.max() <= 1.0 + 1e-6


def test_stretched_frame_maps_the_whole_square() -> None:
    spec = InputSpec(isize=32, channels=1, resize="bilinear-stretch")
    assert model_window(640, 480, spec) == (0, 0, 32, 32)
    m = np.zeros((32, 32), np.float32)
    m[:, 16:] = 1.0
    on = map_to_frame(m, 640, 480, spec)
    assert on.shape == (480, 640) and on[:, :300].max() < 0.05 and on[:, 340:].min() > 0.95


def test_a_real_models_map_points_at_a_pasted_defect(trouser_model: Path) -> None:
    art = load_artifact(trouser_model)
    images, labels = load_split(FMNIST, "t10k")
    clean = images[labels == 1][:16]
    trousers = clean.copy()
    trousers[:, 2:9, 2:9] = 255  # a white patch in the top-left corner, where trouser pictures are background
    scorer = Scorer(art.generator, spec=art.score_spec)
    out = scorer.score(torch.from_numpy(np.stack([array_to_input(a, art.input_spec) for a in trousers])), with_maps=True)
    before = scorer.score(torch.from_numpy(np.stack([array_to_input(a, art.input_spec) for a in clean])), with_maps=True)
    assert out.maps is not None and out.maps.shape == (16, art.input_spec.isize, art.input_spec.isize)
    # on the model's 32x32 grid the patch covers rows/cols ~2-10; the hottest pixel lies there in most images
    hits = 0
    for m in out.maps.numpy():
        r, c = divmod(int(m.argmax()), m.shape[1])
        hits += r <= 12 and c <= 12
    assert hits >= 12, f"only {hits} of 16 maps peak on the defect"
    # the patch heats its own area several-fold, and leaves the far corner about as it was
    assert before.maps is not None
    rise_in = out.maps[:, 3:9, 3:9].mean().item() / before.maps[:, 3:9, 3:9].mean().item()
    rise_out = out.maps[:, 20:, 20:].mean().item() / before.maps[:, 20:, 20:].mean().item()
    assert rise_in > 3, rise_in
    assert rise_out < 1.5, rise_out


def test_overlay_heatmap_and_sheet_are_bounded_pngs() -> None:
    spec = InputSpec(isize=32, channels=3, resize="letterbox")
    frame = Image.new("RGB", (4000, 3000), (90, 90, 90))
    m = np.zeros((32, 32), np.float32)
    m[10:20, 10:20] = 1.0
    over = overlay(frame, m, spec)
    assert max(over.size) == MAX_SIDE and over.size == (1024, 768)
    px = np.asarray(over)
    assert px[384, 512].tolist() != [90, 90, 90] and px[10, 10].tolist() == [90, 90, 90]  # heat in the middle, frame elsewhere
    raw = Image.open(io.BytesIO(png(heatmap(m, spec, size=(640, 480)))))
    assert raw.size == (640, 480) and raw.format == "PNG"
    sheet = contact_sheet([SheetItem(frame, m, "score 1.0")] * 7, spec, cell=50, cols=3)
    assert sheet.size == (3 * 2 * 50, 3 * (50 + 16))
    with pytest.raises(ValueError, match="does not match"):
        map_to_frame(np.zeros((16, 16), np.float32), 10, 10, spec)
