"""Where images come from: a folder, a list of files, or an IDX dataset. Each yields ``Item``s."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganomaly.data.layout import detect_layout, label_of
from producers.publisher import CONTENT_TYPES, encode_png

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class Item:
    key: str
    data: bytes
    content_type: str
    label: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Unreadable(Exception):
    pass


def sniff(data: bytes, *, reencode: str | None = None) -> tuple[bytes, str]:
    """Check that Pillow can read the file; optionally re-encode. Returns (bytes, content type)."""
    try:
        im = Image.open(io.BytesIO(data))
        fmt = im.format or ""
        if reencode:
            im.load()
            buf = io.BytesIO()
            fmt = reencode.upper()
            (im.convert("RGB") if fmt == "JPEG" and im.mode not in ("L", "RGB") else im).save(buf, format=fmt)
            data = buf.getvalue()
        else:
            im.verify()  # integrity check without decoding everything
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as e:
        raise Unreadable(f"{type(e).__name__}: {e}") from e
    return data, CONTENT_TYPES.get(fmt, "application/octet-stream")


def from_files(paths: list[Path], *, reencode: str | None = None, base: Path | None = None) -> Iterator[Item | tuple[str, str]]:
    """Items, or (path, error) for unreadable files (reported and counted by the caller).

    Under a labelled ``base`` (MVTec AD's ``test/<defect type>/`` or ``normal/`` and ``anomaly/``)
    each item carries its label header, and under MVTec AD's its defect type in a ``defect`` header.
    """
    layout = detect_layout(base) if base is not None else "flat"
    for p in paths:
        try:
            data, ctype = sniff(p.read_bytes(), reencode=reencode)
        except (OSError, Unreadable) as e:
            yield (str(p), str(e))
            continue
        key = str(p.relative_to(base)) if base is not None else p.name
        label, defect = label_of(p.relative_to(base), layout) if base is not None else (None, None)
        yield Item(key=key, data=data, content_type=ctype, label=label, headers={"filename": p.name, **({"defect": defect} if defect else {})})


def folder_files(root: Path) -> list[Path]:
    """The images to publish from ``root``: of an MVTec AD category its ``test/`` images (labelled by
    ``from_files``), never its training images or ground-truth masks; else every image under it."""
    top = root / "test" if detect_layout(root) == "mvtec" else root
    return sorted(p for p in top.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def from_idx(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, *, split: str, protocol: str | None, klass: int) -> Iterator[Item]:
    for i in indices.tolist():
        lab = int(labels[i])
        label = None
        if protocol == "leave-one-out":
            label = "anomaly" if lab == klass else "normal"
        elif protocol == "one-class":
            label = "normal" if lab == klass else "anomaly"
        yield Item(key=f"{split}:{i}", data=encode_png(images[i]), content_type="image/png", label=label, headers={"class": str(lab)})


def labelled_mix(labels: np.ndarray, *, protocol: str, klass: int, count: int, anomaly_share: float, seed: int) -> np.ndarray:
    """Indices of an inspection-line stream: ``count`` images of which ``anomaly_share`` are anomalies under the protocol,
    interleaved at random. Anomalies are drawn from every anomalous class alike."""
    anomalous = (labels == klass) if protocol == "leave-one-out" else (labels != klass)
    pool_a, pool_n = np.flatnonzero(anomalous), np.flatnonzero(~anomalous)
    n_anom = round(count * anomaly_share)
    n_norm = count - n_anom
    if n_anom > len(pool_a) or n_norm > len(pool_n):
        msg = (f"the split has {len(pool_n)} normal and {len(pool_a)} anomalous images for {protocol} class {klass}: "
               f"{count} images at anomaly share {anomaly_share} need {n_norm} and {n_anom}; lower --count")
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(pool_n, n_norm, replace=False), rng.choice(pool_a, n_anom, replace=False)])
    return rng.permutation(picked)
