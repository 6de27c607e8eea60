"""Bounded waits for the Kafka broker and Redis while a process starts.

A process started before its broker or Redis (a compose stack coming up in any order, a
rolling restart of the cluster) waits for them, one line per attempt saying what it waits
for, until ``connect_timeout_s`` has passed since start-up began; then it gives up with one
message naming the address and the last error, so that an orchestrator shows a crash loop
with its reason instead of a process that hangs. A stop request (SIGTERM) ends the wait at
once. Outages *after* start-up are another matter: the worker waits those out for ever
(``worker.retry``), since nothing it holds may be dropped.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import urlsplit

import redis
import structlog
from kafka.errors import AuthorizationError, IncompatibleBrokerVersion, KafkaConfigurationError, KafkaError, SaslAuthenticationFailedError
from redis.backoff import NoBackoff
from redis.retry import Retry

from ganomaly.errors import UserError

if TYPE_CHECKING:
    from ganomaly.connections.kafka import KafkaSettings
    from ganomaly.connections.redis import RedisSettings

T = TypeVar("T")
log = structlog.get_logger("connect")

# A refused or unreachable port answers at once, but a silently dropped one would hold a
# probe for its whole timeout: keep each probe short, so that a stop request is seen promptly.
_PROBE_S = 2.0
# kafka-python bootstraps inside its client constructors, which nothing can interrupt; each
# attempt gets at most this long (a broker that listens answers a bootstrap in milliseconds).
_BOOTSTRAP_ATTEMPT_S = 5.0
_FIRST_BACKOFF_S = 0.25
# Errors no amount of waiting mends: said at once rather than after the whole bound.
_KAFKA_PERMANENT: tuple[type[BaseException], ...] = (KafkaConfigurationError, IncompatibleBrokerVersion, SaslAuthenticationFailedError,
                                                     AuthorizationError)
_REDIS_PERMANENT: tuple[type[BaseException], ...] = (redis.AuthenticationError, redis.ResponseError)


class ConnectError(UserError):
    """Start-up could not connect to the broker or Redis; the message is the one line to show."""


class ConnectTimeout(ConnectError):
    """The broker or Redis did not answer within the start-up bound."""


class ConnectRefused(ConnectError):
    """The broker or Redis answered with an error no waiting mends (credentials, permissions, configuration)."""


class _KafkaAttemptError(Exception):
    """A failed client build, with kafka-python's reason added to its error."""


class StartupStopped(Exception):
    """A stop was requested (SIGTERM) while start-up was waiting: nothing was begun, exit cleanly."""


@dataclass
class StartupWait:
    """One start-up's budget, shared by every dependency it waits for, and the event that ends it early."""

    timeout_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    backoff_max_s: float = 5.0
    attempt_level: int = logging.INFO  # the worker says it at WARNING: a service waiting on a dependency
    started: float | None = None  # the first wait's start: loading a model beforehand costs none of the bound
    waiting_for: str | None = None  # what is being waited for now (the worker's /readyz shows it)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def remaining(self) -> float:
        return self.timeout_s - self.elapsed()


def _describe(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, _KafkaAttemptError | _TlsRefused):
        return text
    name = type(e).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def _until_ready(wait: StartupWait, attempt: Callable[[], T], *, event: str, name: str, where: str, fields: dict[str, Any],
                 retry_on: tuple[type[BaseException], ...], permanent: tuple[type[BaseException], ...]) -> T:
    if wait.started is None:
        wait.started = time.monotonic()
    delay = _FIRST_BACKOFF_S
    n = 0
    wait.waiting_for = f"{name} at {where}"
    try:
        while True:
            if wait.stop.is_set():
                raise StartupStopped(name)
            n += 1
            try:
                result = attempt()
            except permanent as e:
                msg = f"{name} at {where} refused the connection: {_describe(e)}"
                raise ConnectRefused(msg) from None
            except retry_on as e:
                error = _describe(e)
                remaining = wait.remaining()
                if remaining <= 0:
                    msg = f"cannot reach {name} at {where} after {wait.elapsed():.0f} s ({error})"
                    raise ConnectTimeout(msg) from None
                pause = min(delay, wait.backoff_max_s, remaining)
                log.log(wait.attempt_level, event, **fields, attempt=n, elapsed_s=round(wait.elapsed(), 1), timeout_s=wait.timeout_s,
                        retry_in_s=round(pause, 2), error=error)
                if wait.stop.wait(pause):
                    raise StartupStopped(name) from None
                delay *= 2
                continue
            if n > 1:  # the waiting lines above need their end said
                log.info(f"{event.removeprefix('waiting_for_')}_reachable", **fields, attempts=n, elapsed_s=round(wait.elapsed(), 1))
            return result
    finally:
        wait.waiting_for = None


