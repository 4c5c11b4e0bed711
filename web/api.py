"""The JSON API under every page. Errors are ``{"error": ..., "field": ...}`` with a 4xx status."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from flask import Blueprint, g, jsonify, request, url_for

from fieldops.domain import JobStatus, PartQuantity
from fieldops.service import jobs as jobs_service
from fieldops.service import parts as parts_service
from web import store
from web.access import ALL_USERS, PUBLIC, STAFF, ApiError, requires
from web.context import db, state
from web.inputs import PG_INT_MAX, text_problem
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
    problem = text_problem(key)
    if problem:
        raise ApiError(400, problem, "Idempotency-Key")
    stored = store.claim_idempotency_key(conn, g.user.id, key, request.path)
    if stored is not None:
        status, payload = stored
        response = jsonify(payload)
        response.headers["Idempotent-Replay"] = "true"
        return response, status
    status, payload = action()
    response = jsonify(payload)
    store.finish_idempotency_key(conn, g.user.id, key, status, response.get_data(as_text=True))
    return response, status


def device_or_404(conn: psycopg.Connection, device_id: int) -> dict[str, Any]:
    """The device's row; ApiError 404 naming ``device_id`` when there is none."""
    found = store.device_row(conn, device_id)
    if found is None:
        raise ApiError(404, f"no device {device_id}", "device_id")
    return found


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


JOB_STATUSES = tuple(JobStatus)


@bp.get("/jobs")
@requires(*ALL_USERS)
def list_jobs() -> Any:
    statuses = request.args.getlist("status") or None
    unknown = [s for s in statuses or () if s not in JOB_STATUSES]
    if unknown:
        raise ApiError(400, f"unknown status {unknown[0]!r}; must be one of {', '.join(JOB_STATUSES)}",
                       "status")
    technician_id = g.user.technician_id if g.user.role == "technician" else None
    if g.user.role != "technician" and request.args.get("technician_id"):
        technician_id = int_arg("technician_id", 0, 1, PG_INT_MAX)
    with db() as conn:
        return jsonify(store.jobs_view(conn, technician_id=technician_id, statuses=statuses))


@bp.get("/jobs/<id:job_id>")
@requires(*ALL_USERS)
def get_job(job_id: int) -> Any:
    with db() as conn:
        return jsonify(own_job_or_403(conn, job_id))


@bp.post("/jobs/<id:job_id>/tracking-links")
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


@bp.get("/technicians/<id:technician_id>/route")
@requires(*ALL_USERS)
def route(technician_id: int) -> Any:
    if g.user.role == "technician" and g.user.technician_id != technician_id:
        raise ApiError(403, "you may only see your own route", "technician_id")
    start, end = day_bounds()
    with db() as conn:
        if not store.technician_exists(conn, technician_id):
            raise ApiError(404, f"no technician {technician_id}", "technician_id")
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


@bp.get("/devices/<id:device_id>")
@requires(*STAFF)
def device(device_id: int) -> Any:
    with db() as conn:
        found = device_or_404(conn, device_id)
        found["metrics"] = store.device_metrics(conn, device_id)
        found["events"] = store.device_events(conn, device_id)
    return jsonify(found)


@bp.get("/devices/<id:device_id>/telemetry")
@requires(*STAFF)
def device_telemetry(device_id: int) -> Any:
    """Hourly count/mean/min/max per metric from the rollup, for the last ``hours`` hours."""
    from fieldops.db.repo.telemetry import hourly_stats

    hours = int_arg("hours", 72, 1, MAX_TELEMETRY_HOURS)
    metric = request.args.get("metric")
    metric_index = int_arg("metric", 0, 0, 7) if metric is not None else None
    end = state().clock.now()
    with db() as conn:
        device_or_404(conn, device_id)
        stats = hourly_stats(conn, [device_id], end - timedelta(hours=hours), end, metric_index)
    return jsonify([{"bucket": s.bucket, "metric_index": s.metric_index, "n": s.n, "mean": s.mean,
                     "min": s.min, "max": s.max} for s in stats])


# ---------------------------------------------------------------- jobs: transitions and overrides

TECHNICIAN_TARGETS = frozenset({"en_route", "on_site", "completed", "unresolved"})
MAX_NOTE = 4000


