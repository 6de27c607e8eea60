"""IDX files (the MNIST family's format), plain or gzip-compressed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ganomaly.errors import UserError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:
        msg = f"cannot read IDX file {path}: {e}"
        raise UserError(msg) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        msg = f"{path} is not an IDX file (bad magic number)"
        raise UserError(msg)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        msg = f"{path}: header says {dims} but holds {data.size} values"
        raise UserError(msg)
    return data.reshape(dims)


def find_split(data_dir: Path, split: str) -> tuple[Path, Path]:
    """``split`` is "train" or "t10k"; accepts plain or .gz files."""
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        cands = [data_dir / f"{split}-{kind}-ubyte{ext}" for ext in ("", ".gz")]
        found = next((c for c in cands if c.exists()), None)
        if found is None:
            msg = f"no {split}-{kind}-ubyte[.gz] in {data_dir} (install with: apt-get install -y dataset-fashion-mnist)"
            raise UserError(msg)
        out.append(found)
    return out[0], out[1]


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``N×H×W`` uint8 and labels ``N`` int64."""
    ip, lp = find_split(data_dir, split)
    images, labels = read_idx(ip), read_idx(lp).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        msg = f"{data_dir}: images {images.shape} and labels {labels.shape} do not match"
        raise UserError(msg)
    return images, labels
