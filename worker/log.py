"""structlog configuration: JSON lines to stdout (pods), readable console on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is *now*: a logger configured while stderr was swapped
    (a test's capture, a redirect) must not keep writing to the old, possibly closed, stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """structlog for our own events; the standard library's records (kafka-python, redis, Pillow)
    and Python warnings rendered the same way, so a log pipeline reading JSON lines gets no stray
    text. Libraries log from WARNING up (kafka-python's INFO is a line per connection), everything
    at ``debug``."""
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
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
    ))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler when called again (tests, subcommands); others (pytest's) stay.
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(logging.DEBUG if level.lower() == "debug" else max(logging.WARNING, logging.getLevelNamesMapping()[level.upper()]))
    logging.captureWarnings(True)


_HANDLER_NAME = "ganomaly-json"
