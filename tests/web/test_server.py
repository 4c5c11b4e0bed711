from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time

import pytest

from fieldops import cli
from fieldops.runtime.postgres import free_port
from tests.conftest import cloned_database


def _wait_http(port: int, path: str, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def gunicorn_port(pg_admin_url, template_db):
    """``fieldops web`` (gunicorn) started once for the module's read-only requests."""
    with cloned_database(pg_admin_url, template_db, f"fieldops_gunicorn_{os.getpid()}") as db_url:
        port = free_port()
        env = {**os.environ, "FIELDOPS_DATABASE_URL": db_url, "FIELDOPS_ENV": "test",
               "FIELDOPS_SECRET_KEY": "s" * 40}
        proc = subprocess.Popen(
            [sys.executable, "-m", "fieldops.cli", "web", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--threads", "4"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_fieldops_web_serves_through_gunicorn(gunicorn_port):
    assert _wait_http(gunicorn_port, "/api/openapi.json") == 200


def test_signed_out_page_request_is_sent_to_login(gunicorn_port):
    _wait_http(gunicorn_port, "/login")
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_port, timeout=5)
    conn.request("GET", "/console/")
    resp = conn.getresponse()
    assert resp.status == 302 and "/login?next=" in resp.getheader("Location")


def web_user(monkeypatch, db_url: str, *argv: str, password: str | None = None) -> int:
    """``fieldops web-user ARGV`` in this process, on ``db_url``."""
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_ENV", "test")
    if password is None:
        monkeypatch.delenv("FIELDOPS_NEW_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("FIELDOPS_NEW_PASSWORD", password)
    return cli.main(["web-user", *argv])


def test_web_user_command_creates_an_account_that_can_sign_in(db_url, db, monkeypatch):
    assert web_user(monkeypatch, db_url, "dora", "--role", "dispatcher", password="long-enough-pw") == 0
    from web import store
    from web.security import verify_password

    assert verify_password("long-enough-pw", store.user_by_name(db, "dora").password_hash)


def test_web_user_command_refuses_a_short_password(db_url, monkeypatch):
    assert web_user(monkeypatch, db_url, "dora", "--role", "dispatcher", password="short") == 2


def test_web_user_demo_creates_the_demo_accounts_once(db_url, db, monkeypatch):
    from tests import factories
    from web import store
    from web.security import verify_password

    ada = factories.technician(db, "Ada")
    db.commit()
    for _ in range(2):
        assert web_user(monkeypatch, db_url, "demo", "--password", "demo-pass-9") == 0
    db.commit()
    users = {name: store.user_by_name(db, name) for name in ("dispatcher", "admin", f"tech{ada.id}")}
    assert {n: (u.role, u.technician_id) for n, u in users.items()} == {
        "dispatcher": ("dispatcher", None), "admin": ("admin", None), f"tech{ada.id}": ("technician", ada.id)}
    assert all(verify_password("demo-pass-9", u.password_hash) for u in users.values())
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 3


def test_web_user_without_a_role_is_refused_unless_demo(db_url, monkeypatch, capsys):
    assert web_user(monkeypatch, db_url, "dora", password="long-enough-pw") == 2
    assert "--role" in capsys.readouterr().err
