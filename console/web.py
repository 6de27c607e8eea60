"""What every route shares: the services, who is asking, the CSRF check, templates, and the security headers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.alerts import AlertBoard
from console.auth import COOKIE, Auth, Operator
from console.fleet import Fleet
from console.images import ImageService
from console.models_view import ModelsView
from console.review import Reviewer

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescaping on for .html: record fields are hostile
MAX_BODY = 1024 * 1024  # forms and JSON verdicts are small; nothing larger is read


@dataclass
class Services:
    auth: Auth
    board: AlertBoard
    reviewer: Reviewer
    images: ImageService
    models: ModelsView
    fleet: Fleet
    secure_cookies: bool = False


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def operator(request: Request) -> Operator | None:
    s = services(request)
    return s.auth.from_bearer(request.headers.get("authorization")) or s.auth.from_cookie(request.cookies.get(COOKIE))


Handler = Callable[[Request, Operator], Awaitable[Response]]


def page(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An HTML route for logged-in operators: others are sent to the login page."""
    async def route(request: Request) -> Response:
        op = operator(request)
        if op is None:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if request.method == "POST" and not await _csrf(request, op):
            return render(request, op, "error.html", {"title": "Forbidden", "message": "the form's CSRF token is missing or wrong: "
                                                      "reload the page and try again"}, status=403)
        return await fn(request, op)
    return route


def api(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A JSON route: 401 without a session or bearer token, 403 for a POST without the CSRF token."""
    async def route(request: Request) -> Response:
        op = operator(request)
        if op is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        if request.method == "POST" and not await _csrf(request, op):
            return JSONResponse({"error": "missing or wrong CSRF token (X-CSRF-Token header)"}, status_code=403)
        return await fn(request, op)
    return route


async def _csrf(request: Request, op: Operator) -> bool:
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    return services(request).auth.csrf_ok(op, sent)


def render(request: Request, op: Operator | None, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
    return templates.TemplateResponse(request, name, {"op": op, "csrf": op.csrf if op else "", **ctx}, status_code=status)


def not_found(request: Request, op: Operator, what: str) -> Response:
    return render(request, op, "error.html", {"title": "Not found", "message": what}, status=404)


async def json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class SecurityHeaders:
    """Strict headers on every response, and a bound on request bodies (413 above ``MAX_BODY``)."""

    HEADERS: tuple[tuple[bytes, bytes], ...] = (
        (b"content-security-policy", (b"default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
                                      b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'")),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-store"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await JSONResponse({"error": f"request body above {MAX_BODY} bytes"}, status_code=413)(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *[(k, v) for k, v in self.HEADERS if k not in have]]
            await send(message)

        await self.app(scope, receive, with_headers)
