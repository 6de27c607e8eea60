"""Retry with capped exponential backoff until success or abort: outages wait, never skip."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("retry")


class Aborted(Exception):
    """The worker is shutting down past its drain budget; the work stays unacknowledged."""


def retry_until_done(
    fn: Callable[[], T],
    *,
    what: str,
    abort: threading.Event,
    retry_on: tuple[type[BaseException], ...],
    backoff_max_s: float = 5.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    delay, attempt = 0.05, 0
    while True:
        attempt += 1
        try:
            return fn()
        except retry_on as e:
            if abort.is_set():
                raise Aborted(what) from e
            if on_retry:
                on_retry(e)
            log.warning("retrying", what=what, attempt=attempt, error=f"{type(e).__name__}: {e}", backoff_s=round(delay, 2))
            if abort.wait(delay):
                raise Aborted(what) from e
            delay = min(delay * 2, backoff_max_s)
