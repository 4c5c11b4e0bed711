"""Authorization: which roles may call a view, CSRF on state-changing requests, errors as JSON."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import abort, g, jsonify, request, session

from web.security import new_csrf_token, same_token

STAFF = ("admin", "dispatcher")
ALL_USERS = ("admin", "dispatcher", "technician")
PUBLIC = "public"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(Exception):
    """A 4xx answer naming the request field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def response(self) -> Any:
        body = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return jsonify(body), self.status


def requires(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Allow only signed-in users with one of ``roles``; ``requires(PUBLIC)`` allows anyone.

    The roles are kept on the view as ``allowed_roles`` so tests can enumerate them.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if PUBLIC not in roles:
                user = g.get("user")
                if user is None:
                    if wants_json():
                        raise ApiError(401, "sign in first")
                    from flask import redirect, url_for

                    return redirect(url_for("auth.login", next=request.path))
                if user.role not in roles:
                    if wants_json():
                        raise ApiError(403, "not allowed for your role")
                    abort(403)
            return view(*args, **kwargs)

        wrapper.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def wants_json() -> bool:
    """True for the JSON API (``/api`` and below) and the event stream, whose errors are JSON rather
    than pages."""
    path = request.path
    return path == "/api" or path.startswith("/api/") or path.startswith("/events")


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = new_csrf_token()
    return token


def check_csrf() -> None:
    """Reject a state-changing request without the session's CSRF token (form field or header)."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
    if not same_token(sent, session.get("csrf")):
        if wants_json():
            raise ApiError(403, "missing or wrong CSRF token", "X-CSRF-Token")
        abort(403, description="missing or wrong CSRF token; reload the page and try again")