class _KafkaLogCapture(logging.Handler):
    """Holds kafka-python's records back while one client is built, so that a failed attempt reads
    as our one line (with kafka-python's own reason in it) instead of its five per connection.

    At ``debug`` everything goes through as usual. Records of other kafka-python clients in the
    process are held back too for this moment (milliseconds when the broker answers).
    """

    _CONN_REPR = re.compile(r"^<[^>]*>:\s*")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger("kafka")
        self._active = not logging.getLogger().isEnabledFor(logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Self:
        if self._active:
            self._logger.addHandler(self)
            self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            self._logger.propagate = True
            self._logger.removeHandler(self)

    def reason(self) -> str | None:
        """kafka-python's last word on a connection (the bootstrap loop's own lines only repeat it)."""
        for record in reversed(self.records):
            if not record.name.startswith("kafka.net.manager"):
                return self._CONN_REPR.sub("", record.getMessage())
        return None


def _host_port(server: str, default_port: int) -> tuple[str, int]:
    host, sep, port = server.strip().rpartition(":")
    if not sep or "]" in port:  # no port given (or a bare IPv6 address)
        host, port = server.strip(), str(default_port)
    return host.strip("[]"), int(port)


def _tls_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The checks kafka-python makes of the broker's certificate, for the probe below."""
    ctx = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    ctx.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile is not None:
        ctx.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
                            kafka.ssl_password.get_secret_value() if kafka.ssl_password else None)
    if kafka.ssl_crlfile is not None:
        ctx.load_verify_locations(str(kafka.ssl_crlfile))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


class _TlsRefused(Exception):
    """The broker's certificate did not verify: waiting mends nothing."""


def _probe(kafka: KafkaSettings, timeout_s: float) -> None:
    """Succeeds when one bootstrap server accepts a connection (and, over TLS, a handshake); else raises the last error.

    Only a broker that listens is handed to kafka-python: its clients log four lines for
    every failed connection and keep a thread per failed constructor. Over TLS a certificate
    that does not verify is said at once, with what to give, instead of after the whole bound.
    """
    last: OSError | None = None
    ctx = _tls_context(kafka) if kafka.tls() else None
    for server in kafka.servers():
        try:
            host, port = _host_port(server, 9092)
        except ValueError as e:
            msg = f"bad bootstrap server {server!r}: expected HOST:PORT"
            raise UserError(msg) from e
        try:
            with socket.create_connection((host, port), timeout=timeout_s) as sock:
                if ctx is not None:
                    try:
                        ctx.wrap_socket(sock, server_hostname=host).close()
                    except ssl.SSLCertVerificationError as e:
                        hint = "" if kafka.ssl_cafile else "; give the CA that signed it with --ssl-cafile"
                        msg = f"TLS: the broker's certificate did not verify ({e.verify_message}){hint}"
                        raise _TlsRefused(msg) from None
                return
        except OSError as e:
            last = e
    assert last is not None
    raise last


def connect_kafka(wait: StartupWait, kafka: KafkaSettings, build: Callable[[dict[str, Any]], T]) -> T:
    """``build(config)``, once the broker answers: ``config`` is ``kafka.config()`` with a bootstrap
    timeout that fits the start-up bound. Use it for every client made at start-up (producer, consumer, admin)."""
    servers = kafka.servers()
    common = kafka.config()

    def attempt() -> T:
        _probe(kafka, max(0.1, min(_PROBE_S, wait.remaining())))
        bootstrap_s = max(1.0, min(_BOOTSTRAP_ATTEMPT_S, wait.remaining()))
        with _KafkaLogCapture() as held:
            try:
                return build({**common, "bootstrap_timeout_ms": int(bootstrap_s * 1000)})
            except KafkaError as e:
                if isinstance(e, _KAFKA_PERMANENT):
                    raise
                reason = held.reason()
                raise _KafkaAttemptError(_describe(e) + (f"; {reason}" if reason else "")) from e

    return _until_ready(wait, attempt, event="waiting_for_kafka", name="the Kafka broker", where=",".join(servers),
                        fields={"bootstrap": ",".join(servers)}, retry_on=(OSError, _KafkaAttemptError),
                        permanent=(*_KAFKA_PERMANENT, _TlsRefused))


def wait_for_kafka(wait: StartupWait, kafka: KafkaSettings) -> None:
    """Return once the broker answers a bootstrap (for commands whose clients are made elsewhere)."""
    from ganomaly.connections.kafka import make_admin

    connect_kafka(wait, kafka, lambda cfg: make_admin(cfg).close())


def redis_address(url: str) -> str:
    """host:port of a Redis URL, without its credentials (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    except ValueError:
        return "(unparsable URL)"


def _cert_not_verified(e: BaseException) -> bool:
    """redis-py wraps the handshake's SSLCertVerificationError in a ConnectionError (sometimes as text only)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(e)


def wait_for_redis(wait: StartupWait, settings: RedisSettings) -> None:
    """Return once Redis answers a PING."""
    from ganomaly.connections.redis import make_redis

    where = redis_address(settings.url())

    def attempt() -> None:
        timeout = max(0.1, min(_PROBE_S, wait.remaining()))
        # no retries inside redis-py: its default backs off for seconds, hiding attempts and delaying a stop
        client = make_redis(settings, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        try:
            client.ping()
        except redis.ConnectionError as e:
            if _cert_not_verified(e):
                hint = "" if settings.redis_ca_file else "; give the CA that signed it with --redis-ca-file"
                msg = f"TLS: Redis's certificate did not verify{hint}"
                raise _TlsRefused(msg) from None
            raise
        finally:
            client.close()

    try:
        _until_ready(wait, attempt, event="waiting_for_redis", name="Redis", where=where, fields={"redis": where},
                     retry_on=(redis.ConnectionError, redis.TimeoutError, OSError), permanent=(*_REDIS_PERMANENT, _TlsRefused))
    except ValueError as e:  # from_url: not a Redis URL
        msg = f"bad Redis URL ({e})"
        raise UserError(msg) from None
