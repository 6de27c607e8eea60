"""What the scorer hands the sinks: scored results and dead letters for one batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ganomaly.contracts.results import ResultLike


@dataclass
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    reason: str
    error_class: str
    message: str
    model_version: str  # the model that refused it: its input spec (decoding) or its forward pass (scoring)
    attempts: int = 1


@dataclass
class OutputBatch:
    results: list[ResultLike] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # Result keys for the results topic, parallel to ``results`` (image id, else source, else input id).
    keys: list[bytes] = field(default_factory=list)
    # Shadow (challenger) results for the same inputs: shadow topic only, never alerts or Redis.
    shadow: list[ResultLike] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.results) + len(self.dead)
