"""The CLI on real image folders: train, evaluate, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ganomaly.cli.main import main
from ganomaly.data.idx import load_split
from ganomaly.model import GanomalyConfig
from ganomaly.training.fit import TrainConfig, fit
from producers import encode_png
from tests.conftest import FMNIST


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imgs")
    images, labels = load_split(FMNIST, "t10k")
    trousers, bags = np.flatnonzero(labels == 1), np.flatnonzero(labels == 8)
    for name, idx in (("train", trousers[:160]), ("test/normal", trousers[160:200]), ("test/anomaly", bags[:40])):
        d = root / name
        d.mkdir(parents=True)
        for i in idx:
            (d / f"{i}.png").write_bytes(encode_png(images[i]))
    return root


def test_train_and_evaluate_on_folders(folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    assert main(["train", "--dataset", "folder", "--folder", str(folders / "train"), "--epochs", "1", "--batch-size", "32",
                 "--ngf", "8", "--nz", "16", "--score", "recon", "--target-fpr", "0.05", "--out", str(out), "--device", "cpu",
                 "--log-level", "warning"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["n_train"] + manifest["data"]["n_val"] == 160 and manifest["score"]["kind"] == "recon"
    assert manifest["input"]["value_range"] == [-1.0, 1.0]  # the Tanh range is the default for the recon score
    capsys.readouterr()
    report = tmp_path / "r" / "report.json"
    assert main(["evaluate", "--model", str(out), "--dataset", "folder", "--folder", str(folders / "test"), "--report", str(report),
                 "--scores", str(tmp_path / "s.csv"), "--device", "cpu"]) == 0
    r = json.loads(report.read_text())
    assert r["metrics"]["n"] == 80 and r["metrics"]["n_anomalous"] == 40 and r["model_version"] == manifest["version"]
    assert 0.0 <= r["metrics"]["auroc"] <= 1.0
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "index,label,score"
    # subfolders in name order: anomaly/ (label 1) then normal/ (label 0)
    assert [int(line.split(",")[1]) for line in rows[1:]] == [1] * 40 + [0] * 40
    assert all((tmp_path / "r" / f"report-{n}.png").stat().st_size > 1000 for n in ("roc", "pr", "hist"))


@pytest.mark.parametrize(
    ("extra", "value_range"),
    [([], [-0.4242, 2.8215]), (["--input-low", "-1", "--input-high", "1"], [-1.0, 1.0]), (["--input-high", "1.5"], [-0.4242, 1.5])],
)
def test_latent_models_default_to_the_mnist_style_input_range(folders: Path, tmp_path: Path, extra: list[str], value_range: list[float]) -> None:
    out = tmp_path / "model"
    assert main(["train", "--dataset", "folder", "--folder", str(folders / "train"), "--epochs", "1", "--batch-size", "32", "--ngf", "8",
                 "--nz", "16", "--out", str(out), "--device", "cpu", "--log-level", "warning", "--no-evaluate-test", *extra]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["score"]["kind"] == "latent" and manifest["input"]["value_range"] == value_range


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--model", "/nonexistent"], "is not a directory"),
        (["train", "--out", "/tmp/x", "--data-dir", "/nonexistent"], "no train-images-idx3-ubyte"),
        (["train", "--out", "/tmp/x", "--epochs", "zero"], "invalid settings: --epochs (env GANOMALY_TRAIN_EPOCHS)"),
        (["train", "--out", "/tmp/x", "--protocol", "sideways"], "argument --protocol: invalid choice: 'sideways'"),
        (["train", "--out", "/tmp/x", "--input-low", "1", "--input-high", "1"], "must be above --input-low"),
        (["train", "--out", "/tmp/x", "--ema-decay", "0.99", "--swa-start", "1"], "choose one of --ema-decay and --swa-start"),
        (["trainer", "--ema-decay", "0.99", "--swa-start", "1"], "choose one of --ema-decay and --swa-start"),
        (["worker", "--model-store", "/tmp/x", "--model-poll-s", "60"], "model_poll_s must be shorter than liveness_stale_s"),
        (["worker", "--model-store", "/tmp/x", "--stall-timeout-s", "0.5"], "stall_timeout_s must be 0 (off) or at least 10 seconds"),
        (["worker", "--model-store", "/tmp/x", "--stall-timeout-s", "inf"], "--stall-timeout-s"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_unreadable_image_in_training_folder_stops_with_its_name(folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "train"
    bad.mkdir()
    for p in list((folders / "train").iterdir())[:20]:
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["train", "--dataset", "folder", "--folder", str(bad), "--epochs", "1", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "--skip-unreadable" in err


def test_corrupted_artifact_is_refused_by_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ganomaly.artifact import save_artifact
    from ganomaly.data.images import InputSpec
    from ganomaly.model import Generator, calibrate

    save_artifact(tmp_path / "a", Generator(GanomalyConfig(nz=8, ngf=8)), InputSpec(), calibrate(np.arange(10.0)))
    (tmp_path / "a" / "model.safetensors").write_bytes(b"not safetensors")
    assert main(["evaluate", "--model", str(tmp_path / "a")]) == 2
    assert "sha256" in capsys.readouterr().err


def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    cfg = GanomalyConfig(isize=16, nz=8, ngf=8)
    out = tmp_path / "m"
    first = fit(cfg, TrainConfig(epochs=1, batch_size=16), x, x[:16], device=torch.device("cpu"), out_dir=out)
    resumed = fit(cfg, TrainConfig(epochs=2, batch_size=16), x, x[:16], device=torch.device("cpu"), out_dir=out, resume=True)
    assert len(first.history) == 1 and [h.epoch for h in resumed.history] == [1, 2]
    assert resumed.history[0] == first.history[0]  # epoch 1 was not run again


def test_evaluate_tests_a_model_on_its_own_task_unless_told_otherwise(trouser_model: Path, tmp_path: Path) -> None:
    """The trouser model is one-class, class 1: ``evaluate --model`` alone tests it on that, not on the flags' defaults
    (leave-one-out, class 0), which used to give a newcomer a meaningless AUROC for the demo's model."""
    data = json.loads((trouser_model / "manifest.json").read_text())["data"]
    assert (data["protocol"], data["class"]) == ("one-class", 1)
    base = ["evaluate", "--model", str(trouser_model), "--device", "cpu", "--log-level", "warning"]
    assert main([*base, "--report", str(tmp_path / "own.json")]) == 0
    own = json.loads((tmp_path / "own.json").read_text())
    assert (own["protocol"], own["class"]) == ("one-class", 1)
    assert (own["metrics"]["n_normal"], own["metrics"]["n_anomalous"]) == (1000, 9000)  # trousers normal, the nine other classes not
    assert main([*base, "--protocol", "leave-one-out", "--class", "3", "--report", str(tmp_path / "told.json")]) == 0
    told = json.loads((tmp_path / "told.json").read_text())
    assert (told["protocol"], told["class"]) == ("leave-one-out", 3)
    assert (told["metrics"]["n_normal"], told["metrics"]["n_anomalous"]) == (9000, 1000)
    assert main([*base, "--class", "4", "--report", str(tmp_path / "class.json")]) == 0  # a class alone keeps the model's protocol
    assert json.loads((tmp_path / "class.json").read_text())["protocol"] == "one-class"
