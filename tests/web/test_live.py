from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime

import pytest
from werkzeug.serving import make_server

from fieldops import events
from fieldops.events import Event
from tests.web.conftest import login
from web.live import technician_filter, tracking_filter
from web.sse_client import messages, open_stream

AT = datetime(2026, 3, 2, 12, tzinfo=UTC)


def _event(kind, payload, technician_id=None, job_id=None, event_id=1):
    return Event(event_id, kind, payload, AT, technician_id, job_id)


def test_technician_sees_own_status_events():
    seen = technician_filter(7)(_event(events.JOB_STATUS, {"to": "en_route"}, technician_id=7))
    assert seen is not None


def test_technician_does_not_see_other_technicians_events():
    assert technician_filter(7)(_event(events.JOB_STATUS, {"to": "en_route"}, technician_id=8)) is None


def test_technician_sees_plan_change_that_took_a_job_away():
    change = _event(events.PLAN_CHANGED, {"technician_ids": [7, 8], "job_ids": [3]}, job_id=3)
    assert technician_filter(7)(change) is not None


def test_tracking_sees_its_job_without_details():
    shown = tracking_filter(3, 7)(_event(events.JOB_STATUS, {"to": "on_site", "note": "x"}, 7, 3))
    assert shown.payload == {"job_id": 3, "changed": True}


def test_tracking_does_not_see_other_jobs():
    assert tracking_filter(3, 7)(_event(events.JOB_STATUS, {"to": "on_site"}, 7, 4)) is None


def test_tracking_gets_coarse_position_of_its_technician_on_the_way():
    visible = tracking_filter(3, 7)
    visible(_event(events.JOB_STATUS, {"to": "en_route", "technician_id": 7}, 7, 3))
    shown = visible(_event(events.TECHNICIAN_POSITION, {"lat": 48.123456, "lon": 11.56789}, 7))
    assert shown.payload == {"lat": 48.12, "lon": 11.57}


def test_tracking_gets_no_position_once_on_site():
    visible = tracking_filter(3, 7)
    visible(_event(events.JOB_STATUS, {"to": "on_site", "technician_id": 7}, 7, 3))
    assert visible(_event(events.TECHNICIAN_POSITION, {"lat": 48.1, "lon": 11.5}, 7)) is None


@pytest.fixture
def server(live_app):
    srv = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_port
    srv.shutdown()


def _cookie(live_app, username):
    client = live_app.test_client()
    login(client, username)
    return "fieldops_session=" + client.get_cookie("fieldops_session").value


def _seq(db, event_id: int) -> int:
    """The commit position a committed event is streamed under."""
    return db.execute("SELECT commit_seq FROM events WHERE id = %s", (event_id,)).fetchone()[0]


def _collect(port, cookie, out: queue.Queue, last_event_id=None, *, whole=False, in_query=False) -> threading.Thread:
    """Put each streamed message's id (or the whole message) on ``out``; ``last_event_id`` goes in
    the Last-Event-ID header, or with ``in_query`` in the query (as the pages reopen a stream)."""
    if in_query and last_event_id is not None:
        path, last_event_id = f"/events?last_event_id={last_event_id}", None
    else:
        path = "/events"
    resp = open_stream("127.0.0.1", port, path, cookie=cookie, last_event_id=last_event_id, timeout_s=10)

    def run():
        for message in messages(resp):
            out.put(message if whole else message.id)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_stream_delivers_notified_event_to_dispatcher(server, live_app, people, db):
    got: queue.Queue = queue.Queue()
    _collect(server, _cookie(live_app, "dora"), got)
    published = events.publish(db, events.JOB_STATUS, {"to": "en_route"}, technician_id=1, job_id=1)
    db.commit()
    assert got.get(timeout=5) == _seq(db, published)


@pytest.mark.parametrize("in_query", [False, True], ids=["header", "query"])
def test_stream_resumes_after_last_event_id(server, live_app, people, db, in_query):
    first = events.publish(db, events.JOB_STATUS, {"to": "en_route"}, technician_id=1, job_id=1)
    second = events.publish(db, events.JOB_STATUS, {"to": "on_site"}, technician_id=1, job_id=1)
    db.commit()
    got: queue.Queue = queue.Queue()
    _collect(server, _cookie(live_app, "dora"), got, last_event_id=_seq(db, first), in_query=in_query)
    assert got.get(timeout=5) == _seq(db, second)


def test_stream_resuming_from_an_id_never_given_out_starts_afresh(server, live_app, people, db):
    got: queue.Queue = queue.Queue()
    _collect(server, _cookie(live_app, "dora"), got, last_event_id=10**9)
    published = events.publish(db, events.JOB_STATUS, {"to": "en_route"}, technician_id=1, job_id=1)
    db.commit()
    assert got.get(timeout=5) == _seq(db, published)


def test_technician_stream_skips_other_technicians(server, live_app, people, db):
    got: queue.Queue = queue.Queue()
    _collect(server, _cookie(live_app, "ada"), got)
    events.publish(db, events.JOB_STATUS, {"to": "en_route"}, technician_id=people.bob_technician_id)
    db.commit()
    own = events.publish(db, events.JOB_STATUS, {"to": "en_route"}, technician_id=people.ada_technician_id)
    db.commit()
    assert got.get(timeout=5) == _seq(db, own)


