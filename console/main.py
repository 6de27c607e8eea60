"""``ganomaly console``: start the operators' web console against the shared broker, Redis and model store."""

from __future__ import annotations

import secrets
import socket

import structlog
import uvicorn

from console.alerts import AlertBoard
from console.app import create_app
from console.auth import Auth, read_users
from console.fleet import Fleet
from console.images import ImageService
from console.models_view import ModelsView
from console.review import Reviewer
from console.settings import ConsoleSettings
from console.web import Services
from ganomaly.connections.kafka import make_admin, make_consumer, make_producer
from ganomaly.connections.redis import make_redis
from ganomaly.connections.startup import StartupWait, connect_kafka, wait_for_redis
from ganomaly.errors import UserError
from ganomaly.registry import ModelStore, RedisPointer, Registry
from ganomaly.retrain import TrainerSignals
from ganomaly.thresholds import OperatorThresholds

log = structlog.get_logger("console")
# Reading one record back asks for a partition's end first, where a fetch finds nothing new and the broker
# holds it for fetch_max_wait_ms (500 by default): that wait was most of a map's serving time.
FETCH_WAIT_MS = 20


def build_services(s: ConsoleSettings, tokens: dict[str, str]) -> Services:
    """Every client the console uses, built once (waiting for the broker and Redis within the start-up bound)."""
    if not s.model_store.is_dir():
        msg = f"model store {s.model_store} does not exist; check --model-store (env GANOMALY_MODEL_STORE)"
        raise UserError(msg)
    wait = StartupWait(s.connect_timeout_s)
    wait_for_redis(wait, s.redis)
    client = make_redis(s.redis)
    cfg = s.kafka.config()
    producer = connect_kafka(wait, s.kafka, lambda c: make_producer(c))
    board = AlertBoard(client, s.redis.redis_prefix, recent=s.recent_alerts)
    store = ModelStore(s.model_store)
    registry = Registry(store, RedisPointer(client, s.redis.redis_prefix))
    secret = s.secret_key.get_secret_value() if s.secret_key else secrets.token_urlsafe(32)
    return Services(
        auth=Auth(tokens, secret, int(s.session_hours * 3600)),
        board=board,
        reviewer=Reviewer(board, producer, s.feedback_topic),
        images=ImageService(lambda: make_consumer(cfg, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS), store, device=s.device,
                            max_image_bytes=s.max_image_bytes),
        models=ModelsView(registry, OperatorThresholds(client, s.redis.redis_prefix), TrainerSignals(client, s.redis.redis_prefix), s.kafka,
                          results_topic=s.results_topic, shadow_topic=s.shadow_topic),
        fleet=Fleet(client, s.redis.redis_prefix, group=s.workers_group, admin=make_admin(cfg),
                    consumer=make_consumer(cfg, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS)),
        secure_cookies=s.kafka.security_protocol != "PLAINTEXT" and s.host not in ("127.0.0.1", "localhost"),
    )


def credentials(s: ConsoleSettings) -> tuple[dict[str, str], str | None]:
    """token -> operator, and the one-time demo token when one was made."""
    tokens: dict[str, str] = {}
    if s.users_file is not None:
        tokens |= read_users(s.users_file)
    if s.token is not None:
        tokens[s.token.get_secret_value()] = "operator"
    demo = None
    if s.demo_token:
        demo = secrets.token_urlsafe(18)
        tokens[demo] = "demo"
    return tokens, demo


def run_console(s: ConsoleSettings) -> int:
    import torch

    # One image per map: intra-op threads buy nothing at this size, and beside busy workers on the same
    # cores they cost a lot (a 32x32 map took 0.45 s with two threads on a loaded 2-core machine, 15 ms with one).
    # Requests run side by side on the server's thread pool instead.
    torch.set_num_threads(1)
    tokens, demo = credentials(s)
    sock = socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((s.host, s.port))  # before anything else: a taken port is one error line, not a log of uvicorn's
    except OSError as e:
        msg = f"cannot listen on {s.host}:{s.port}: {e.strerror or e}"
        raise UserError(msg) from None
    app = create_app(build_services(s, tokens))
    shown = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    if demo is not None:
        print(f"console: http://{shown}:{s.port}/login?token={demo}", flush=True)
    else:
        print(f"console: http://{shown}:{s.port}/", flush=True)
    log.info("console_started", host=s.host, port=s.port, operators=len(set(tokens.values())))
    config = uvicorn.Config(app, host=s.host, port=s.port, log_level="warning", access_log=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
