"""Faults against the real broker and database: outages, restarts, SIGKILL, two consumers."""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from fieldops.config import Settings
from fieldops.db.migrate import migrate
from fieldops.db.repo import telemetry as telemetry_repo
from fieldops.runtime.mosquitto import LocalMosquitto, broker_user, share_with_broker
from fieldops.runtime.postgres import LocalPostgres, free_port
from ingest.broker_config import hash_password, write_broker_files
from ingest.metrics import parse_text
from tests import factories
from tests.factories import T0
from tests.ingest.helpers import (
    client_id,
    forget_session,
    publish_all,
    publisher,
    reading,
    running_consumer,
    telemetry,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


def _messages(serial, start, n):
    return [telemetry(serial, reading(T0 + timedelta(seconds=i), i)) for i in range(start, start + n)]


def _count(url, device_id):
    with psycopg.connect(url) as conn:
        return telemetry_repo.count(conn, device_id)


# ---------------------------------------------------------------- database down


@pytest.fixture
def private_db(tmp_path):
    cluster = LocalPostgres(tmp_path / "pg", fast_unsafe=True).start()
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE ingest_fault")
    url = cluster.url_for("ingest_fault")
    migrate(url, Settings(env="test"))
    yield cluster, url
    cluster.stop("immediate")


def test_database_restart_loses_nothing(private_db, mqtt_broker, operator):
    cluster, url = private_db
    with psycopg.connect(url) as conn:
        pump = factories.device(conn)
        conn.commit()
    settings = Settings(env="test", database_url=url, mqtt_host="127.0.0.1", mqtt_port=mqtt_broker.port,
                        mqtt_username=mqtt_broker.ingest_user, mqtt_password=mqtt_broker.ingest_password)
    with running_consumer(settings, retry_initial_s=0.1, retry_max_s=1.0) as consumer:
        publish_all(operator, _messages(pump.serial, 0, 200))
        wait_until(lambda: _count(url, pump.id) == 200, what="the first 200 readings")
        cluster.stop("fast")
        publish_all(operator, _messages(pump.serial, 200, 300))
        wait_until(lambda: consumer.metrics.flush_failures > 0, what="a failed write while the database is down")
        assert consumer.metrics.readings_stored == 200  # nothing more committed, so nothing more acked
        cluster.start()
        wait_until(lambda: _count(url, pump.id) == 500, timeout_s=60, what="all 500 readings")
        assert consumer.metrics.readings_duplicate == 0


# ---------------------------------------------------------------- broker restart


@pytest.fixture
def private_broker(tmp_path):
    """A broker of our own (same generated config as the demo) that the test may restart."""
    port = free_port()
    directory = tmp_path / "mosquitto"
    accounts = {"ingest": "ingest-pw", "operator": "operator-pw"}
    config = write_broker_files(directory, port=port, run_as=broker_user(), log_to_file=True,
                                hashes={u: hash_password(p) for u, p in accounts.items()},
                                service_users={"ingest": "read", "operator": "readwrite"})
    for path in [directory, directory / "data", *directory.iterdir()]:
        share_with_broker(path)
    broker = LocalMosquitto(config, port).start()
    yield broker
    broker.stop()


def test_broker_restart_reconnects_resubscribes_and_delivers_queued_messages(db, db_url, pump, private_broker):
    settings = Settings(env="test", database_url=db_url, mqtt_host="127.0.0.1", mqtt_port=private_broker.port,
                        mqtt_username="ingest", mqtt_password="ingest-pw")
    cid = client_id()
    with running_consumer(settings, client_id=cid) as consumer:
        pub = publisher(private_broker.port, "operator", "operator-pw")
        publish_all(pub, _messages(pump.serial, 0, 100))
        wait_until(lambda: _count(db_url, pump.id) == 100, what="readings before the restart")
        pub.disconnect()
        pub.loop_stop()
        private_broker.restart()
        # Mosquitto 2.0 does not restore shared subscriptions from its persistence file: the
        # consumer's re-subscription is what makes new messages flow again.
        wait_until(lambda: consumer.subscribe_count == 2, what="the re-subscription")
        pub = publisher(private_broker.port, "operator", "operator-pw")
        publish_all(pub, _messages(pump.serial, 100, 100))
        wait_until(lambda: _count(db_url, pump.id) == 200, timeout_s=60, what="readings after the restart")
        pub.disconnect()
        pub.loop_stop()


def test_messages_queued_while_consumer_and_broker_were_down_arrive(db, db_url, pump, private_broker):
    settings = Settings(env="test", database_url=db_url, mqtt_host="127.0.0.1", mqtt_port=private_broker.port,
                        mqtt_username="ingest", mqtt_password="ingest-pw")
    cid = client_id()
    with running_consumer(settings, forget=False, client_id=cid):
        pass  # subscribed once; stopping leaves the persistent session behind
    pub = publisher(private_broker.port, "operator", "operator-pw")
    publish_all(pub, _messages(pump.serial, 0, 150))
    pub.disconnect()
    pub.loop_stop()
    private_broker.restart()  # the queue survives in the broker's persistence file
    with running_consumer(settings, client_id=cid):
        wait_until(lambda: _count(db_url, pump.id) == 150, timeout_s=60, what="the queued readings")


# ---------------------------------------------------------------- ingest processes


def _spawn(settings: Settings, cid: str, metrics_port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "FIELDOPS_ENV": "test",
        "FIELDOPS_DATABASE_URL": settings.database_url,
        "FIELDOPS_MQTT_HOST": "127.0.0.1",
        "FIELDOPS_MQTT_PORT": str(settings.mqtt_port),
        "FIELDOPS_MQTT_USERNAME": settings.mqtt_username,
        "FIELDOPS_MQTT_PASSWORD": settings.mqtt_password,
        "FIELDOPS_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "fieldops.cli", "ingest", "--client-id", cid,
         "--metrics-port", str(metrics_port), "--batch-messages", "200", "--batch-age-ms", "50"],
        cwd=ROOT, env=env,
    )


