"""Operators' requests for a trainer run and the trainer's status, in the real Redis."""

from __future__ import annotations

import redis

from ganomaly.retrain import TrainerSignals


def test_a_request_is_taken_once_and_the_latest_asker_is_kept(redis_url: str, prefix: str) -> None:
    sig = TrainerSignals(redis.Redis.from_url(redis_url), prefix)
    assert sig.pending() is None and sig.take() is None
    sig.request("console:alice")
    sig.request("console:bob")
    assert sig.pending()["by"] == "console:bob"
    assert sig.take()["by"] == "console:bob"
    assert sig.take() is None and sig.pending() is None


def test_the_status_merges_fields_and_keeps_their_types(redis_url: str, prefix: str) -> None:
    sig = TrainerSignals(redis.Redis.from_url(redis_url), prefix)
    assert sig.status() == {}
    sig.report(state="running", every_s=30.0, next_at_ms=None)
    sig.report(state="waiting", last_action="promoted", last_challenger="m-abc")
    st = sig.status()
    assert st["state"] == "waiting" and st["every_s"] == 30.0 and st["next_at_ms"] is None
    assert st["last_action"] == "promoted" and st["updated_ms"] > 0
