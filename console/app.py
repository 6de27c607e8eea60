"""The console's web application: routes joined to the services they use."""

from __future__ import annotations

import redis
import structlog
from kafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from console import api, pages
from console.web import HERE, SecurityHeaders, Services, operator, render


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return PlainTextResponse("not found", status_code=404)
    return render(request, operator(request), "error.html", {"title": "Not found", "message": "no such page"}, status=404)


log = structlog.get_logger("console")


async def _backend_down(request: Request, exc: Exception) -> Response:
    """Redis or the broker away: say so (503) instead of a bare 500; the page works again when they are back."""
    what = "Redis" if isinstance(exc, redis.RedisError) else "the Kafka broker"
    log.warning("backend_unavailable", path=request.url.path, backend=what, error=str(exc)[:200])
    message = f"{what} is not answering ({type(exc).__name__}); the console retries on the next request"
    if request.url.path.startswith("/api/") or request.url.path.endswith(".png"):
        return JSONResponse({"error": message}, status_code=503)
    return render(request, operator(request), "error.html", {"title": "Unavailable", "message": message}, status=503)


def create_app(services: Services) -> Starlette:
    routes = [
        Route("/healthz", healthz),
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/", pages.alerts_page),
        Route("/alerts/{fingerprint:str}", pages.alert_page, methods=["GET", "POST"]),
        Route("/alerts/{fingerprint:str}/{kind:str}.png", api.alert_image),
        Route("/alerts/{fingerprint:str}/map.npy", api.raw_map),
        Route("/results/{result_id:str}", api.by_result_id),
        Route("/models", pages.models_page),
        Route("/models/rollback", pages.rollback_page, methods=["GET", "POST"]),
        Route("/models/retrain", pages.retrain, methods=["POST"]),
        Route("/models/threshold", pages.threshold_page, methods=["GET", "POST"]),
        Route("/models/{version:str}/promote", pages.promote_page, methods=["GET", "POST"]),
        Route("/fleet", pages.fleet_page),
        # the names an operator may type for what the menu calls Alerts and Threshold
        Route("/alerts", lambda request: RedirectResponse("/", status_code=308)),
        Route("/threshold", lambda request: RedirectResponse("/models/threshold", status_code=308)),
        Route("/api/alerts", api.alerts_json),
        Route("/api/events", api.events),
        Route("/api/review", api.review, methods=["POST"]),
        Route("/api/review/bulk", api.review_bulk, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], exception_handlers={404: _not_found, redis.RedisError: _backend_down, KafkaError: _backend_down})
    app.state.services = services
    return app
