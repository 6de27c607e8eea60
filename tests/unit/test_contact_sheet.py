"""evaluate --contact-sheet: the top-scored images beside their maps, from the command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganomaly.artifact import load_artifact
from ganomaly.data.images import InputSpec
from ganomaly.data.synthetic import camera_frame
from ganomaly.evaluation.sheet import input_to_frame, top_scored_sheet
from ganomaly.model import GanomalyConfig, Generator, Scorer

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_writes_a_contact_sheet_of_its_top_scores(tiny_model: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "sheets" / "top.png"
    p = subprocess.run([sys.executable, "-m", "ganomaly", "evaluate", "--model", str(tiny_model), "--max-images", "300",
                        "--report", str(tmp_path / "eval.json"), "--scores", str(tmp_path / "s.csv"),
                        "--contact-sheet", str(sheet), "--sheet-top", "8", "--log-level", "warning"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["contact_sheet"] == str(sheet)
    im = Image.open(sheet)
    assert im.format == "PNG" and im.size == (6 * 2 * 160, 2 * (160 + 16))  # 8 items: 6 per row, 2 rows
    # the first cell is the highest-scored image of the CSV, shown as the model saw it
    rows = [line.split(",") for line in (tmp_path / "s.csv").read_text().splitlines()[1:]]
    best = max(rows, key=lambda r: float(r[2]))
    art = load_artifact(tiny_model)
    from ganomaly.data.idx import load_split

    images, _ = load_split(Path("/usr/share/datasets/fashion-mnist"), "t10k")
    from ganomaly.data.images import array_to_input

    expected = input_to_frame(torch.from_numpy(array_to_input(images[int(best[0])], art.input_spec)), art.input_spec).convert("RGB")
    cell = np.asarray(im.crop((0, 0, 160, 160)), dtype=np.int16)
    want = np.asarray(expected.resize((160, 160), Image.Resampling.NEAREST), dtype=np.int16)
    assert np.abs(cell - want).mean() < 2.0


def test_folder_images_are_shown_as_their_original_frames(tmp_path: Path) -> None:
    spec = InputSpec(isize=32, channels=3, resize="letterbox")
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.jpg"
        p.write_bytes(camera_frame(i, anomaly=i == 1))
        paths.append(str(p))
    from ganomaly.data.images import decode_image

    x = torch.from_numpy(np.stack([decode_image(Path(q).read_bytes(), spec) for q in paths]))
    scorer = Scorer(Generator(GanomalyConfig(isize=32, nc=3, nz=8, ngf=8)))
    scores = np.array([0.1, 0.9, 0.5])
    sheet = top_scored_sheet(scorer, x, scores, spec, n=2, threshold=0.4, ids=paths, cols=2)
    assert sheet.size == (2 * 2 * 160, 160 + 16)
    # a 640x480 frame in a 160 cell is 160x120: the cell's bottom rows stay white, the frame fills the top
    first = np.asarray(sheet.crop((0, 0, 160, 160)))
    assert (first[125:] == 255).all() and not (first[:120] == 255).all()
