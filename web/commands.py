"""``fieldops web`` (serve the pages and API) and ``fieldops web-user`` (manage accounts)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from fieldops.config import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    web = sub.add_parser("web", help="serve the web pages and JSON API (gunicorn, threaded workers)")
    web.add_argument("--dev", action="store_true", help="use the werkzeug development server")
    web.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    web.add_argument("--threads", type=int, default=32, help="threads per worker (SSE streams hold one)")
    web.add_argument("--bind", default=None, help="host:port (default FIELDOPS_WEB_HOST:FIELDOPS_WEB_PORT)")
    web.set_defaults(func=cmd_web, process_name="web")

    user = sub.add_parser("web-user", help="create a web account")
    user.add_argument("username")
    user.add_argument("--role", choices=("admin", "dispatcher", "technician"), required=True)
    user.add_argument("--technician-id", type=int, default=None, help="required for technicians")
    user.add_argument("--password-env", default="FIELDOPS_NEW_PASSWORD",
                      help="environment variable holding the password (else prompted)")
    user.set_defaults(func=cmd_user)


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        sys.stderr.write("fieldops web: set FIELDOPS_DATABASE_URL (or run `fieldops up`)\n")
        return 2
    if args.dev:
        from web.server import dev_server

        host, _, port = (args.bind or f"{settings.web_host}:{settings.web_port}").rpartition(":")
        dev_server(settings, host, int(port))
        return 0
    from web.server import GunicornServer

    GunicornServer(settings, workers=args.workers, threads=args.threads, bind=args.bind).run()
    return 0


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    from fieldops.db.pool import connect
    from web import store

    password = os.environ.get(args.password_env) or getpass.getpass("password: ")
    if len(password) < 8:
        sys.stderr.write("fieldops web-user: password must have at least 8 characters\n")
        return 2
    with connect(settings.database_url) as conn:
        user = store.create_user(conn, args.username, password, args.role, args.technician_id)
        conn.commit()
    log.info("created %s user %s (id %d)", user.role, user.username, user.id)
    return 0
