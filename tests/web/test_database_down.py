"""No usable database connection answers 503 with Retry-After, logged once, never a bare 500."""

from __future__ import annotations

import logging
import time

import pytest

from fieldops.config import Settings
from fieldops.db import make_pool
from fieldops.runtime.postgres import LocalPostgres
from tests.web.conftest import clock, login, route_running
from web.app import close_app, create_app
from web.context import EXTENSION

UNAVAILABLE = {"error": "database unavailable, retry shortly"}


@pytest.fixture
def one_connection_app(web_settings):
    """An app whose pool has one connection and gives up waiting for it after 0.2 s."""
    pool = make_pool(web_settings.database_url, min_size=1, max_size=1, timeout_s=0.2, name="one")
    app = create_app(web_settings, pool=pool, start_hub=False, clock=clock())
    yield app
    close_app(app)


@pytest.fixture
def signed_in_dora(one_connection_app, people):
    client = one_connection_app.test_client()
    login(client, "dora")
    return client


def _holding_the_only_connection(app):
    return app.extensions[EXTENSION].pool.connection()


def test_api_answers_503_with_retry_after_when_no_connection_is_free(one_connection_app, signed_in_dora):
    with _holding_the_only_connection(one_connection_app):
        resp = signed_in_dora.get("/api/jobs")
    assert (resp.status_code, resp.get_json()) == (503, UNAVAILABLE)
    assert int(resp.headers["Retry-After"]) > 0


def test_page_answers_a_short_503_page_when_no_connection_is_free(one_connection_app, signed_in_dora):
    with _holding_the_only_connection(one_connection_app):
        resp = signed_in_dora.get("/console/")
    assert resp.status_code == 503 and resp.mimetype == "text/html"
    assert "retry shortly" in resp.get_data(as_text=True) and "Retry-After" in resp.headers


def test_unavailable_database_is_logged_once_as_a_warning_without_traceback(
        one_connection_app, signed_in_dora, caplog):
    with caplog.at_level(logging.INFO), _holding_the_only_connection(one_connection_app):
        signed_in_dora.get("/api/jobs")
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelno, r.exc_info) for r in loud] == [(logging.WARNING, None)]
    assert "/api/jobs" in loud[0].getMessage()


@pytest.fixture
def stopped_cluster_app(tmp_path):
    """An app whose pool was opened on a private cluster that has since been stopped."""
    cluster = LocalPostgres(tmp_path / "pg", fast_unsafe=True).start()
    settings = Settings(env="test", database_url=cluster.url, secret_key="t" * 40)
    pool = make_pool(cluster.url, min_size=1, max_size=2, timeout_s=0.5, name="stopped")
    app = create_app(settings, pool=pool, start_hub=False, clock=clock())
    cluster.stop("fast")
    yield app
    close_app(app)
    cluster.stop("immediate")


def test_app_pool_waits_for_a_connection_as_long_as_the_setting_says(web_settings):
    app = create_app(web_settings.with_(web_pool_timeout_s=2.5), start_hub=False, clock=clock())
    try:
        assert app.extensions[EXTENSION].pool.timeout == 2.5
    finally:
        close_app(app)


def test_page_answers_503_when_the_database_server_is_stopped(stopped_cluster_app):
    resp = stopped_cluster_app.test_client().get("/track/some-token")
    assert resp.status_code == 503 and "Retry-After" in resp.headers


@pytest.fixture
def cluster_not_running(tmp_path):
    """A private cluster, initialised but not started."""
    cluster = LocalPostgres(tmp_path / "pg", fast_unsafe=True)
    cluster.init()
    yield cluster
    cluster.stop("immediate")


def _first_status_other_than(client, path, status, timeout_s=30.0):
    """Ask for ``path`` until the answer is not ``status`` (for at most ``timeout_s``); its status."""
    deadline = time.monotonic() + timeout_s
    while (got := client.get(path).status_code) == status and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_app_starts_while_the_database_is_down_and_serves_once_it_is_up(cluster_not_running):
    settings = Settings(env="test", database_url=cluster_not_running.url, secret_key="t" * 40,
                        web_pool_timeout_s=0.5)
    app = create_app(settings, clock=clock())
    try:
        route_running(app, "/api/ping", "SELECT 1")
        client = app.test_client()
        assert client.get("/api/ping").status_code == 503
        cluster_not_running.start()
        assert _first_status_other_than(client, "/api/ping", 503) == 200
    finally:
        close_app(app)


def test_connection_lost_while_in_use_answers_503(app):
    route_running(app, "/api/lost", "SELECT pg_terminate_backend(pg_backend_pid())")
    resp = app.test_client().get("/api/lost")
    assert (resp.status_code, resp.get_json()) == (503, UNAVAILABLE)


def test_cancelled_statement_is_not_mistaken_for_an_outage(app):
    route_running(app, "/api/slow", "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)")
    assert app.test_client().get("/api/slow").status_code == 500


def test_openapi_documents_the_503_and_its_retry_after(app):
    doc = app.test_client().get("/api/openapi.json").get_json()
    answer = doc["paths"]["/api/jobs"]["get"]["responses"]["503"]
    assert "Retry-After" in answer["headers"]
