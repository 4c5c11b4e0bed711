"""``fieldops web`` (serve the pages and API) and ``fieldops web-user`` (manage accounts)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from typing import TYPE_CHECKING

from fieldops.cli import db_id
from fieldops.config import Settings

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    web = sub.add_parser("web", help="serve the web pages and JSON API (gunicorn, threaded workers)")
    web.add_argument("--dev", action="store_true", help="use the werkzeug development server")
    web.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    web.add_argument("--threads", type=int, default=32, help="threads per worker (SSE streams hold one)")
    web.add_argument("--bind", default=None, help="host:port (default FIELDOPS_WEB_HOST:FIELDOPS_WEB_PORT)")
    web.set_defaults(func=cmd_web, process_name="web")

    user = sub.add_parser("web-user", help="create a web account; `web-user demo` creates the demo accounts",
                          description="`fieldops web-user NAME --role ROLE` creates one account; "
                          "`fieldops web-user demo --password P` creates (once) dispatcher, admin and "
                          "tech<id> for every technician, all with password P.")
    user.add_argument("username", type=account_name,
                      help="account name, or `demo` (without --role) for the demo accounts")
    user.add_argument("--role", choices=("admin", "dispatcher", "technician"), default=None)
    user.add_argument("--technician-id", type=db_id, default=None, help="required for technicians")
    user.add_argument("--password-env", default="FIELDOPS_NEW_PASSWORD",
                      help="environment variable holding the password (else prompted)")
    user.add_argument("--password", default=None, help="the password (demo accounts; else --password-env)")
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


DEMO_STAFF = (("dispatcher", "dispatcher"), ("admin", "admin"))


def demo_users(conn: psycopg.Connection, password: str) -> list[str]:
    """Create the demo accounts that are missing: dispatcher, admin, tech<id> per technician.

    Returns the names created; existing accounts are left as they are.
    """
    from fieldops.db.repo import catalog
    from web import store
    from web.security import verify_password

    wanted = [*((name, role, None) for name, role in DEMO_STAFF),
              *((f"tech{t.id}", "technician", t.id) for t in catalog.technicians(conn, active_only=False))]
    created = []
    for name, role, technician_id in wanted:
        existing = store.user_by_name(conn, name)
        if existing is None:
            store.create_user(conn, name, password, role, technician_id)
            created.append(name)
        elif not verify_password(password, existing.password_hash):
            log.warning("demo account %s exists with another password; left unchanged", name)
    return created


MAX_USERNAME = 100  # the users table's limit


def account_name(text: str) -> str:
    """An argparse type: a user name of 1 to 100 characters, not blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if len(text) > MAX_USERNAME:
        raise argparse.ArgumentTypeError(f"must have at most {MAX_USERNAME} characters, not {len(text)}")
    return text


def _password(args: argparse.Namespace) -> str | None:
    """--password, else the --password-env variable, else a prompt on a terminal; None without one."""
    password = args.password or os.environ.get(args.password_env)
    if password:
        return password
    if not sys.stdin.isatty():
        return None
    try:
        return getpass.getpass("password: ")
    except EOFError:
        return None


def _user_problem(conn: psycopg.Connection, args: argparse.Namespace) -> str | None:
    """Why the account cannot be created: a taken name, an unknown technician or one who has an
    account already."""
    from fieldops.db.repo import catalog
    from web import store

    if store.user_by_name(conn, args.username) is not None:
        return f"an account named {args.username!r} already exists"
    if args.technician_id is None:
        return None
    names = {t.id: t.name for t in catalog.technicians(conn, active_only=False)}
    if args.technician_id not in names:
        return f"--technician-id: no technician {args.technician_id}"
    existing = store.user_by_technician(conn, args.technician_id)
    if existing is not None:
        return (f"--technician-id: technician {args.technician_id} ({names[args.technician_id]}) already has "
                f"an account: {existing.username!r} (one account per technician)")
    return None


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    from fieldops.db.pool import connect
    from web import store

    demo = args.username == "demo" and args.role is None
    if args.role is None and not demo:
        sys.stderr.write("fieldops web-user: --role is required (or use `web-user demo`)\n")
        return 2
    if (args.role == "technician") != (args.technician_id is not None):
        sys.stderr.write("fieldops web-user: --technician-id is required for the technician role and "
                         "only for it\n")
        return 2
    url = settings.require_database_url()
    password = _password(args)
    if password is None:
        sys.stderr.write(f"fieldops web-user: no password: set {args.password_env}, give --password, or "
                         "run on a terminal to be prompted\n")
        return 2
    if len(password) < 8:
        sys.stderr.write("fieldops web-user: password must have at least 8 characters\n")
        return 2
    if demo:
        with connect(url) as conn:
            created = demo_users(conn, password)
            conn.commit()
        log.info("demo accounts: %d created (%s)", len(created), ", ".join(created) or "all existed")
        return 0
    with connect(url) as conn:
        problem = _user_problem(conn, args)
        if problem:
            sys.stderr.write(f"fieldops web-user: {problem}\n")
            return 2
        user = store.create_user(conn, args.username, password, args.role, args.technician_id)
        conn.commit()
    log.info("created %s user %s (id %d)", user.role, user.username, user.id)
    return 0
