"""The Flask application factory: one blueprint per audience, the pool and hub made here."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import Flask, g, jsonify, render_template, request, session
from flask.json.provider import DefaultJSONProvider
from psycopg_pool import ConnectionPool
from werkzeug.exceptions import HTTPException

from fieldops.clock import Clock
from fieldops.config import Settings
from fieldops.db.errors import DataError, OperationalError, is_unavailable
from fieldops.db.pool import make_pool
from fieldops.service.errors import ConflictError, NotFoundError, ServiceError, TransitionError
from web import store
from web.access import ApiError, check_csrf, csrf_token, wants_json
from web.context import EXTENSION, WebState, db, state
from web.hub import Hub
from web.inputs import IdConverter, check_request

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 asks the client to wait: the pool reconnects in the background
UNAVAILABLE = "database unavailable, retry shortly"


class IsoJSONProvider(DefaultJSONProvider):
    """JSON with ISO 8601 times (Flask's default is the HTTP date format)."""

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, Decimal):
            return float(o)
        return DefaultJSONProvider.default(o)


def create_app(
    settings: Settings,
    *,
    pool: ConnectionPool | None = None,
    clock: Clock | None = None,
    start_hub: bool = True,
) -> Flask:
    """Build the app for ``settings``; opens a pool unless one is given and starts the SSE hub.

    Needs no database: the pool connects in the background (requests answer 503 until it has a
    connection), so the app starts while the server is down and works once it is back.
    """
    from web import api, auth, dispatcher, live, technician, tracking

    app = Flask(__name__)
    app.json = IsoJSONProvider(app)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env != "development",
        SESSION_COOKIE_NAME="fieldops_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=256 * 1024,
        JSON_SORT_KEYS=False,
    )
    if pool is None:
        pool = make_pool(settings.database_url, min_size=settings.db_pool_min,
                         max_size=settings.db_pool_max, name="fieldops-web",
                         timeout_s=settings.web_pool_timeout_s, wait=False)
    hub = Hub(pool, settings.database_url) if start_hub else None
    app.extensions[EXTENSION] = WebState(
        settings=settings, pool=pool,
        clock=clock or Clock.from_settings(settings.clock_speed, settings.clock_anchor), hub=hub,
    )
    if hub is not None:
        hub.start()

    app.url_map.converters["id"] = IdConverter
    for module in (auth, technician, dispatcher, tracking, api, live):
        app.register_blueprint(module.bp)

    app.before_request(_load_user)
    app.before_request(check_csrf)
    app.before_request(check_request)
    app.context_processor(lambda: {"csrf_token": csrf_token, "user": g.get("user"),
                                   "map_tile_url": state().settings.map_tile_url})
    app.register_error_handler(ApiError, lambda exc: exc.response())
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(DataError, _data_error)
    app.register_error_handler(OperationalError, _database_unavailable)
    for code in (400, 403, 404, 405, 413, 429):
        app.register_error_handler(code, _http_error)
    app.after_request(_security_headers)
    return app


def _load_user() -> None:
    g.user = None
    user_id = session.get("user_id")
    if user_id is None or request.endpoint == "static":
        return
    with db() as conn:
        user = store.user_by_id(conn, int(user_id))
    if user is None or not user.active:
        session.clear()
        return
    g.user = user


def _service_error(exc: ServiceError) -> Any:
    """The service layer's errors name the field; map them onto 4xx answers."""
    from dispatch.overrides import OverrideRefused

    if isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, OverrideRefused):
        status = 422
    elif isinstance(exc, ConflictError | TransitionError):
        status = 409
    else:
        status = 400
    message = str(exc).split(": ", 1)[-1]
    return ApiError(status, message, exc.field).response()


def _data_error(exc: DataError) -> Any:
    """Last resort for a value PostgreSQL refused (SQLSTATE class 22): a 400, not a 500.

    The request checks should have caught it; the traceback is logged as an error so the missing
    check (or a server bug computing a bad value) is seen. Other database errors stay 500s.
    """
    log.error("database refused a value on %s %s", request.method, request.path, exc_info=exc)
    return _error(400, f"a value was refused by the database: {exc.diag.message_primary or exc}")


def _database_unavailable(exc: OperationalError) -> Any:
    """No usable connection (pool timed out, server unreachable or gone): 503 with Retry-After.

    Logged once per request as a warning without a traceback, so an outage does not flood the log.
    Other operational errors (a cancelled statement, a lock timeout) are re-raised: Flask's 500.
    """
    if not is_unavailable(exc):
        raise exc
    log.warning("database unavailable on %s %s: %s: %s", request.method, request.path,
                type(exc).__name__, " ".join(str(exc).split()))
    return _error(503, UNAVAILABLE, [("Retry-After", str(RETRY_AFTER_S))])


def _http_error(exc: HTTPException) -> Any:
    """An HTTP error as the API's JSON error on API paths and as a page elsewhere, keeping the
    exception's headers (``Allow`` on a 405) but not its content type."""
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return _error(exc.code or 500, exc.description or "error", headers)


def _error(code: int, message: str, headers: list[tuple[str, str]] | None = None) -> Any:
    """The API's JSON error on API paths, the error page elsewhere."""
    if wants_json():
        return jsonify({"error": message}), code, headers or []
    return render_template("error.html", code=code, message=message), code, headers or []


def _security_headers(response: Any) -> Any:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: https: http:; style-src 'self' 'unsafe-inline'",
    )
    return response


def close_app(app: Flask) -> None:
    """Stop the hub and close the pool (tests and the dev server)."""
    web_state: WebState = app.extensions[EXTENSION]
    if web_state.hub is not None:
        web_state.hub.stop()
    web_state.pool.close()
