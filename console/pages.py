"""The HTML pages: login, alerts, one alert, models (promote, roll back, thresholds) and the fleet."""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.alerts import STATUSES, AlertFilter
from console.auth import COOKIE, Operator
from console.images import VERSION
from console.review import ReviewBusy
from console.web import not_found, operator, page, render, services
from ganomaly.errors import ArtifactError, UserError
from ganomaly.thresholds import check_threshold

SINCE_CHOICES = (0, 15, 60, 240, 1440)


def _safe_next(value: str | None) -> str:
    # only a path of ours: "//evil.example" or "https://..." would send the operator elsewhere after logging in
    return value if value and value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


async def login(request: Request) -> Response:
    s = services(request)
    token = request.query_params.get("token")
    nxt = _safe_next(request.query_params.get("next"))
    if request.method == "POST":
        form = await request.form()
        token = str(form.get("token") or "")
        nxt = _safe_next(str(form.get("next") or "/"))
    if token is None:
        if operator(request):
            return RedirectResponse(nxt, status_code=303)
        return render(request, None, "login.html", {"next": nxt})
    name = s.auth.operator_for_token(token)
    if name is None:
        return render(request, None, "login.html", {"next": nxt, "error": "that token is not valid"}, status=401)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, s.auth.session_cookie(name), max_age=s.auth.max_age_s, httponly=True, samesite="strict",
                    secure=s.secure_cookies)
    return resp


@page
async def logout(request: Request, op: Operator) -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


def _filter(request: Request) -> AlertFilter:
    q = request.query_params
    status = q.get("status", "all")
    try:
        since = int(q.get("since", "0"))
    except ValueError:
        since = 0
    return AlertFilter(status=status if status in (*STATUSES, "all") else "all", source=q.get("source", "")[:200],
                       model_version=q.get("model_version", "")[:200], since_min=since if since in SINCE_CHOICES else 0)


@page
async def alerts_page(request: Request, op: Operator) -> Response:
    flt = _filter(request)
    listing = await run_in_threadpool(services(request).board.listing, flt)
    return render(request, op, "alerts.html", {"rows": [a.row() for a in listing.alerts], "listing": listing, "flt": flt,
                                                "statuses": ("all", *STATUSES), "since_choices": SINCE_CHOICES})


@page
async def alert_page(request: Request, op: Operator) -> Response:
    s = services(request)
    fp = request.path_params["fingerprint"]
    a = await run_in_threadpool(s.board.get, fp)
    if a is None:
        return not_found(request, op, f"no alert {fp[:40]} (unknown, or older than the alert stream keeps)")
    error = None
    if request.method == "POST":
        form = await request.form()
        try:
            await run_in_threadpool(s.reviewer.review, [a], str(form.get("verdict", "")), op.name, str(form.get("note") or ""))
        except ValueError as e:
            error = str(e)
        except ReviewBusy:
            error = "another review of this alert is in progress: try again"
        if error is None:
            return RedirectResponse(f"/alerts/{fp}", status_code=303)
        a = await run_in_threadpool(s.board.get, fp)
    return render(request, op, "alert.html", {"a": a, "row": a.row() if a else None, "result": a.result if a else None, "error": error})


@page
async def models_page(request: Request, op: Operator) -> Response:
    s = services(request)
    ov = await run_in_threadpool(s.models.overview)
    shadow = await run_in_threadpool(s.models.shadow)
    return render(request, op, "models.html", {"ov": ov, "shadow": shadow, "now_ms": int(time.time() * 1000)})


@page
async def promote_page(request: Request, op: Operator) -> Response:
    s = services(request)
    version = request.path_params["version"]
    known = {r["version"] for r in (await run_in_threadpool(s.models.registry.list))["versions"]}
    if not VERSION.match(version) or version not in known:
        return not_found(request, op, f"no model version {version[:40]} in the store")
    if request.method == "GET":
        return render(request, op, "confirm.html", {"title": f"Promote {version}?", "action": f"/models/{version}/promote",
                                                     "button_id": "confirm-promote", "button": f"Promote {version}",
                                                     "message": "Every worker switches to this version at its next poll."})
    try:
        await run_in_threadpool(s.models.registry.promote, version, f"console:{op.name}")
    except (UserError, ArtifactError) as e:
        return render(request, op, "error.html", {"title": "Not promoted", "message": str(e)}, status=409)
    return RedirectResponse("/models", status_code=303)