def _metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return parse_text(resp.read().decode())


def _wait_metrics(port):
    wait_until(lambda: _try_metrics(port), timeout_s=30, what="the metrics endpoint")


def _try_metrics(port):
    try:
        return _metrics(port)["ingest_broker_connected"] == 1
    except OSError:
        return False


def test_sigkill_mid_stream_stores_everything_exactly_once(db, settings, pump, operator):
    cid = client_id()
    port = free_port()
    proc = _spawn(settings, cid, port)
    try:
        _wait_metrics(port)
        total = 3000
        publishing = threading.Thread(target=lambda: [
            (publish_all(operator, _messages(pump.serial, start, 100)), time.sleep(0.05))
            for start in range(0, total, 100)])
        publishing.start()
        wait_until(lambda: _count(settings.database_url, pump.id) > 300, what="some readings stored")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        time.sleep(0.5)
        proc = _spawn(settings, cid, port)
        publishing.join(120)
        wait_until(lambda: _count(settings.database_url, pump.id) == total, timeout_s=90,
                   what="every reading after the restart")
        rows = db.execute("SELECT count(*), count(DISTINCT seq) FROM telemetry").fetchone()
        assert rows == (total, total)
    finally:
        proc.kill()
        proc.wait(10)
        forget_session(settings.mqtt_port, settings.mqtt_username, settings.mqtt_password, cid)


def test_two_consumers_share_the_load_and_store_nothing_twice(db, settings, pump, operator):
    ids, ports = [client_id(), client_id()], [free_port(), free_port()]
    procs = [_spawn(settings, c, p) for c, p in zip(ids, ports, strict=True)]
    try:
        for port in ports:
            _wait_metrics(port)
        total = 2000
        publish_all(operator, _messages(pump.serial, 0, total))
        wait_until(lambda: _count(settings.database_url, pump.id) == total, timeout_s=60, what="all readings")
        time.sleep(0.3)
        figures = [_metrics(p) for p in ports]
        received = [f["ingest_messages_received_total"] for f in figures]
        assert all(r > 0 for r in received), f"both consumers take part: {received}"
        assert sum(f["ingest_readings_duplicate_total"] for f in figures) == 0
        assert sum(f["ingest_readings_stored_total"] for f in figures) == total
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        for cid in ids:
            forget_session(settings.mqtt_port, settings.mqtt_username, settings.mqtt_password, cid)


# ---------------------------------------------------------------- a commit held up


def test_nothing_is_acknowledged_while_a_commit_is_held_up(db, settings, pump, operator):
    cid = client_id()
    with running_consumer(settings, client_id=cid, batch_messages=10, batch_age_s=0.05) as consumer, \
            psycopg.connect(settings.database_url) as locker:
        # The writer's batch updates the pump's last_seen: the row lock held here blocks its commit.
        locker.execute("SELECT 1 FROM devices WHERE id = %s FOR UPDATE", [pump.id])
        publish_all(operator, _messages(pump.serial, 0, 50))
        wait_until(lambda: _writer_waits_on_a_lock(db, cid), what="the writer blocked by the lock")
        assert consumer.metrics.messages_acknowledged == 0
        assert _count(settings.database_url, pump.id) == 0
        locker.rollback()
        wait_until(lambda: consumer.metrics.messages_acknowledged == 50, what="every message acknowledged")
        assert _count(settings.database_url, pump.id) == 50
        assert consumer.metrics.readings_duplicate == 0


def _writer_waits_on_a_lock(db, cid):
    db.rollback()
    return db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                      "AND wait_event_type = 'Lock'", [f"fieldops-{cid}-writer"]).fetchone()[0] == 1
