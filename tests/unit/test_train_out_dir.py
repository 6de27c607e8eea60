"""`ganomaly train --out` into a folder that does not exist yet (as the README's quick start does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ganomaly.cli.main import main
from ganomaly.data.idx import load_split
from producers import encode_png
from tests.conftest import FMNIST


def test_train_creates_the_parents_of_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = load_split(FMNIST, "t10k")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in np.flatnonzero(labels == 1)[:96]:
        (folder / f"{i}.png").write_bytes(encode_png(images[i]))
    out = tmp_path / "runs" / "quickstart" / "model"  # neither runs/ nor runs/quickstart/ exists
    assert main(["train", "--dataset", "folder", "--folder", str(folder), "--epochs", "1", "--batch-size", "32", "--ngf", "8",
                 "--nz", "16", "--out", str(out), "--device", "cpu", "--log-level", "warning", "--no-evaluate-test"]) == 0
    assert json.loads((out / "manifest.json").read_text())["version"]
    assert not list(out.parent.glob(".*train-state*"))  # the resume checkpoint is removed once the artifact is written
