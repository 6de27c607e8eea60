"""JSON and image routes: verdicts (one or in bulk), the alert list, live events, and an alert's pictures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from console.alerts import AlertFilter, AlertView
from console.auth import Operator
from console.images import KINDS, Unavailable
from console.pages import _filter
from console.review import MAX_BULK, ReviewBusy
from console.web import api, json_body, services

# How long one read of the streams blocks: well under the Redis client's socket timeout (5 s by default),
# or every quiet spell would read as an outage.
log = structlog.get_logger("console")
EVENT_BLOCK_MS = 2_000


def _outcomes(outcomes: list) -> dict:
    sent = sum(o.status == "sent" for o in outcomes)
    return {"sent": sent, "unchanged": len(outcomes) - sent, "results": [{"fingerprint": o.fingerprint, "status": o.status} for o in outcomes]}


@api
async def review(request: Request, op: Operator) -> Response:
    s = services(request)
    body = await json_body(request)
    if body is None or not isinstance(body.get("fingerprint"), str):
        return JSONResponse({"error": "expected JSON {fingerprint, verdict, note}"}, status_code=400)
    a = await run_in_threadpool(s.board.get, body["fingerprint"])
    if a is None:
        return JSONResponse({"error": f"no alert {body['fingerprint'][:40]} (unknown, or older than the alert stream keeps)"}, status_code=404)
    try:
        out = await run_in_threadpool(s.reviewer.review, [a], str(body.get("verdict")), op.name, str(body.get("note") or ""))
    except ValueError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    except ReviewBusy:
        return JSONResponse({"error": "another review of this alert is in progress"}, status_code=409)
    return JSONResponse({"fingerprint": a.fingerprint, "status": out[0].status, "verdict": body["verdict"]})


@api
async def review_bulk(request: Request, op: Operator) -> Response:
    """Verdicts on picked alerts (``fingerprints``) or on every alert a filter selects (``filter``), at most MAX_BULK."""
    s = services(request)
    body = await json_body(request)
    if body is None:
        return JSONResponse({"error": "expected JSON {verdict, note, fingerprints | filter}"}, status_code=400)
    chosen: list[AlertView] = []
    missing: list[str] = []
    if isinstance(body.get("fingerprints"), list):
        fps = [f for f in body["fingerprints"] if isinstance(f, str)][:MAX_BULK]
        for fp in fps:
            a = await run_in_threadpool(s.board.get, fp)
            (chosen.append(a) if a else missing.append(fp))
    elif isinstance(body.get("filter"), dict):
        f = body["filter"]
        flt = AlertFilter(status=str(f.get("status", "all")), source=str(f.get("source", "")), model_version=str(f.get("model_version", "")),
                          since_min=int(f.get("since", 0) or 0))
        chosen = (await run_in_threadpool(s.board.listing, flt)).alerts[:MAX_BULK]
    else:
        return JSONResponse({"error": "give fingerprints (a list) or filter (an object)"}, status_code=400)
    if missing and not chosen:
        return JSONResponse({"error": f"no such alerts: {', '.join(m[:40] for m in missing[:5])}"}, status_code=404)
    try:
        out = await run_in_threadpool(s.reviewer.review, chosen, str(body.get("verdict")), op.name, str(body.get("note") or ""))
    except ValueError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    except ReviewBusy:
        return JSONResponse({"error": "another review of some of these alerts is in progress"}, status_code=409)
    return JSONResponse({**_outcomes(out), "missing": missing})


@api
async def alerts_json(request: Request, op: Operator) -> Response:
    listing = await run_in_threadpool(services(request).board.listing, _filter(request))
    return JSONResponse({"alerts": [a.row() for a in listing.alerts], "scanned": listing.scanned})


@api
async def events(request: Request, op: Operator) -> Response:
    """Server-Sent Events: ``alert`` for each new alert, ``review`` for each verdict given by anyone."""
    board = services(request).board

    async def stream() -> AsyncIterator[bytes]:
        alerts_id, reviews_id = await run_in_threadpool(board.last_ids)
        yield b"event: hello\ndata: {}\n\n"
        while not await request.is_disconnected():
            try:
                new, reviews, alerts_id, reviews_id = await run_in_threadpool(board.after, alerts_id, reviews_id, EVENT_BLOCK_MS)
            except Exception as e:  # noqa: BLE001 - Redis away: tell the page, wait, go on (the page shows "reconnecting")
                log.warning("event_stream_read_failed", error=str(e)[:200])
                yield b"event: down\ndata: {}\n\n"
                await asyncio.sleep(2)
                continue
            for a in reversed(new):  # oldest first: the page puts each on top
                yield f"event: alert\ndata: {json.dumps(a.row())}\n\n".encode()
            for rv in reviews:
                yield f"event: review\ndata: {json.dumps(rv)}\n\n".encode()
            if not new and not reviews:
                yield b"event: beat\ndata: {}\n\n"  # keeps proxies from closing a quiet stream, and the page's badge honest

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


@api
async def alert_image(request: Request, op: Operator) -> Response:
    s = services(request)
    kind = request.path_params["kind"]
    if kind not in KINDS:
        return JSONResponse({"error": "no such image"}, status_code=404)
    a = await run_in_threadpool(s.board.get, request.path_params["fingerprint"])
    if a is None:
        return JSONResponse({"error": "no such alert"}, status_code=404)
    try:
        data = await run_in_threadpool(s.images.render, kind, a.result["input"], a.result["model_version"],
                                       thumb=request.query_params.get("size") == "thumb")
    except Unavailable as e:
        return JSONResponse({"error": str(e)}, status_code=404)
    return Response(data, media_type="image/png", headers={"cache-control": "private, max-age=300"})


@api
async def raw_map(request: Request, op: Operator) -> Response:
    s = services(request)
    a = await run_in_threadpool(s.board.get, request.path_params["fingerprint"])
    if a is None:
        return JSONResponse({"error": "no such alert"}, status_code=404)
    try:
        data = await run_in_threadpool(s.images.raw_map, a.result["input"], a.result["model_version"])
    except Unavailable as e:
        return JSONResponse({"error": str(e)}, status_code=404)
    name = a.result["id"].replace(":", "-")
    return Response(data, media_type="application/octet-stream", headers={"content-disposition": f'attachment; filename="map-{name}.npy"'})


@api
async def by_result_id(request: Request, op: Operator) -> Response:
    """``/results/TOPIC:PARTITION:OFFSET`` (the id on every result and alert) -> that alert's page."""
    from ganomaly.contracts.messages import InputRef, fingerprint

    rid = request.path_params["result_id"]
    try:
        topic, part, off = rid.rsplit(":", 2)
        fp = fingerprint(InputRef(topic=topic, partition=int(part), offset=int(off)))
    except ValueError:
        return JSONResponse({"error": f"not a result id (topic:partition:offset): {rid[:80]}"}, status_code=404)
    if await run_in_threadpool(services(request).board.get, fp) is None:
        return JSONResponse({"error": f"no alert for result {rid[:80]} (not flagged, or older than the alert stream keeps)"}, status_code=404)
    return RedirectResponse(f"/alerts/{fp}", status_code=303)
