"""Sign-in and sign-out, with per user and address rate limiting kept in the database."""

from __future__ import annotations

import logging

from flask import Blueprint, g, redirect, render_template, request, session, url_for

from web import store
from web.access import PUBLIC, requires
from web.context import db, state
from web.security import DUMMY_HASH, new_csrf_token, verify_password

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

HOME_BY_ROLE = {"technician": "technician.page", "dispatcher": "dispatcher.console",
                "admin": "dispatcher.console"}


def _safe_next(target: str | None) -> str | None:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return None


@bp.get("/")
@requires(PUBLIC)
def index():
    if g.user is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for(HOME_BY_ROLE[g.user.role]))


@bp.route("/login", methods=["GET", "POST"])
@requires(PUBLIC)
def login():
    if request.method == "GET":
        return render_template("login.html", error=None, next=request.args.get("next", ""))
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    address = request.remote_addr or "unknown"
    now = state().clock.now()
    with db() as conn:
        if store.recent_failures(conn, username, address, now) >= store.LOGIN_MAX_FAILURES:
            log.warning("login rate limit hit for %r from %s", username, address)
            return render_template("login.html", error="Too many failed attempts; wait 15 minutes.",
                                   next=""), 429
        user = store.user_by_name(conn, username)
        ok = verify_password(password, user.password_hash if user else DUMMY_HASH)
        if not (ok and user and user.active):
            store.record_failure(conn, username, address, now)
            return render_template("login.html", error="Wrong user name or password.",
                                   next=request.form.get("next", "")), 401
        store.clear_failures(conn, username, address)
    session.clear()
    session["user_id"] = user.id
    session["csrf"] = new_csrf_token()
    session.permanent = True
    return redirect(_safe_next(request.form.get("next")) or url_for(HOME_BY_ROLE[user.role]))


@bp.post("/logout")
@requires(PUBLIC)
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
