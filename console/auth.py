"""Who may use the console, and proof that a state-changing request came from its own pages.

Operators log in with a token (``name:token`` lines from a mounted Secret, or one shared token);
the session is a signed, HttpOnly, SameSite=Strict cookie holding the operator's name and a
per-session CSRF token. Every POST must carry that CSRF token (form field or header) unless it
authenticates with ``Authorization: Bearer`` (a header a browser never adds on its own). Tokens
are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ganomaly.errors import UserError

COOKIE = "ganomaly_console"


@dataclass(frozen=True)
class Operator:
    name: str
    csrf: str  # empty for bearer-token clients: they need none


def read_users(path: Path) -> dict[str, str]:
    """``name:token`` lines (blank lines and ``#`` comments skipped) -> token -> name."""
    if not path.is_file():
        msg = f"users file {path} does not exist"
        raise UserError(msg)
    users: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        if not sep or not name.strip() or len(token.strip()) < 16:
            msg = f"{path}:{n}: expected 'name:token' with a token of at least 16 characters"
            raise UserError(msg)
        users[token.strip()] = name.strip()
    if not users:
        msg = f"users file {path} names no operator"
        raise UserError(msg)
    return users


class Auth:
    def __init__(self, tokens: dict[str, str], secret_key: str, max_age_s: int) -> None:
        self._tokens = tokens  # token -> operator name
        self._signer = URLSafeTimedSerializer(secret_key, salt="ganomaly-console-session")
        self.max_age_s = max_age_s

    def operator_for_token(self, token: str) -> str | None:
        """The operator a token belongs to; every known token is compared, so timing says nothing."""
        found = None
        for known, name in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found

    def session_cookie(self, name: str) -> str:
        return self._signer.dumps({"user": name, "csrf": secrets.token_urlsafe(24)})

    def from_cookie(self, cookie: str | None) -> Operator | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("user"), str) or not isinstance(data.get("csrf"), str):
            return None
        return Operator(data["user"], data["csrf"])

    def from_bearer(self, header: str | None) -> Operator | None:
        if not header or not header.lower().startswith("bearer "):
            return None
        name = self.operator_for_token(header[7:].strip())
        return Operator(name, "") if name else None

    @staticmethod
    def csrf_ok(op: Operator, sent: str | None) -> bool:
        if not op.csrf:  # bearer clients
            return True
        return sent is not None and hmac.compare_digest(op.csrf.encode(), sent.encode())
