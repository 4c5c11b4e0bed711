"""The dispatcher console and the device page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template

from web import store
from web.access import STAFF, requires
from web.context import db

bp = Blueprint("dispatcher", __name__, url_prefix="/console")


@bp.get("/")
@requires(*STAFF)
def console() -> Any:
    return render_template("console.html")


@bp.get("/devices/<int:device_id>")
@requires(*STAFF)
def device(device_id: int) -> Any:
    with db() as conn:
        rows = store.device_rows(conn, device_id)
    if not rows:
        abort(404, description="No such device.")
    return render_template("device.html", device=rows[0])