def text(data: dict[str, Any], name: str, max_len: int = MAX_NOTE) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "must be a string", name)
    if len(value) > max_len:
        raise ApiError(400, f"must be at most {max_len} characters", name)
    return value


def integer(data: dict[str, Any], name: str, *, lo: int = 1, required: bool = True) -> int | None:
    """The integer field ``name``, ``lo`` to ``PG_INT_MAX`` (ids by default: from 1)."""
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(400, "is required", name)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "must be an integer", name)
    if not lo <= value <= PG_INT_MAX:
        raise ApiError(400, f"must be between {lo} and {PG_INT_MAX}", name)
    return value


def expected_version(data: dict[str, Any]) -> int | None:
    """The job version the client read, if sent. Versions start at 1, so 0 or less can never match:
    that is refused as bad input (400), not answered as a stale version (409)."""
    value = data.get("expected_version")
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise ApiError(400, "versions start at 1: send the version read from the job",
                       "expected_version")
    return integer(data, "expected_version", required=False)


def parts_list(data: dict[str, Any]) -> list[PartQuantity]:
    raw = data.get("parts_used") or []
    if not isinstance(raw, list):
        raise ApiError(400, "must be a list of {sku, quantity}", "parts_used")
    used = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("sku"), str):
            raise ApiError(400, f"item {i} needs a sku", "parts_used")
        quantity = item.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise ApiError(400, f"item {i}: quantity must be a positive integer", "parts_used")
        used.append(PartQuantity(item["sku"], quantity))
    return used


def job_json(job: jobs_service.Job) -> dict[str, Any]:
    return {"id": job.id, "status": str(job.status), "version": job.version,
            "technician_id": job.technician_id, "planned_arrival": job.planned_arrival, "eta": job.eta,
            "follow_up_job_id": job.follow_up_job_id}


@bp.post("/jobs/<id:job_id>/transitions")
@requires(*ALL_USERS)
def transition(job_id: int) -> Any:
    """Move a job to the next status (technicians: their own jobs, field steps only)."""
    data = body()
    to_status = text(data, "to_status", 40)
    if not to_status:
        raise ApiError(400, "is required", "to_status")
    if g.user.role == "technician" and to_status not in TECHNICIAN_TARGETS:
        raise ApiError(403, f"technicians may set {', '.join(sorted(TECHNICIAN_TARGETS))}", "to_status")
    expected = expected_version(data)
    lat = number(data, "lat", -90, 90, required=False)
    lon = number(data, "lon", -180, 180, required=False)
    note = text(data, "note")
    finding = text(data, "finding", 40)
    finding_mode = text(data, "finding_mode", 60)
    used = parts_list(data)
    now = state().clock.now()
    with db() as conn:
        own_job_or_403(conn, job_id)

        def action() -> tuple[int, Any]:
            job = jobs_service.transition(
                conn, job_id, to_status, expected_version=expected, actor=f"user:{g.user.username}",
                now=now, lat=lat, lon=lon, note=note or None, finding=finding or None,
                finding_mode=finding_mode or None, parts_used=used)
            return 200, job_json(job)

        return idempotent(conn, action)


@bp.post("/jobs/<id:job_id>/pickup")
@requires("technician")
def pickup(job_id: int) -> Any:
    """The technician has collected the job's parts reserved at a warehouse (``location_id``)."""
    location_id = integer(body(), "location_id")
    now = state().clock.now()
    with db() as conn:
        own_job_or_403(conn, job_id)
        if not store.stock_location_exists(conn, location_id):
            raise ApiError(404, f"no stock location {location_id}", "location_id")

        def action() -> tuple[int, Any]:
            moved = parts_service.collect_for_job(conn, job_id, location_id, g.user.technician_id,
                                                  actor=f"user:{g.user.username}", now=now)
            return 200, {"job_id": job_id, "location_id": location_id,
                         "collected": [{"sku": p.sku, "quantity": p.quantity} for p in moved]}

        return idempotent(conn, action)


OVERRIDE_ACTIONS = ("assign", "move", "lock", "unlock", "unassign", "release")


