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


# When one result's record was polled and its batch started and finished scoring (time.monotonic).
Stages = tuple[float, float, float]


@dataclass
class OutputBatch:
    results: list[ResultLike] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # Result keys for the results topic, parallel to ``results`` (image id, else source, else input id).
    keys: list[bytes] = field(default_factory=list)
    # Shadow (challenger) results for the same inputs: shadow topic only, never alerts or Redis.
    shadow: list[ResultLike] = field(default_factory=list)
    # Per result, parallel to ``results`` where the score stage filled it in: where its latency went.
    stages: list[Stages] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.results) + len(self.dead)


@dataclass(frozen=True, slots=True)
class Acked:
    """One written output batch as a benchmark sees it: each result's end-to-end seconds (record
    timestamp to outputs acknowledged), its ``stages`` (parallel, when known) and ``done``, when the
    outputs were acknowledged (time.monotonic)."""

    e2e_s: list[float]
    stages: list[Stages]
    done: float
