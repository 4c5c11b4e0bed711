"""The technician's phone page: today's route, status steps, position, offline queue."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, render_template

from web import store
from web.access import ALL_USERS, requires
from web.context import db

bp = Blueprint("technician", __name__, url_prefix="/tech")


@bp.get("/")
@requires("technician")
def page() -> Any:
    return render_template("technician.html", technician_id=g.user.technician_id, job_id=None)


@bp.get("/jobs/<id:job_id>")
@requires(*ALL_USERS)
def job(job_id: int) -> Any:
    with db() as conn:
        found = store.job_view(conn, job_id)
    if found is None:
        abort(404, description="No such job.")
    if g.user.role == "technician" and found["technician_id"] != g.user.technician_id:
        abort(403, description="This job is not assigned to you.")
    return render_template("technician.html", technician_id=found["technician_id"], job_id=job_id)
