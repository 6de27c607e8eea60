"""The console's credentials and sessions: users files, constant-time token lookup, signed cookies, CSRF, safe redirects."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.auth import Auth, Operator, read_users
from console.pages import _safe_next
from ganomaly.errors import UserError

TOKEN_A, TOKEN_B = "a" * 20, "b-token-0123456789"


def test_a_users_file_maps_each_token_to_its_operator(tmp_path: Path) -> None:
    f = tmp_path / "users"
    f.write_text(f"# operators\nalice:{TOKEN_A}\n\n bob : {TOKEN_B} \n")
    assert read_users(f) == {TOKEN_A: "alice", TOKEN_B: "bob"}


@pytest.mark.parametrize(("text", "why"), [("alice\n", "expected 'name:token'"), ("alice:short\n", "at least 16"), ("# nobody\n", "names no operator"),
                                           (f":{TOKEN_A}\n", "expected 'name:token'")])
def test_a_bad_users_file_is_one_user_error_naming_the_line(tmp_path: Path, text: str, why: str) -> None:
    f = tmp_path / "users"
    f.write_text(text)
    with pytest.raises(UserError, match=why):
        read_users(f)
    with pytest.raises(UserError, match="does not exist"):
        read_users(tmp_path / "missing")


def test_sessions_are_signed_expire_and_carry_a_csrf_token() -> None:
    auth = Auth({TOKEN_A: "alice"}, "k" * 32, max_age_s=3600)
    assert auth.operator_for_token(TOKEN_A) == "alice"
    assert auth.operator_for_token(TOKEN_A + "x") is None and auth.operator_for_token("") is None
    cookie = auth.session_cookie("alice")
    op = auth.from_cookie(cookie)
    assert op is not None and op.name == "alice" and len(op.csrf) >= 24
    assert auth.csrf_ok(op, op.csrf) and not auth.csrf_ok(op, None) and not auth.csrf_ok(op, op.csrf[:-1] + "x")
    assert auth.from_cookie(cookie[:-2] + "xx") is None  # tampered
    assert Auth({TOKEN_A: "alice"}, "other-key" * 4, 3600).from_cookie(cookie) is None  # another replica's key
    assert Auth({TOKEN_A: "alice"}, "k" * 32, max_age_s=-1).from_cookie(cookie) is None  # expired


def test_bearer_clients_need_no_csrf_token_and_unknown_bearers_are_nobody() -> None:
    auth = Auth({TOKEN_B: "ci"}, "k" * 32, 3600)
    op = auth.from_bearer(f"Bearer {TOKEN_B}")
    assert op == Operator("ci", "") and auth.csrf_ok(op, None)
    assert auth.from_bearer("Bearer nope-nope-nope-nope") is None and auth.from_bearer(f"Basic {TOKEN_B}") is None


@pytest.mark.parametrize(("value", "safe"), [("/alerts/abc", "/alerts/abc"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
                                             ("/\\evil.example", "/"), (None, "/"), ("", "/")])
def test_after_login_only_our_own_paths(value: str | None, safe: str) -> None:
    assert _safe_next(value) == safe
