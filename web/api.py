"""The JSON API under every page. Errors are ``{"error": ..., "field": ...}`` with a 4xx status."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from flask import Blueprint, g, jsonify, request, url_for

from web import store
from web.access import ALL_USERS, PUBLIC, STAFF, ApiError, requires
from web.context import db, state
from web.openapi import document
from web.security import new_tracking_token

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")

TRACKING_TTL = timedelta(days=7)
MAX_TELEMETRY_HOURS = 24 * 31


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", "body")
    return data


def number(data: dict[str, Any], name: str, lo: float, hi: float, *, required: bool = True) -> float | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(400, "is required", name)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, "must be a number", name)
    if not lo <= value <= hi:
        raise ApiError(400, f"must be between {lo:g} and {hi:g}", name)
    return float(value)


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, "must be an integer", name) from exc
    if not lo <= value <= hi:
        raise ApiError(400, f"must be between {lo} and {hi}", name)
    return value


def idempotent(conn: psycopg.Connection, action: Callable[[], tuple[int, Any]]) -> Any:
    """Run ``action`` once per ``Idempotency-Key``: a retry gets the first answer, not a second change."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        status, payload = action()
        return jsonify(payload), status
    if not 8 <= len(key) <= 200:
        raise ApiError(400, "must be 8 to 200 characters", "Idempotency-Key")
    stored = store.claim_idempotency_key(conn, g.user.id, key, request.path)
    if stored is not None:
        status, payload = stored
        response = jsonify(payload)
        response.headers["Idempotent-Replay"] = "true"
        return response, status
    status, payload = action()
    store.finish_idempotency_key(conn, g.user.id, key, status, payload)
    return jsonify(payload), status


def own_job_or_403(conn: psycopg.Connection, job_id: int) -> dict[str, Any]:
    """The job, if the current user may see it: staff always, a technician only when assigned."""
    job = store.job_view(conn, job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}", "job_id")
    user = g.user
    if user.role == "technician" and job["technician_id"] != user.technician_id:
        raise ApiError(403, "this job is not assigned to you", "job_id")
    return job


def day_bounds() -> tuple[Any, Any]:
    now = state().clock.now()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


@bp.get("/openapi.json")
@requires(PUBLIC)
def openapi() -> Any:
    return jsonify(document())


@bp.get("/me")
@requires(*ALL_USERS)
def me() -> Any:
    user = g.user
    return jsonify({"id": user.id, "username": user.username, "role": user.role,
                    "technician_id": user.technician_id})


@bp.get("/jobs")
@requires(*ALL_USERS)
def list_jobs() -> Any:
    statuses = request.args.getlist("status") or None
    technician_id = g.user.technician_id if g.user.role == "technician" else None
    if g.user.role != "technician" and request.args.get("technician_id"):
        technician_id = int_arg("technician_id", 0, 1, 2**31 - 1)
    with db() as conn:
        return jsonify(store.jobs_view(conn, technician_id=technician_id, statuses=statuses))


@bp.get("/jobs/<int:job_id>")
@requires(*ALL_USERS)
def get_job(job_id: int) -> Any:
    with db() as conn:
        return jsonify(own_job_or_403(conn, job_id))


@bp.post("/jobs/<int:job_id>/tracking-links")
@requires(*STAFF)
def create_tracking_link(job_id: int) -> Any:
    with db() as conn:
        if store.job_view(conn, job_id) is None:
            raise ApiError(404, f"no job {job_id}", "job_id")
        token = new_tracking_token()
        expires_at = state().clock.now() + TRACKING_TTL
        store.store_tracking_token(conn, token, job_id, expires_at)
    return jsonify({"url": url_for("tracking.page", token=token, _external=True),
                    "token": token, "expires_at": expires_at}), 201


@bp.get("/technicians")
@requires(*STAFF)
def technicians() -> Any:
    with db() as conn:
        return jsonify(store.technician_rows(conn))


@bp.get("/technicians/<int:technician_id>/route")
@requires(*ALL_USERS)
def route(technician_id: int) -> Any:
    if g.user.role == "technician" and g.user.technician_id != technician_id:
        raise ApiError(403, "you may only see your own route", "technician_id")
    start, end = day_bounds()
    with db() as conn:
        jobs = store.jobs_view(conn, technician_id=technician_id, day_start=start, day_end=end)
    return jsonify({"technician_id": technician_id, "day": start.date().isoformat(), "stops": jobs})


@bp.post("/positions")
@requires("technician")
def post_position() -> Any:
    data = body()
    lat = number(data, "lat", -90, 90)
    lon = number(data, "lon", -180, 180)
    now = state().clock.now()

    def action() -> tuple[int, Any]:
        store.record_position(conn, g.user.technician_id, lat, lon, now)
        return 201, {"technician_id": g.user.technician_id, "lat": lat, "lon": lon, "at": now}

    with db() as conn:
        return idempotent(conn, action)


@bp.get("/parts")
@requires(*ALL_USERS)
def parts() -> Any:
    with db() as conn:
        return jsonify(store.parts_rows(conn))


@bp.get("/devices")
@requires(*STAFF)
def devices() -> Any:
    with db() as conn:
        return jsonify(store.device_rows(conn))


@bp.get("/devices/<int:device_id>")
@requires(*STAFF)
def device(device_id: int) -> Any:
    with db() as conn:
        rows = store.device_rows(conn, device_id)
        if not rows:
            raise ApiError(404, f"no device {device_id}", "device_id")
        found = rows[0]
        found["metrics"] = store.device_metrics(conn, device_id)
        found["events"] = store.device_events(conn, device_id)
    return jsonify(found)


@bp.get("/devices/<int:device_id>/telemetry")
@requires(*STAFF)
def device_telemetry(device_id: int) -> Any:
    """Hourly count/mean/min/max per metric from the rollup, for the last ``hours`` hours."""
    from fieldops.db.repo.telemetry import hourly_stats

    hours = int_arg("hours", 72, 1, MAX_TELEMETRY_HOURS)
    metric = request.args.get("metric")
    metric_index = int_arg("metric", 0, 0, 7) if metric is not None else None
    end = state().clock.now()
    with db() as conn:
        if not store.device_rows(conn, device_id):
            raise ApiError(404, f"no device {device_id}", "device_id")
        stats = hourly_stats(conn, [device_id], end - timedelta(hours=hours), end, metric_index)
    return jsonify([{"bucket": s.bucket, "metric_index": s.metric_index, "n": s.n, "mean": s.mean,
                     "min": s.min, "max": s.max} for s in stats])