@bp.post("/overrides")
@requires(*STAFF)
def create_override() -> Any:
    """Record a dispatcher override (assign, move, lock, unlock, unassign) or release a job.

    Assign and move take effect on the job at once and stand for every later plan; a rule the
    override breaks (skill, shift) is refused naming ``technician_id`` unless ``force`` is true.
    ``release`` hands a scheduled job to the technician's phone (scheduled -> dispatched).
    """
    from dispatch import overrides

    data = body()
    action_name = text(data, "action", 20)
    if action_name not in OVERRIDE_ACTIONS:
        raise ApiError(400, f"must be one of {', '.join(OVERRIDE_ACTIONS)}", "action")
    job_id = integer(data, "job_id")
    technician_id = integer(data, "technician_id", required=action_name in ("assign", "move"))
    position = integer(data, "position", lo=0, required=action_name == "move")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise ApiError(400, "must be true or false", "force")
    now = state().clock.now()
    actor = f"user:{g.user.username}"
    with db() as conn:
        before = store.job_view(conn, job_id)
        if before is None:
            raise ApiError(404, f"no job {job_id}", "job_id")

        def action() -> tuple[int, Any]:
            warning = None
            if action_name == "release":
                job = jobs_service.transition(conn, job_id, "dispatched", expected_version=None,
                                              actor=actor, now=now)
            else:
                warning = overrides.apply(conn, action_name, job_id, actor=actor, now=now,
                                          technician_id=technician_id, position=position, force=force)
                job = jobs_service.get_job(conn, job_id)
                if action_name in ("assign", "move") and job.technician_id != technician_id:
                    arrival = job.planned_arrival or now + timedelta(hours=1)
                    job = jobs_service.assign(conn, job_id, technician_id, arrival, actor=actor, now=now)
            store.announce_plan_change(conn, job_id, before["technician_id"], job.technician_id, action_name)
            return 200, {**job_json(job), "warning": warning}

        return idempotent(conn, action)


PREVIEW_SOLVE_S = 2.0


@bp.get("/plan")
@requires(*STAFF)
def plan() -> Any:
    """The active plan: stops per technician in order, and unassigned jobs with their reasons."""
    with db() as conn:
        return jsonify(store.active_plan(conn))


def _planner() -> tuple[Any, Any]:
    from dispatch.problem import Params
    from dispatch.travel import provider_for

    return Params(time_limit_s=PREVIEW_SOLVE_S), provider_for(state().settings.osrm_url)


PREVIEW_TTL = timedelta(minutes=15)
PREVIEW_KEEP = timedelta(days=1)
PREVIEW_AGAIN = "preview the re-plan again"


@bp.post("/plan/preview")
@requires(*STAFF)
def plan_preview() -> Any:
    """Solve now without committing; list what would change and keep the plan for ``/plan/apply``."""
    from dataclasses import replace

    from dispatch.solver import solve
    from dispatch.store import active_routes, load_problem
    from web import previews

    params, provider = _planner()
    now = state().clock.now()
    with db() as conn:
        # one snapshot: the fingerprint describes exactly what the problem was loaded from
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        loaded = load_problem(conn, now, provider)
        warm = active_routes(conn)
        digest = previews.fingerprint(conn)
        current = {j["id"]: j for j in store.jobs_view(conn, statuses=list(jobs_service.OPEN))}
        names = {t["id"]: t["name"] for t in store.technician_rows(conn)}
        conn.rollback()
    solution = solve(loaded.problem, replace(params, initial_routes=warm or None))
    changes = []
    for job_id, job in sorted(current.items()):
        new_tech, old_tech = solution.technician_of(job_id), job["technician_id"]
        if new_tech == old_tech:
            continue
        if new_tech is None:
            what = f"would be unassigned: {solution.reason(job_id) or 'no reason given'}"
        elif old_tech is None:
            what = f"would go to {names.get(new_tech, new_tech)}"
        else:
            what = f"would move from {names.get(old_tech, old_tech)} to {names.get(new_tech, new_tech)}"
        changes.append({"job_id": job_id, "from": old_tech, "to": new_tech,
                        "description": f"job {job_id} ({job['site']}) {what}"})
    with db() as conn:
        previews.prune(conn, now - PREVIEW_KEEP)
        preview_id = previews.save(conn, g.user.id, now, digest, loaded, solution)
    return jsonify({"preview_id": preview_id, "expires_at": now + PREVIEW_TTL, "changes": changes,
                    "unassigned": [{"job_id": u.job_id, "reason": u.reason} for u in solution.unassigned]})


