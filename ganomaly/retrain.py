"""The trainer's state in Redis, and operators' requests for a run now.

A trainer that runs every N seconds (``ganomaly trainer --every``) reports what it is doing in
``{prefix}:trainer:status`` (running or waiting, the last run's outcome, the next run's time) and,
while it waits, takes a pending request from ``{prefix}:trainer:request`` and runs at once. A
CronJob trainer takes the request at its next run. The console shows the one and writes the other,
so an operator can close the loop (confirm, retrain, see the result served) from a browser.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis


class TrainerSignals:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.request_key = f"{prefix}:trainer:request"
        self.status_key = f"{prefix}:trainer:status"

    def request(self, by: str) -> dict[str, Any]:
        """Ask for a run now (idempotent: one pending request, the latest asker's)."""
        req = {"by": by, "at_ms": int(time.time() * 1000)}
        self.r.set(self.request_key, json.dumps(req))
        return req

    def pending(self) -> dict[str, Any] | None:
        raw = self.r.get(self.request_key)
        return json.loads(raw) if raw else None

    def take(self) -> dict[str, Any] | None:
        """The pending request, removed (None when there is none)."""
        raw = self.r.getdel(self.request_key)
        return json.loads(raw) if raw else None

    def report(self, **fields: Any) -> None:
        """Merge ``fields`` into the trainer's status (JSON values; ``updated_ms`` set)."""
        mapping = {k: json.dumps(v, default=str) for k, v in fields.items()} | {"updated_ms": json.dumps(int(time.time() * 1000))}
        self.r.hset(self.status_key, mapping=mapping)

    def status(self) -> dict[str, Any]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(self.status_key).items()}
