"""Model artifacts: a directory with ``model.safetensors`` and ``manifest.json``.

Loading never unpickles anything (safetensors holds raw tensors; the manifest is
JSON). The manifest records a SHA-256 of the weights file and a content-derived
version id; a mismatch in either, unknown keys or wrong tensor shapes are refused
with a clear error. Writes go to a temporary directory that is renamed into place,
so a reader never sees half an artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganomaly.data.images import InputSpec
from ganomaly.errors import ArtifactError
from ganomaly.model import Calibration, GanomalyConfig, Generator, Scorer, ScoreSpec

FORMAT = "ganomaly-stream/artifact"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"


@dataclass
class Artifact:
    generator: Generator
    config: GanomalyConfig
    input_spec: InputSpec
    calibration: Calibration
    manifest: dict[str, Any]
    path: Path
    score_spec: ScoreSpec = field(default_factory=ScoreSpec)

    def scorer(self, device: torch.device | str = "cpu", amp: str | None = None, *, traced: bool = False) -> Scorer:
        """A scorer computing this artifact's own score kind (the one its threshold was calibrated on);
        ``traced`` for a serving process (see ``Scorer``: same scores, no interpreter lock in the forward pass)."""
        return Scorer(self.generator, device, amp, self.score_spec, traced=traced)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def threshold(self) -> float:
        return self.calibration.threshold


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version_of(manifest: dict[str, Any]) -> str:
    """Content hash over everything that changes behaviour: weights, architecture, input spec, calibration."""
    keyed = {k: manifest[k] for k in ("weights_sha256", "architecture", "input", "calibration", "score")}
    return "m-" + hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def save_artifact(
    out_dir: Path,
    generator: Generator,
    input_spec: InputSpec,
    calibration: Calibration,
    *,
    training: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parent_version: str | None = None,
    score_spec: ScoreSpec | None = None,
) -> dict[str, Any]:
    """Write atomically; returns the manifest. Replaces ``out_dir`` if it exists."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "weights_sha256": _sha256(tmp / WEIGHTS),
            "architecture": generator.config.to_dict(),
            "input": input_spec.to_dict(),
            "calibration": calibration.to_dict(),
            "score": (score_spec or ScoreSpec()).to_dict(),
            "training": training or {},
            "data": data or {},
            "metrics": metrics or {},
            "parent_version": parent_version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        manifest["version"] = _version_of(manifest)
        with (tmp / MANIFEST).open("w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            # Directories cannot be swapped atomically; move the old one aside first
            # so the window without a valid artifact is two renames long.
            aside = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            out_dir.rename(aside)
            tmp.rename(out_dir)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    path = Path(path)
    mf = path / MANIFEST
    if not path.is_dir():
        msg = f"model artifact {path} is not a directory"
        raise ArtifactError(msg)
    try:
        manifest = json.loads(mf.read_text())
    except FileNotFoundError as e:
        msg = f"model artifact {path} has no {MANIFEST}"
        raise ArtifactError(msg) from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        msg = f"model artifact {path}: {MANIFEST} is not valid JSON ({e})"
        raise ArtifactError(msg) from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        msg = f"model artifact {path}: not a {FORMAT} manifest"
        raise ArtifactError(msg)
    if manifest.get("format_version") != FORMAT_VERSION:
        msg = f"model artifact {path}: format_version {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})"
        raise ArtifactError(msg)
    return manifest


def load_artifact(path: Path, device: torch.device | str = "cpu") -> Artifact:
    path = Path(path)
    manifest = read_manifest(path)
    try:
        config = GanomalyConfig(**manifest["architecture"])
        spec = InputSpec.from_dict(manifest["input"])
        calibration = Calibration.from_dict(manifest["calibration"])
        score_spec = ScoreSpec(**manifest["score"])
        claimed_sha, claimed_version = manifest["weights_sha256"], manifest["version"]
    except (KeyError, TypeError, ValueError) as e:
        msg = f"model artifact {path}: manifest is incomplete or invalid ({type(e).__name__}: {e})"
        raise ArtifactError(msg) from e
    if spec.isize != config.isize or spec.channels != config.nc:
        msg = f"model artifact {path}: input spec {spec.isize}x{spec.channels} does not match architecture {config.isize}x{config.nc}"
        raise ArtifactError(msg)
    weights = path / WEIGHTS
    if not weights.is_file():
        msg = f"model artifact {path} has no {WEIGHTS}"
        raise ArtifactError(msg)
    if _sha256(weights) != claimed_sha:
        msg = f"model artifact {path}: {WEIGHTS} does not match the manifest's sha256 (corrupted or tampered)"
        raise ArtifactError(msg)
    if _version_of(manifest) != claimed_version:
        msg = f"model artifact {path}: manifest content does not match its version id {claimed_version} (edited after writing)"
        raise ArtifactError(msg)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as e:
        msg = f"model artifact {path}: cannot read {WEIGHTS} ({e})"
        raise ArtifactError(msg) from e
    generator = Generator(config)
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "shape mismatch"
        msg = f"model artifact {path}: weights do not fit the architecture ({first})"
        raise ArtifactError(msg) from e
    generator.to(device).eval()
    return Artifact(generator=generator, config=config, input_spec=spec, calibration=calibration, manifest=manifest, path=path,
                    score_spec=score_spec)
