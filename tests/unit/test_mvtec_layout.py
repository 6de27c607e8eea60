"""Folder datasets in MVTec AD's layout, for train, evaluate and produce; the normal/anomaly layout still works."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganomaly.cli.main import main
from ganomaly.data.layout import detect_layout
from producers.sources import Item, folder_files, from_files
from tests.camera_frames import camera_frame

TRAIN = "--epochs 1 --batch-size 8 --ngf 8 --nz 8 --isize 32 --channels 3 --resize letterbox --score recon --device cpu --log-level warning"


def _frames(d: Path, seeds: range, *, anomaly: bool = False) -> None:
    d.mkdir(parents=True)
    for s in seeds:
        (d / f"{s:03d}.png").write_bytes(_png(camera_frame(s, anomaly=anomaly, size=(96, 72))))


def _png(jpeg: bytes) -> bytes:  # MVTec AD ships PNGs
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MVTec-shaped category: 24 train/good, 6 test/good, 4 test/scratch, 3 test/hole, masks in ground_truth/."""
    root = tmp_path_factory.mktemp("mvtec") / "bottle"
    _frames(root / "train" / "good", range(24))
    _frames(root / "test" / "good", range(100, 106))
    _frames(root / "test" / "scratch", range(200, 204), anomaly=True)
    _frames(root / "test" / "hole", range(300, 303), anomaly=True)
    for defect, n in (("scratch", 4), ("hole", 3)):
        masks = root / "ground_truth" / defect
        masks.mkdir(parents=True)
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(np.zeros((72, 96), np.uint8)).save(buf, format="PNG")
            (masks / f"{i:03d}_mask.png").write_bytes(buf.getvalue())
    return root


def test_train_reads_train_good_and_evaluate_reads_test_by_defect_type(mvtec: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert detect_layout(mvtec) == "mvtec"
    out = tmp_path / "model"
    assert main(["train", "--dataset", "folder", "--folder", str(mvtec), "--out", str(out), *TRAIN.split()]) == 0
    data = json.loads((out / "manifest.json").read_text())["data"]
    # train/good only: not test/good, not the defects, not the masks
    assert data["n_train"] + data["n_val"] == 24 and data["layout"] == "mvtec" and data["train_folder"] == str(mvtec / "train" / "good")
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(out), "--dataset", "folder", "--folder", str(mvtec), "--report", str(report),
                 "--scores", str(tmp_path / "s.csv"), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["layout"] == "mvtec"
    r = json.loads(report.read_text())
    assert r["layout"] == "mvtec" and r["metrics"]["n"] == 13 and r["metrics"]["n_anomalous"] == 7
    per = r["per_defect"]
    assert sorted(per) == ["hole", "scratch"]
    assert (per["hole"]["n"], per["hole"]["n_anomalous"], per["scratch"]["n"], per["scratch"]["n_anomalous"]) == (9, 3, 10, 4)
    # test/good first, then the defect types in name order
    assert [int(line.split(",")[1]) for line in (tmp_path / "s.csv").read_text().splitlines()[1:]] == [0] * 6 + [1] * 7


def test_the_normal_anomaly_layout_still_evaluates_and_says_so(mvtec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    assert main(["train", "--dataset", "folder", "--folder", str(mvtec / "train" / "good"), "--out", str(out), *TRAIN.split()]) == 0
    labelled = tmp_path / "labelled"
    _frames(labelled / "normal", range(100, 106))
    _frames(labelled / "anomaly", range(200, 204), anomaly=True)
    assert detect_layout(labelled) == "labelled" and detect_layout(mvtec / "train" / "good") == "flat"
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(out), "--dataset", "folder", "--folder", str(labelled), "--report", str(report),
                 "--device", "cpu"]) == 0
    r = json.loads(report.read_text())
    assert (r["layout"], r["metrics"]["n"], r["metrics"]["n_anomalous"], r["per_defect"]) == ("labelled", 10, 4, None)


def test_the_whole_mvtec_tree_is_refused_with_one_line(mvtec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "folder", "--folder", str(mvtec.parent), "--out", str(tmp_path / "m"), *TRAIN.split()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "MVTec AD categories (bottle)" in err[0]


def test_produce_publishes_the_test_images_with_label_and_defect_headers(mvtec: Path) -> None:
    files = folder_files(mvtec)
    assert len(files) == 13 and all(p.relative_to(mvtec).parts[0] == "test" for p in files)  # no training images, no masks
    items = [it for it in from_files(files, base=mvtec) if isinstance(it, Item)]
    got = {(it.label, it.headers.get("defect")) for it in items}
    assert got == {("normal", "good"), ("anomaly", "scratch"), ("anomaly", "hole")}
    assert sum(it.label == "anomaly" for it in items) == 7
    assert next(it for it in items if "scratch" in it.key).key.startswith("test/scratch/")
