import json
from pathlib import Path

import pytest
import torch

from ganomaly.artifact import load_artifact, read_manifest, save_artifact
from ganomaly.data.images import InputSpec
from ganomaly.errors import ArtifactError
from ganomaly.model import GanomalyConfig, Generator, calibrate


def _save(path: Path, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    g = Generator(GanomalyConfig(nz=8, ngf=8))
    return save_artifact(path, g, InputSpec(), calibrate(torch.rand(100).numpy()), data={"n_train": 1})


def test_round_trip_keeps_weights_threshold_and_version(tmp_path: Path) -> None:
    m = _save(tmp_path / "a")
    art = load_artifact(tmp_path / "a")
    assert art.version == m["version"] and art.version.startswith("m-")
    assert art.threshold == m["calibration"]["threshold"]
    assert not art.generator.training
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["manifest.json", "model.safetensors"]
    assert not list(tmp_path.glob(".a.*"))  # no temporary left behind


def test_version_is_content_derived(tmp_path: Path) -> None:
    assert _save(tmp_path / "a", 0)["version"] == _save(tmp_path / "b", 0)["version"]
    assert _save(tmp_path / "c", 1)["version"] != _save(tmp_path / "a", 0)["version"]


def test_rewrite_replaces_in_place(tmp_path: Path) -> None:
    _save(tmp_path / "a", 0)
    m = _save(tmp_path / "a", 1)
    assert load_artifact(tmp_path / "a").version == m["version"]


def test_tampered_weights_refused(tmp_path: Path) -> None:
    _save(tmp_path / "a")
    w = tmp_path / "a" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(tmp_path / "a")


def test_edited_threshold_refused(tmp_path: Path) -> None:
    _save(tmp_path / "a")
    mf = tmp_path / "a" / "manifest.json"
    m = json.loads(mf.read_text())
    m["calibration"]["threshold"] = 0.0
    mf.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="version"):
        load_artifact(tmp_path / "a")


def test_mismatched_architecture_refused(tmp_path: Path) -> None:
    _save(tmp_path / "a")
    mf = tmp_path / "a" / "manifest.json"
    m = json.loads(mf.read_text())
    m["architecture"]["nz"] = 9
    from ganomaly.artifact import _version_of

    m["version"] = _version_of(m)  # a consistent manifest whose weights do not fit
    mf.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="do not fit"):
        load_artifact(tmp_path / "a")


@pytest.mark.parametrize("junk", [b"", b"{not json", b'{"format": "other"}', b"\x80\x04pickle"])
def test_junk_manifest_refused(tmp_path: Path, junk: bytes) -> None:
    _save(tmp_path / "a")
    (tmp_path / "a" / "manifest.json").write_bytes(junk)
    with pytest.raises(ArtifactError):
        read_manifest(tmp_path / "a")


def test_missing_artifact_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a directory"):
        load_artifact(tmp_path / "nope")
    _save(tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="no model.safetensors"):
        load_artifact(tmp_path / "a")


def test_unknown_resize_policy_refused(tmp_path: Path) -> None:
    # an artifact from a newer release whose policy this one lacks: decoding it another way would score garbage
    _save(tmp_path / "a")
    mf = tmp_path / "a" / "manifest.json"
    m = json.loads(mf.read_text())
    m["input"]["resize"] = "crop-centre"
    from ganomaly.artifact import _version_of

    m["version"] = _version_of(m)
    mf.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="resize policy"):
        load_artifact(tmp_path / "a")
