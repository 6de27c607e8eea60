"""Replay's contact sheet: the top-scored records of a rescore beside their anomaly maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganomaly.artifact import Artifact
from ganomaly.connections.kafka import KafkaSettings, make_consumer
from ganomaly.connections.records import fetch_records
from ganomaly.data.images import BadImage
from ganomaly.data.overlay import SheetItem, contact_sheet
from ganomaly.explain import explain


def write_top_sheet(path: Path, rows: list[Any], art: Artifact, threshold: float, kafka: KafkaSettings, topic: str, *, n: int,
                    device: Any = "cpu") -> int:
    """The ``n`` records ``art`` scored highest, read back by their coordinates, each beside its map; returns how many are shown."""
    scored = sorted((r for r in rows if art.version in r.scores), key=lambda r: -r.scores[art.version])[:n]
    wanted: dict[int, set[int]] = {}
    for r in scored:
        wanted.setdefault(r.partition, set()).add(r.offset)
    c = make_consumer(kafka.config(), group_id=None, enable_auto_commit=False)  # one consumer for all of them
    try:
        values = fetch_records(c, topic, wanted, timeout_s=15.0)
    finally:
        c.close()
    items = []
    for k, r in enumerate(scored):
        value = values[(r.partition, r.offset)]
        if isinstance(value, str):  # read once for the rescore; gone since (retention) is left out rather than guessed
            continue
        try:
            ex = explain(art, value, device=device)
        except BadImage:  # scored once, so decodable; a record rewritten since is left out rather than guessed
            continue
        label = "" if r.label is None else (" anomaly" if r.label else " normal")
        flag = ">" if ex.score > threshold else "<="
        items.append(SheetItem(ex.frame, ex.map, f"#{k + 1} {r.id} {ex.score:.3f} {flag} {threshold:.3f}{label}"))
    if items:
        path.parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(items, art.input_spec).save(path)
    return len(items)