def test_malformed_last_event_id_names_the_header(live_app, people):
    client = live_app.test_client()
    login(client, "dora")
    resp = client.get("/events", headers={"Last-Event-ID": "abc"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "Last-Event-ID"


def test_technician_sees_whole_plan_change_without_its_details():
    shown = technician_filter(7)(_event(events.PLAN_CHANGED, {"plan_id": 4, "warnings": ["job 9: x"]}))
    assert shown.payload == {"plan_id": 4}


def test_hub_delivers_an_event_that_commits_after_a_newer_one(db_url, live_app):
    import psycopg

    hub = live_app.extensions["fieldops"].hub
    sub = hub.subscribe(lambda event: event)
    with psycopg.connect(db_url) as slow, psycopg.connect(db_url) as fast:
        older = events.publish(slow, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
        newer = events.publish(fast, events.JOB_STATUS, {"to": "on_site"}, job_id=2)
        fast.commit()
        assert sub.queue.get(timeout=5).id == newer
        slow.commit()
        assert sub.queue.get(timeout=5).id == older


def test_resuming_page_gets_an_older_event_that_committed_after_its_last_one(server, live_app, people,
                                                                             db_url, db):
    import psycopg

    cookie = _cookie(live_app, "dora")
    first_page: queue.Queue = queue.Queue()
    _collect(server, cookie, first_page, whole=True)
    with psycopg.connect(db_url) as slow, psycopg.connect(db_url) as fast:
        events.publish(slow, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
        events.publish(fast, events.JOB_STATUS, {"to": "on_site"}, job_id=2)
        fast.commit()
        last_seen = first_page.get(timeout=5).id  # the page drops here, having seen the newer event
        slow.commit()
    resumed: queue.Queue = queue.Queue()
    _collect(server, cookie, resumed, last_event_id=last_seen, whole=True)
    assert resumed.get(timeout=5).data["payload"] == {"to": "en_route"}


def test_commit_order_follows_commits_not_ids(db_url, db):
    import psycopg

    with psycopg.connect(db_url) as slow, psycopg.connect(db_url) as fast:
        older = events.publish(slow, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
        newer = events.publish(fast, events.JOB_STATUS, {"to": "on_site"}, job_id=2)
        fast.commit()
        slow.commit()
    assert [e.id for e in events.committed_since(db, 0)] == [newer, older]


def test_uncommitted_event_has_no_commit_position_yet(db_url, db):
    import psycopg

    with psycopg.connect(db_url) as open_tx:
        events.publish(open_tx, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
        seen = open_tx.execute("SELECT commit_seq FROM events").fetchone()[0]
        open_tx.rollback()
    assert seen is None


def test_hub_begun_by_a_stream_delivers_what_commits_before_its_listener_starts(db_url, db):
    from fieldops.db import make_pool
    from web.hub import Hub

    pool = make_pool(db_url, max_size=2, name="hub-test")
    hub = Hub(pool, db_url, poll_s=0.2)
    try:
        sub = hub.subscribe(lambda event: event)
        with pool.connection() as conn:
            hub.begin(conn)  # as a stream does before reading its starting point
        published = events.publish(db, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
        db.commit()
        hub.start()
        assert sub.queue.get(timeout=5).id == published
    finally:
        hub.stop()
        pool.close()


def _listener_pid(db, timeout_s=10.0):
    """The backend of the hub's LISTEN connection on this test's database (waits for it)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        row = db.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                         "AND query = %s", (f"LISTEN {events.CHANNEL}",)).fetchone()
        db.rollback()
        if row is not None or time.monotonic() > deadline:
            assert row is not None, "no LISTEN connection"
            return row[0]
        time.sleep(0.05)


def test_hub_delivers_again_after_its_listen_connection_is_terminated(live_app, db):
    sub = live_app.extensions["fieldops"].hub.subscribe(lambda event: event)
    db.execute("SELECT pg_terminate_backend(%s)", (_listener_pid(db),))
    published = events.publish(db, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
    db.commit()
    assert sub.queue.get(timeout=5).id == published


def test_hub_logs_a_database_outage_once_however_many_reconnects_fail(live_app, pg_admin_url, db,
                                                                     caplog):
    import logging
    import time

    import psycopg

    from web.hub import RECONNECT_FIRST_S

    sub = live_app.extensions["fieldops"].hub.subscribe(lambda event: event)
    name = db.execute("SELECT current_database()").fetchone()[0]
    listener = _listener_pid(db)
    with caplog.at_level(logging.DEBUG, logger="web.hub"), \
            psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(%s)", (listener,))
            time.sleep(RECONNECT_FIRST_S * 5)  # reconnects refused after 0.5 and 1.5 s
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        published = events.publish(db, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
        db.commit()
        assert sub.queue.get(timeout=10).id == published
    hub_records = [r for r in caplog.records if r.name == "web.hub"]
    assert [(r.levelno, r.exc_info) for r in hub_records if r.levelno >= logging.WARNING] == [
        (logging.WARNING, None)]
    assert len([r for r in hub_records if r.levelno == logging.DEBUG]) >= 2, "reconnects were refused"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_hub_thread_ending_unexpectedly_is_logged_as_critical(live_app, db, caplog):
    import logging
    import time

    def leaves(event):
        raise SystemExit  # not an Exception: the listener's retry does not catch it

    live_app.extensions["fieldops"].hub.subscribe(leaves)
    with caplog.at_level(logging.INFO, logger="web.hub"):
        events.publish(db, events.JOB_STATUS, {"to": "en_route"}, job_id=1)
        db.commit()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(r.levelno == logging.CRITICAL
                                                      for r in caplog.records):
            time.sleep(0.05)
    assert [r.name for r in caplog.records if r.levelno == logging.CRITICAL] == ["web.hub"]