@page
async def rollback_page(request: Request, op: Operator) -> Response:
    s = services(request)
    if request.method == "GET":
        prev = await run_in_threadpool(s.models.registry.pointer.previous)
        if prev is None:
            return render(request, op, "error.html", {"title": "Nothing to roll back to", "message": "the registry has no previous version"},
                          status=409)
        return render(request, op, "confirm.html", {"title": f"Roll back to {prev.version}?", "action": "/models/rollback",
                                                     "button_id": "confirm-rollback", "button": f"Roll back to {prev.version}",
                                                     "message": "Every worker switches back at its next poll."})
    try:
        await run_in_threadpool(s.models.registry.rollback, f"console:{op.name}")
    except UserError as e:
        return render(request, op, "error.html", {"title": "Not rolled back", "message": str(e)}, status=409)
    return RedirectResponse("/models", status_code=303)


@page
async def retrain(request: Request, op: Operator) -> Response:
    """Ask the trainer for a run now (a trainer running with --every takes it within a second; a CronJob at its next run)."""
    await run_in_threadpool(services(request).models.trainer.request, f"console:{op.name}")
    return RedirectResponse("/models", status_code=303)


def _number(raw: Any) -> float | None:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v >= 0 else None


@page
async def threshold_page(request: Request, op: Operator) -> Response:
    s = services(request)
    cur = await run_in_threadpool(s.models.registry.current)
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        params = dict(await request.form())
    version = str(params.get("version") or (cur.version if cur else ""))
    known = {r["version"] for r in (await run_in_threadpool(s.models.registry.list))["versions"]}
    if version not in known:
        return not_found(request, op, "no current model in the registry" if not version else f"no model version {version[:40]} in the store")
    candidate = _number(params.get("candidate"))
    error = None if candidate is not None or "candidate" not in params else "the candidate threshold must be a number >= 0"
    cal = await run_in_threadpool(s.models.calibration, version)
    note = str(params.get("note") or "")[:500] or None
    if request.method == "POST" and params.get("action") == "clear":
        await run_in_threadpool(lambda: s.models.thresholds.clear(version, by=f"console:{op.name}", calibrated=cal.threshold, note=note))
        return RedirectResponse(f"/models/threshold?version={version}", status_code=303)
    if candidate is not None and error is None:
        try:
            check_threshold(candidate, cal.median)
        except UserError as e:
            error = str(e)
    if request.method == "POST" and candidate is not None and error is None:
        if params.get("confirm") != "yes":
            wi = await run_in_threadpool(s.models.what_if, version, candidate)
            return render(request, op, "threshold_confirm.html", {"version": version, "wi": wi, "note": note or ""})
        await run_in_threadpool(lambda: s.models.thresholds.set(version, candidate, by=f"console:{op.name}", calibrated=cal.threshold,
                                                                note=note, median=cal.median))
        return RedirectResponse(f"/models/threshold?version={version}", status_code=303)
    if candidate is None:
        candidate, _ = await run_in_threadpool(s.models.effective, version)
    wi = await run_in_threadpool(s.models.what_if, version, candidate)
    audit = await run_in_threadpool(s.models.thresholds.audit, 20)
    operator_set = await run_in_threadpool(s.models.thresholds.get, version)
    return render(request, op, "threshold.html", {"version": version, "versions": sorted(known), "wi": wi, "audit": audit, "error": error,
                                                   "operator_set": operator_set}, status=400 if error else 200)


@page
async def fleet_page(request: Request, op: Operator) -> Response:
    workers = await run_in_threadpool(services(request).fleet.workers)
    return render(request, op, "fleet.html", {"workers": workers, "group": services(request).fleet.group})
