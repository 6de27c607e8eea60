"""``ganomaly produce``: publish images from a folder, a file list or an IDX dataset to the input topic."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from tqdm import tqdm

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.data.layout import detect_layout
from ganomaly.settings import LogLevel
from producers.publisher import ImagePublisher
from producers.sources import IMAGE_SUFFIXES, Item, folder_files, from_files, from_idx, labelled_mix


class ProduceSettings(ConnectedSettings):
    """Env prefix ``GANOMALY_PRODUCE_``; the broker and the input topic are read from the names every process shares."""

    model_config = SettingsConfigDict(env_prefix="GANOMALY_PRODUCE_", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic: str = Field("images", description="the input topic the workers read", **shared_env("GANOMALY_INPUT_TOPIC"))
    source_kind: Literal["folder", "files", "idx", "fashion-mnist"] = Field("fashion-mnist", description="where images come from",
                                                                             json_schema_extra={"cli": "--from"})
    path: Path | None = Field(None, description="the folder (--from folder) or a text file of paths, one a line (--from files)")
    data_dir: Path = Field(Path("/usr/share/datasets/fashion-mnist"), description="IDX directory (--from idx/fashion-mnist)")
    split: Literal["train", "t10k"] = "t10k"
    protocol: Literal["leave-one-out", "one-class"] | None = Field(None, description="derive a label header (normal/anomaly) from the class")
    klass: int = Field(0, ge=0, json_schema_extra={"cli": "--class"})
    reencode: Literal["png", "jpeg"] | None = Field(None, description="re-encode files instead of sending their original bytes")
    source: str = Field(default_factory=lambda: f"producer-{socket.gethostname()}", description="the source header (camera/line id)",
                        json_schema_extra={"default_help": "producer-<hostname>"})
    compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(None, description="producer compression (default: none)")
    rate: float | None = Field(None, gt=0, description="images per second (default: as fast as possible)")
    count: int | None = Field(None, ge=1, description="send at most this many")
    anomaly_share: float | None = Field(None, ge=0, lt=1, description="with --protocol and --count: a random mix of this share of anomalies "
                                                                        "and normals for the rest (an inspection line)")
    shuffle: bool = False
    seed: int = 0
    progress: bool = Field(True, description="a progress bar on stderr once the broker answers, when stderr is a terminal")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"


def _items(s: ProduceSettings, skipped: list[str]) -> tuple[int, Any]:
    from ganomaly.data.idx import load_split
    from ganomaly.errors import UserError

    if s.source_kind in ("idx", "fashion-mnist"):
        images, labels = load_split(s.data_dir, s.split)
        if s.anomaly_share is not None:
            mixed = _mix(s, labels)
            return len(mixed), from_idx(images, labels, mixed, split=s.split, protocol=s.protocol, klass=s.klass)
        idx = np.arange(len(labels))
        if s.shuffle:
            idx = np.random.default_rng(s.seed).permutation(idx)
        idx = idx[: s.count] if s.count else idx
        return len(idx), from_idx(images, labels, idx, split=s.split, protocol=s.protocol, klass=s.klass)
    if s.path is None:
        msg = f"--path is required with --from {s.source_kind}"
        raise UserError(msg)
    if s.source_kind == "folder":
        if not s.path.is_dir():
            msg = f"{s.path} is not a directory"
            raise UserError(msg)
        files, base = folder_files(s.path), s.path
        if not files:  # said before connecting: a run that sends nothing is a wrong path, not a success
            looked = s.path / "test" if detect_layout(s.path) == "mvtec" else s.path
            msg = f"no images in {looked} or its subfolders (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            raise UserError(msg)
    else:
        try:
            files = [Path(line.strip()) for line in s.path.read_text().splitlines() if line.strip()]
        except OSError as e:
            msg = f"cannot read the file list {s.path}: {e}"
            raise UserError(msg) from e
        if not files:
            msg = f"the file list {s.path} names no files"
            raise UserError(msg)
        base = None
    if s.shuffle:
        files = [files[i] for i in np.random.default_rng(s.seed).permutation(len(files))]
    files = files[: s.count] if s.count else files

    def gen() -> Any:
        for it in from_files(files, reencode=s.reencode, base=base):
            if isinstance(it, Item):
                yield it
            else:
                skipped.append(f"{it[0]}: {it[1]}")

    return len(files), gen()


def _mix(s: ProduceSettings, labels: np.ndarray) -> np.ndarray:
    from ganomaly.errors import UserError

    if s.protocol is None or s.count is None:
        msg = "--anomaly-share needs --protocol (which classes are normal) and --count"
        raise UserError(msg)
    try:
        return labelled_mix(labels, protocol=s.protocol, klass=s.klass, count=s.count, anomaly_share=s.anomaly_share or 0.0, seed=s.seed)
    except ValueError as e:
        raise UserError(str(e)) from e


def run(s: ProduceSettings) -> int:
    skipped: list[str] = []
    total, items = _items(s, skipped)
    t0 = time.monotonic()
    with ImagePublisher(s.kafka, s.topic, compression=s.compression, connect_timeout_s=s.connect_timeout_s) as pub:
        # Drawn once the broker answered (an error line then starts its own line), and only on a terminal
        # (disable=None): redirected output gets the summary line, not carriage-return redraws.
        bar = tqdm(total=total, unit="img", disable=None if s.progress else True, dynamic_ncols=True)
        for i, it in enumerate(items):
            if s.rate:
                delay = t0 + i / s.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pub.publish(it.data, key=it.key, source=s.source, label=it.label, content_type=it.content_type, extra_headers=it.headers)
            bar.update(1)
    bar.close()
    st = pub.stats
    secs = time.monotonic() - t0
    summary = {"topic": s.topic, "sent": st.sent, "failed": st.failed, "skipped_unreadable": len(skipped), "bytes": st.bytes,
               "seconds": round(secs, 2), "images_per_s": round(st.sent / max(secs, 1e-9), 1), "errors": st.errors[:5], "unreadable": skipped[:20],
               "layout": detect_layout(s.path) if s.source_kind == "folder" and s.path is not None else None}
    print(json.dumps(summary))
    return 1 if st.failed else 0

