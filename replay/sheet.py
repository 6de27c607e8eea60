"""Replay's contact sheet: the top-scored records of a rescore beside their anomaly maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganomaly.artifact import Artifact
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.connections.records import fetch_record
from ganomaly.data.images import BadImage
from ganomaly.data.overlay import SheetItem, contact_sheet
from ganomaly.explain import explain


def write_top_sheet(path: Path, rows: list[Any], art: Artifact, threshold: float, kafka: KafkaSettings, topic: str, *, n: int,
                    device: Any = "cpu") -> int:
    """The ``n`` records ``art`` scored highest, read back by their coordinates, each beside its map; returns how many are shown."""
    scored = sorted((r for r in rows if art.version in r.scores), key=lambda r: -r.scores[art.version])[:n]
    items = []
    for k, r in enumerate(scored):
        try:
            ex = explain(art, fetch_record(kafka, topic, r.partition, r.offset), device=device)
        except BadImage:  # scored once, so decodable; a record rewritten since is left out rather than guessed
            continue
        label = "" if r.label is None else (" anomaly" if r.label else " normal")
        flag = ">" if ex.score > threshold else "<="
        items.append(SheetItem(ex.frame, ex.map, f"#{k + 1} {r.id} {ex.score:.3f} {flag} {threshold:.3f}{label}"))
    if items:
        path.parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(items, art.input_spec).save(path)
    return len(items)
