"""The dispatcher console and the device page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, send_from_directory

from web import store
from web.access import STAFF, requires
from web.context import db, state

bp = Blueprint("dispatcher", __name__, url_prefix="/console")


@bp.get("/")
@requires(*STAFF)
def console() -> Any:
    return render_template("console.html")


@bp.get("/devices/<id:device_id>")
@requires(*STAFF)
def device(device_id: int) -> Any:
    with db() as conn:
        found = store.device_row(conn, device_id)
    if found is None:
        abort(404, description="No such device.")
    return render_template("device.html", device=found)


PLOTS = ("pr_curve.png", "lead_times.png", "feature_importance.png")


def _plot_dir():
    return state().settings.data_path / "predict" / "plots"


@bp.get("/model")
@requires(*STAFF)
def model() -> Any:
    present = [name for name in PLOTS if (_plot_dir() / name).is_file()]
    return render_template("model.html", plots=present)


@bp.get("/model/plots/<name>")
@requires(*STAFF)
def plot(name: str) -> Any:
    if name not in PLOTS:
        abort(404, description="No such plot.")
    return send_from_directory(_plot_dir().resolve(), name)
