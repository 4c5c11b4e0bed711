"""Server-Sent Events: each stream sees only what its audience may see, and resumes by event id."""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, g, request

from fieldops import events
from fieldops.events import Event
from web import store
from web.access import ALL_USERS, PUBLIC, ApiError, requires
from web.context import db, state
from web.hub import Filter, Hub

log = logging.getLogger(__name__)
bp = Blueprint("live", __name__)

KEEPALIVE_S = 15.0
REPLAY_LIMIT = 5000
COARSE_DIGITS = 2  # about 1 km: enough to see the technician approach, not to follow them
TRACKING_KINDS = frozenset({events.JOB_STATUS, events.JOB_UPDATED, events.PLAN_CHANGED})


def _mentions(event: Event, technician_id: int) -> bool:
    payload = event.payload or {}
    ids = payload.get("technician_ids") or []
    return technician_id in ids or payload.get("previous_technician_id") == technician_id


def staff_filter(event: Event) -> Event | None:
    return event


def technician_filter(technician_id: int) -> Filter:
    """A technician sees events about themselves, plan changes that name them, and (without
    details) every whole-plan change, since a new plan may have taken one of their stops away."""

    def visible(event: Event) -> Event | None:
        if event.technician_id == technician_id or _mentions(event, technician_id):
            return event
        if event.kind == events.PLAN_CHANGED and event.job_id is None and event.technician_id is None:
            return replace(event, payload={"plan_id": (event.payload or {}).get("plan_id")})
        return None

    return visible


def tracking_filter(job_id: int, technician_id: int | None) -> Filter:
    """A tracking page sees its job's changes (without details) and a coarse technician position."""
    assigned = {"technician_id": technician_id, "status": None}

    def visible(event: Event) -> Event | None:
        payload = event.payload or {}
        if event.job_id == job_id and event.kind in TRACKING_KINDS:
            if "technician_id" in payload:
                assigned["technician_id"] = payload["technician_id"]
            status = payload.get("to") or payload.get("status")
            if status:
                assigned["status"] = status
            return replace(event, payload={"job_id": job_id, "changed": True}, technician_id=None)
        if event.kind == events.PLAN_CHANGED and job_id in (payload.get("job_ids") or []):
            return replace(event, payload={"job_id": job_id, "changed": True}, technician_id=None)
        if (event.kind == events.TECHNICIAN_POSITION and event.technician_id is not None
                and event.technician_id == assigned["technician_id"]
                and assigned["status"] in (None, "en_route")):
            coarse = {"lat": round(float(payload["lat"]), COARSE_DIGITS),
                      "lon": round(float(payload["lon"]), COARSE_DIGITS)}
            return replace(event, payload=coarse, technician_id=None, job_id=job_id)
        return None

    return visible


def format_event(event: Event) -> str:
    """One SSE message; its id is the commit position, which a reconnecting page sends back."""
    data = json.dumps({"id": event.commit_seq, "kind": event.kind, "payload": dict(event.payload or {})},
                      default=str)
    return f"id: {event.commit_seq}\nevent: {event.kind}\ndata: {data}\n\n"


def _last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, "must be an integer event id", "Last-Event-ID") from exc
    if value < 0:
        raise ApiError(400, "must not be negative", "Last-Event-ID")
    return value


def stream(visible: Filter) -> Response:
    """An SSE response: replay what committed after Last-Event-ID, then live events from the hub.

    Ids are commit positions (``commit_seq``), so resuming after N misses nothing that commits
    later. The subscription starts before the replay is read; live events up to the replay's end
    are skipped as already sent. A replay cut at ``REPLAY_LIMIT`` ends the stream, and the page
    reconnects from where it stopped.
    """
    hub: Hub | None = state().hub
    if hub is None:
        raise ApiError(503, "live updates are not running")
    after = _last_event_id()
    sub = hub.subscribe(visible)
    with db() as conn:
        hub.begin(conn)  # before reading our start: the hub must not start after it
        newest = events.last_commit_seq(conn)
        if after is not None and after > newest:
            after = None  # an id this database never gave out (it was rebuilt): start afresh
        backlog = events.committed_since(conn, after, REPLAY_LIMIT) if after is not None else []
        sent = backlog[-1].commit_seq if backlog else (after if after is not None else newest)
    truncated = len(backlog) == REPLAY_LIMIT

    def generate() -> Iterator[str]:
        try:
            yield f"retry: 2000\n: connected {sent}\n\n"
            for event in backlog:
                shown = visible(event)
                if shown is not None:
                    yield format_event(shown)
            if truncated:
                return
            while not hub.stopped and not sub.dropped:
                try:
                    event = sub.queue.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    yield ": keepalive\n\n"
                    continue
                if event is None:
                    break
                if event.commit_seq > sent:
                    yield format_event(event)
        finally:
            hub.unsubscribe(sub)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(generate(), mimetype="text/event-stream", headers=headers)


@bp.get("/events")
@requires(*ALL_USERS)
def user_events() -> Any:
    user = g.user
    if user.role == "technician":
        return stream(technician_filter(user.technician_id))
    return stream(staff_filter)


@bp.get("/track/<token>/events")
@requires(PUBLIC)
def tracking_events(token: str) -> Any:
    with db() as conn:
        job_id = store.job_for_token(conn, token, state().clock.now())
        technician_id = store.job_technician(conn, job_id) if job_id is not None else None
    if job_id is None:
        raise ApiError(404, "this tracking link is not valid")
    return stream(tracking_filter(job_id, technician_id))
