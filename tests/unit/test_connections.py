"""One way to reach the broker and Redis: every process reads the same env names into the same blocks,
hands kafka-python and redis-py the same arguments, and builds its clients in ganomaly/connections only."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from ganomaly.cli.flags import settings_from_args
from ganomaly.cli.main import build_parser
from ganomaly.connections import kafka as kafka_mod
from ganomaly.connections import redis as redis_mod
from ganomaly.connections.compose import blocks
from ganomaly.connections.kafka import FileTokenProvider, KafkaSettings, StaticTokenProvider, make_admin, make_consumer, make_producer
from ganomaly.connections.redis import RedisSettings, make_redis
from ganomaly.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
# the commands that talk to the broker or Redis, with what a parse needs besides the env
CONNECTED = {"worker": ["--model", "m"], "trainer": [], "replay": ["--model", "m"], "produce": [], "feedback": ["--verdict", "normal"],
             "models": ["list"], "alerts": [], "demo-summary": [], "bench stream": []}


@pytest.fixture
def shared_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for name in ("ca.pem", "client.pem", "client.key", "crl.pem"):
        (tmp_path / name).write_text("x")
    env = {"GANOMALY_BOOTSTRAP_SERVERS": "k1:9093,k2:9093", "GANOMALY_SECURITY_PROTOCOL": "SASL_SSL",
           "GANOMALY_SASL_MECHANISM": "SCRAM-SHA-512", "GANOMALY_SASL_USERNAME": "svc", "GANOMALY_SASL_PASSWORD": "pw",
           "GANOMALY_SSL_CAFILE": str(tmp_path / "ca.pem"), "GANOMALY_SSL_CERTFILE": str(tmp_path / "client.pem"),
           "GANOMALY_SSL_KEYFILE": str(tmp_path / "client.key"), "GANOMALY_SSL_PASSWORD": "kp", "GANOMALY_SSL_CHECK_HOSTNAME": "false",
           "GANOMALY_SSL_CRLFILE": str(tmp_path / "crl.pem"), "GANOMALY_REDIS_URL": "rediss://:rpw@r:6380/2",
           "GANOMALY_REDIS_PREFIX": "prod", "GANOMALY_REDIS_CA_FILE": str(tmp_path / "ca.pem"), "GANOMALY_MODEL_STORE": str(tmp_path),
           "GANOMALY_INPUT_TOPIC": "in", "GANOMALY_RESULTS_TOPIC": "res", "GANOMALY_FEEDBACK_TOPIC": "fb"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _settings(command: str) -> BaseSettings:
    parser, table = build_parser()
    ns = parser.parse_args([*command.split(), *CONNECTED[command]])
    return settings_from_args(table[command][0], ns)


def test_every_process_reads_the_same_connection_settings_from_one_env(shared_env: dict[str, str], tmp_path: Path) -> None:
    expected = {"bootstrap_servers": ["k1:9093", "k2:9093"], "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "svc", "sasl_plain_password": "pw", "ssl_cafile": str(tmp_path / "ca.pem"),
                "ssl_certfile": str(tmp_path / "client.pem"), "ssl_keyfile": str(tmp_path / "client.key"), "ssl_password": "kp",
                "ssl_check_hostname": False, "ssl_crlfile": str(tmp_path / "crl.pem")}
    kafka_users = redis_users = 0
    for command in CONNECTED:
        s = _settings(command)
        composed = blocks(type(s))
        assert composed, f"{command} composes no connection block"
        if "kafka" in composed:
            kafka_users += 1
            assert s.kafka.config() == expected, command  # type: ignore[attr-defined]
        if "redis" in composed:
            redis_users += 1
            r = s.redis  # type: ignore[attr-defined]
            assert (r.url(), r.redis_prefix, r.redis_ca_file) == ("rediss://:rpw@r:6380/2", "prod", tmp_path / "ca.pem"), command
    assert kafka_users == 7 and redis_users == 5
    # what several processes must agree on is read from one name
    assert _settings("worker").input_topic == _settings("produce").topic == _settings("replay").topic == "in"  # type: ignore[attr-defined]
    assert _settings("worker").results_topic == _settings("demo-summary").results_topic == "res"  # type: ignore[attr-defined]
    assert _settings("feedback").topic == _settings("trainer").feedback_topic == "fb"  # type: ignore[attr-defined]
    assert _settings("worker").model_store == _settings("trainer").model_store == _settings("models").model_store == tmp_path  # type: ignore[attr-defined]


def test_the_worker_gives_its_clients_its_id_and_a_flag_beats_the_env(shared_env: dict[str, str]) -> None:
    parser, table = build_parser()
    ns = parser.parse_args(["worker", "--model", "m", "--worker-id", "w-7", "--bootstrap-servers", "other:1", "--redis-prefix", "p2"])
    s = settings_from_args(table["worker"][0], ns)
    cfg = s.kafka_common().config()  # type: ignore[attr-defined]
    assert cfg["client_id"] == "w-7" and cfg["bootstrap_servers"] == ["other:1"] and cfg["sasl_mechanism"] == "SCRAM-SHA-512"
    assert s.redis.redis_prefix == "p2" and s.redis.url() == shared_env["GANOMALY_REDIS_URL"]  # type: ignore[attr-defined]


def test_the_factories_hand_kafka_python_and_redis_py_the_block_as_it_is(shared_env: dict[str, str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, dict[str, Any]]] = []
    for name in ("KafkaProducer", "KafkaConsumer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka_mod, name, lambda *a, _n=name, **kw: made.append((_n, kw)))
    monkeypatch.setattr(redis_mod.redis.Redis, "from_url", classmethod(lambda cls, url, **kw: made.append((url, kw))))
    cfg = KafkaSettings().config()
    make_producer(cfg, linger_ms=0)
    make_consumer(cfg, group_id=None)
    make_admin(cfg)
    make_redis(RedisSettings())
    for name, kw in made[:3]:
        assert {k: kw[k] for k in cfg if k != "client_id"} == {k: v for k, v in cfg.items() if k != "client_id"}, name
    url, kw = made[3]
    assert url == "rediss://:rpw@r:6380/2" and kw["ssl_ca_certs"] == shared_env["GANOMALY_REDIS_CA_FILE"]


def test_oauthbearer_takes_a_static_token_or_a_file_read_on_each_connection(tmp_path: Path) -> None:
    static = KafkaSettings.model_validate({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token": "t0"})
    provider = static.config()["sasl_oauth_token_provider"]
    assert isinstance(provider, StaticTokenProvider) and provider.token() == "t0"
    token = tmp_path / "token"
    token.write_text("t1\n")
    rotated = KafkaSettings.model_validate({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "OAUTHBEARER",
                                            "sasl_oauth_token_file": token}).config()["sasl_oauth_token_provider"]
    assert isinstance(rotated, FileTokenProvider) and rotated.token() == "t1"
    token.write_text("t2")  # rotated by whatever owns it
    assert rotated.token() == "t2"


@pytest.mark.parametrize(("args", "said"), [
    (["--security-protocol", "SASL_SSL"], "--security-protocol SASL_SSL needs --sasl-mechanism"),
    (["--sasl-mechanism", "PLAIN"], "--sasl-mechanism is for SASL_PLAINTEXT or SASL_SSL"),
    (["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "u"],
     "SCRAM-SHA-256 needs --sasl-username and --sasl-password"),
    (["--security-protocol", "SASL_SSL", "--sasl-mechanism", "OAUTHBEARER"], "OAUTHBEARER needs one of --sasl-oauth-token"),
    (["--security-protocol", "SSL", "--ssl-cafile", "/no/such/ca.pem"], "--ssl-cafile (env GANOMALY_SSL_CAFILE): Path does not point to a file"),
    (["--security-protocol", "TLS"], "invalid choice: 'TLS'"),
])
def test_bad_security_settings_are_one_error_naming_the_flag(args: list[str], said: str, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for k in ("GANOMALY_SECURITY_PROTOCOL", "GANOMALY_SASL_MECHANISM", "GANOMALY_SSL_CAFILE"):
        monkeypatch.delenv(k, raising=False)
    parser, table = build_parser()
    try:
        ns = parser.parse_args(["replay", "--model", "m", *args])
        settings_from_args(table["replay"][0], ns)
    except SystemExit:
        assert said in capsys.readouterr().err
    except UserError as e:
        assert said in str(e), str(e)
        assert "\n" not in str(e)
    else:
        raise AssertionError(f"{args} was accepted")


_CLIENTS = {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "Redis", "StrictRedis", "from_url"}


def test_no_module_outside_ganomaly_connections_builds_a_kafka_or_redis_client() -> None:
    """A client built elsewhere would miss the security settings (before, only the worker carried SASL)."""
    found = []
    for package in ("ganomaly", "worker", "trainer", "replay", "producers"):
        for path in (ROOT / package).rglob("*.py"):
            if path.parent == ROOT / "ganomaly" / "connections":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
                    if name in _CLIENTS:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []


def test_a_child_process_gets_the_same_settings_through_its_env(shared_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """bench stream's producer subprocess: flags given to the parent reach the child, secrets off its command line."""
    given = KafkaSettings(bootstrap_servers="flag:1", sasl_username="other")
    child_env = given.as_env()
    for k in shared_env:
        monkeypatch.delenv(k)
    for k, v in child_env.items():
        monkeypatch.setenv(k, v)
    assert KafkaSettings().config() == given.config()
    assert child_env["GANOMALY_SSL_CHECK_HOSTNAME"] == "false" and child_env["GANOMALY_SASL_PASSWORD"] == "pw"


def test_an_old_per_process_name_of_a_shared_setting_is_one_error_naming_the_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANOMALY_TRAINER_BOOTSTRAP_SERVERS", "k:9092")
    with pytest.raises(UserError, match=r"^invalid settings: renamed environment variables \(GANOMALY_TRAINER_BOOTSTRAP_SERVERS is now "
                                        r"GANOMALY_BOOTSTRAP_SERVERS\)"):
        _settings("trainer")
    _settings("worker")  # another process's old name is not this one's business
    monkeypatch.setenv("GANOMALY_REPLAY_TOPIC", "images")
    with pytest.raises(UserError, match="GANOMALY_REPLAY_TOPIC is now GANOMALY_INPUT_TOPIC"):
        _settings("replay")
