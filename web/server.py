"""Serving: gunicorn with threaded workers (each worker builds its own app, pool and hub)."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from fieldops.config import Settings

log = logging.getLogger(__name__)


class GunicornServer(BaseApplication):
    """Runs :func:`web.create_app` in gunicorn ``gthread`` workers; the app is built per worker."""

    def __init__(self, settings: Settings, *, workers: int = 2, threads: int = 32,
                 bind: str | None = None, timeout_s: int = 60) -> None:
        self.settings = settings
        self.options = {
            "bind": bind or f"{settings.web_host}:{settings.web_port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": timeout_s,
            "graceful_timeout": 5,
            "keepalive": 5,
            "accesslog": None,
            "preload_app": False,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from web.app import create_app

        return create_app(self.settings)


def dev_server(settings: Settings, host: str, port: int) -> None:
    """Werkzeug's threaded server, for development only."""
    from werkzeug.serving import run_simple

    from web.app import close_app, create_app

    app = create_app(settings)
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        close_app(app)