@bp.post("/plan/apply")
@requires(*STAFF)
def plan_apply() -> Any:
    """Commit exactly the plan of ``preview_id`` as the active plan.

    Refused with 409 (preview again) when the preview expired or was applied already, or when the
    active plan, an open job or an override changed since the preview.
    """
    from dispatch.store import PLAN_LOCK, commit_plan
    from fieldops.service.errors import ConflictError
    from web import previews

    preview_id = text(body(), "preview_id", 100)
    if not preview_id:
        raise ApiError(400, "is required: preview the re-plan first", "preview_id")
    now = state().clock.now()
    with db() as conn:

        def action() -> tuple[int, Any]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PLAN_LOCK,))
            preview = previews.load(conn, preview_id)
            if preview is None:
                raise ApiError(404, "no such preview; " + PREVIEW_AGAIN, "preview_id")
            if preview.applied_plan_id is not None:
                raise ApiError(409, f"this preview was applied already (plan {preview.applied_plan_id}); "
                               + PREVIEW_AGAIN, "preview_id")
            if now - preview.created_at > PREVIEW_TTL:
                raise ApiError(409, "this preview expired; " + PREVIEW_AGAIN, "preview_id")
            if previews.fingerprint(conn) != preview.fingerprint:
                raise ApiError(409, "jobs, overrides or the active plan changed since this preview; "
                               + PREVIEW_AGAIN, "preview_id")
            try:
                plan_id = commit_plan(conn, preview.loaded, preview.solution, now=now,
                                      trigger=f"user:{g.user.username}", actor=f"user:{g.user.username}")
            except ConflictError as exc:
                raise ApiError(409, f"{exc}; " + PREVIEW_AGAIN, "preview_id") from exc
            previews.mark_applied(conn, preview_id, plan_id)
            return 201, {"plan_id": plan_id, "preview_id": preview_id,
                         "unassigned": len(preview.solution.unassigned)}

        return idempotent(conn, action)


@bp.get("/devices/<id:device_id>/jobs")
@requires(*STAFF)
def device_jobs(device_id: int) -> Any:
    """The device's maintenance history (every job, newest first)."""
    with db() as conn:
        device_or_404(conn, device_id)
        history = jobs_service.jobs_of_device(conn, device_id)
    return jsonify([{"id": j.id, "type": str(j.type), "status": str(j.status), "created_at": j.created_at,
                     "completed_at": j.completed_at, "finding": j.finding, "notes": j.notes}
                    for j in history])


@bp.get("/kpis")
@requires(*STAFF)
def kpis() -> Any:
    """KPIs over the last ``days`` days, grouped ``by`` all, day, region, technician or model."""
    from dataclasses import asdict

    from fieldops.service import kpis as kpi_service

    days = int_arg("days", 7, 1, 366)
    by = request.args.get("by", "all")
    end = state().clock.now()
    start = end - timedelta(days=days)
    with db() as conn:
        rows = kpi_service.kpis(conn, start, end, by)
    return jsonify({"start": start, "end": end, "by": by, "rows": [asdict(r) for r in rows]})


@bp.get("/predictions")
@requires(*STAFF)
def predictions() -> Any:
    """The newest failure prediction of each device, riskiest first."""
    limit = int_arg("limit", 100, 1, 1000)
    with db() as conn:
        return jsonify(store.latest_predictions(conn, limit))


@bp.get("/devices/<id:device_id>/predictions")
@requires(*STAFF)
def device_predictions(device_id: int) -> Any:
    """The device's risk history with explanations, newest first."""
    with db() as conn:
        device_or_404(conn, device_id)
        return jsonify(store.prediction_history(conn, device_id))


@bp.get("/models")
@requires(*STAFF)
def models() -> Any:
    """The model registry: versions, estimators, evaluation metrics, which one is active."""
    from predict import registry

    with db() as conn:
        found = registry.entries(conn)
    return jsonify([{"version": e.version, "estimator": e.estimator, "metrics": e.metrics,
                     "active": e.active, "created_at": e.created_at, "train_start": e.train_start,
                     "train_end": e.train_end, "readings_per_hour": e.readings_per_hour} for e in found])
