"""The customer's tracking page: one job through an unguessable, expiring token."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, jsonify, render_template, request

from web import store
from web.access import PUBLIC, ApiError, requires
from web.context import db, state

bp = Blueprint("tracking", __name__, url_prefix="/track")

STEPS = (("scheduled", "Scheduled"), ("en_route", "On the way"), ("on_site", "On site"), ("done", "Done"))
STEP_OF_STATUS = {"new": "scheduled", "scheduled": "scheduled", "dispatched": "scheduled",
                  "en_route": "en_route", "on_site": "on_site", "completed": "done",
                  "unresolved": "done", "cancelled": "done"}
ETA_HALF_WINDOW = timedelta(minutes=30)
COARSE_DIGITS = 2


def _round_quarter(moment: datetime) -> datetime:
    minutes = (moment.minute // 15) * 15
    return moment.replace(minute=minutes, second=0, microsecond=0)


def public_view(conn: Any, job_id: int) -> dict[str, Any]:
    """What a customer may see of a job: no ids, notes or exact positions."""
    job = store.job_view(conn, job_id) or {}
    step = STEP_OF_STATUS.get(job.get("status", ""), "scheduled")
    eta = job.get("eta") or job.get("planned_arrival")
    window = None
    if eta is not None and step in ("scheduled", "en_route"):
        start = _round_quarter(eta - ETA_HALF_WINDOW)
        window = {"start": start, "end": start + 2 * ETA_HALF_WINDOW + timedelta(minutes=15)}
    position = None
    if step == "en_route" and job.get("technician_id") is not None:
        row = [t for t in store.technician_rows(conn) if t["id"] == job["technician_id"]]
        if row and row[0]["lat"] is not None:
            position = {"lat": round(row[0]["lat"], COARSE_DIGITS), "lon": round(row[0]["lon"], COARSE_DIGITS)}
    return {
        "step": step,
        "status": job.get("status"),
        "steps": [{"key": k, "label": label} for k, label in STEPS],
        "technician": store.technician_first_name(conn, job.get("technician_id")),
        "eta_window": window,
        "position": position,
        "site": job.get("site"),
        "completed": job.get("status") == "completed",
        "feedback_given": store.has_feedback(conn, job_id),
    }


@bp.get("/<token>")
@requires(PUBLIC)
def page(token: str) -> Any:
    with db() as conn:
        job_id = store.job_for_token(conn, token, state().clock.now())
        if job_id is None:
            return render_template("tracking_invalid.html"), 404
        view = public_view(conn, job_id)
    return render_template("tracking.html", token=token, view=view)


@bp.get("/<token>/status.json")
@requires(PUBLIC)
def status(token: str) -> Any:
    with db() as conn:
        job_id = store.job_for_token(conn, token, state().clock.now())
        if job_id is None:
            raise ApiError(404, "this tracking link is not valid")
        return jsonify(public_view(conn, job_id))


@bp.post("/<token>/feedback")
@requires(PUBLIC)
def feedback(token: str) -> Any:
    """The customer's rating (1-5) and comment, once, after the visit."""
    from fieldops.service import feedback as feedback_service

    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", "body")
    rating, comment = data.get("rating"), data.get("comment") or ""
    if not isinstance(comment, str):
        raise ApiError(400, "must be a string", "comment")
    with db() as conn:
        now = state().clock.now()
        job_id = store.job_for_token(conn, token, now)
        if job_id is None:
            raise ApiError(404, "this tracking link is not valid")
        feedback_service.submit(conn, job_id, rating, comment, now=now)
    return jsonify({"thanks": True}), 201
