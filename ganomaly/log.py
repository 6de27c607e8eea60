"""structlog configuration: JSON lines to stderr (pods collect both streams), readable console on a TTY."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time

import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is *now*: a logger configured while stderr was swapped
    (a test's capture, a redirect) must not keep writing to the old, possibly closed, stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _RepeatFilter(logging.Filter):
    """Lets through one record per logger and message shape (numbers aside) every ``window_s``.

    kafka-python logs four lines for every failed connection, about fifty in thirty seconds
    while a broker is away, and our own waiting and retry lines already say what is waited
    for; the record let through after a quiet spell carries ``repeats_suppressed``, the
    number of its kind left out since the last one.
    """

    _NUMBERS = re.compile(r"\d+(\.\d+)?")
    _MAX_SHAPES = 1000  # shapes are few; a bound all the same, whatever a library logs

    def __init__(self, prefixes: tuple[str, ...], window_s: float) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, self._NUMBERS.sub("#", str(record.msg)))
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.window_s:
                self._seen[key] = (last, suppressed + 1)
                return False
            if len(self._seen) >= self._MAX_SHAPES:
                self._seen.clear()
            self._seen[key] = (now, 0)
        if suppressed:
            record.repeats_suppressed = suppressed
        return True


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """structlog for our own events; the standard library's records (kafka-python, redis, Pillow)
    and Python warnings rendered the same way, so a log pipeline reading JSON lines gets no stray
    text. Libraries log from WARNING up (kafka-python's INFO is a line per connection), and
    kafka-python's repeats at most once a minute per kind; everything at ``debug``."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,  # first: per-message topic/partition/offset bindings
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())  # type: ignore[arg-type]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(allow=("repeats_suppressed",))],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
    ))
    handler.set_name(_HANDLER_NAME)
    if level.lower() != "debug":  # debug asks for everything
        handler.addFilter(_RepeatFilter(("kafka",), window_s=_LIBRARY_REPEAT_WINDOW_S))
    root = logging.getLogger()
    # Replace only our own handler when called again (tests, subcommands); others (pytest's) stay.
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(logging.DEBUG if level.lower() == "debug" else max(logging.WARNING, logging.getLevelNamesMapping()[level.upper()]))
    logging.captureWarnings(True)


_HANDLER_NAME = "ganomaly-json"
_LIBRARY_REPEAT_WINDOW_S = 60.0
