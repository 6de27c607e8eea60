"""The durable set of confirmed images: a dataset directory that outlives topic retention.

    DIR/items/normal/<subject-hash>.img     image bytes as they were on the input topic
    DIR/items/anomaly/<subject-hash>.img
    DIR/index.json                          subject -> verdict, at_ms, by, ref, file, trained, unavailable
The latest verdict per subject wins (by verdict time): a retraction moves the file.
Writes of the index are atomic (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Entry:
    subject: str
    verdict: str
    at_ms: int
    by: str
    ref: dict[str, Any] | None
    file: str | None  # relative to DIR; None while the bytes could not be fetched
    trained: bool = False
    unavailable: str | None = None  # why the bytes could not be fetched at the last try (retried each run)


class NormalSet:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.index_path = self.root / "index.json"
        self.entries: dict[str, Entry] = {}
        if self.index_path.exists():
            self.entries = {k: Entry(**v) for k, v in json.loads(self.index_path.read_text()).items()}

    @staticmethod
    def _name(subject: str) -> str:
        return hashlib.sha256(subject.encode()).hexdigest()[:24] + ".img"

    def upsert(self, subject: str, verdict: str, at_ms: int, by: str, ref: dict[str, Any] | None) -> str:
        """Returns 'new', 'updated' (verdict changed), 'duplicate' or 'stale' (older than what is stored)."""
        cur = self.entries.get(subject)
        if cur is not None and at_ms < cur.at_ms:
            return "stale"
        if cur is not None and cur.verdict == verdict:
            cur.at_ms, cur.by = at_ms, by
            return "duplicate"
        if cur is None:
            self.entries[subject] = Entry(subject, verdict, at_ms, by, ref, None)
            return "new"
        # Retraction: move the bytes to the other verdict's folder; it counts as new training data.
        if cur.file is not None:
            src = self.root / cur.file
            dst = self.root / "items" / verdict / self._name(subject)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.exists():
                src.replace(dst)
            cur.file = str(dst.relative_to(self.root))
        cur.verdict, cur.at_ms, cur.by, cur.trained = verdict, at_ms, by, False
        return "updated"

    def missing_bytes(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.file is None and e.ref is not None]

    def put_bytes(self, subject: str, data: bytes) -> None:
        e = self.entries[subject]
        path = self.root / "items" / e.verdict / self._name(subject)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        e.file, e.unavailable = str(path.relative_to(self.root)), None

    def set_unavailable(self, subject: str, reason: str) -> None:
        self.entries[subject].unavailable = reason

    def read(self, e: Entry) -> bytes:
        assert e.file is not None
        return (self.root / e.file).read_bytes()

    def with_verdict(self, verdict: str) -> list[Entry]:
        return sorted((e for e in self.entries.values() if e.verdict == verdict and e.file is not None), key=lambda e: e.subject)

    def new_normals(self) -> int:
        return sum(1 for e in self.with_verdict("normal") if not e.trained)

    def mark_trained(self) -> None:
        for e in self.entries.values():
            if e.file is not None:
                e.trained = True

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in self.entries.items()}, indent=1))
        tmp.replace(self.index_path)


def split_of(subject: str, fractions: tuple[float, float] = (0.6, 0.2)) -> str:
    """Deterministic train/calib/gate assignment from the subject's hash (stable across runs)."""
    u = int(hashlib.sha256(subject.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "calib"
    return "gate"
