"""Ingest bench: simulated devices -> Mosquitto -> `fieldops ingest` -> PostgreSQL, with both ceilings.

    python -m bench.ingest --devices 200 --seconds 10 --readings-per-message 1 --ingest-processes 1

Starts a private PostgreSQL and a private Mosquitto (config from ingest.broker_config, as the demo),
then measures in the same run:
  1. relay ceiling: publishers -> Mosquitto -> a subscriber process that only acknowledges;
  2. end to end: publishers -> Mosquitto -> N `fieldops ingest` processes (QoS 1, ack after commit);
  3. COPY ceiling: the same number of rows written straight into the same table by TelemetryWriter.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fieldops.config import Settings
from fieldops.db.migrate import migrate
from fieldops.db.repo import catalog
from fieldops.db.repo.telemetry import TelemetryWriter
from fieldops.domain import DeviceModel, GeoPoint, Metric
from fieldops.runtime.mosquitto import LocalMosquitto, broker_user, share_with_broker
from fieldops.runtime.postgres import LocalPostgres, free_port
from ingest.broker_config import hash_password, write_broker_files
from ingest.metrics import SECONDS, Histogram, parse_text
from ingest.topics import Channel, topic

ROOT = Path(__file__).resolve().parents[1]
MODEL = DeviceModel("bench-pump", "Bench pump", (
    Metric(0, "temp_c", "degC", -40, 150), Metric(1, "vibration_mm_s", "mm/s", 0, 50),
    Metric(2, "current_a", "A", 0, 100)))
INSTALLED = datetime(2020, 1, 1, tzinfo=UTC)
ACCOUNTS = {"ingest": "bench-ingest", "bench": "bench-publisher"}


# ---------------------------------------------------------------- publishers (child processes)


def _publisher(port: int, serials: list[str], per_msg: int, seconds: float, window: int, out) -> None:
    """Publish QoS 1 as fast as a window of unacknowledged messages allows; report the count.

    The network loop runs in this same thread (no paho thread): each publish is written at once
    and acknowledgements are read between chunks, which avoids a thread hand-off per message.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("bench", ACCOUNTS["bench"])
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    acked = [0]

    def on_publish(c, u, mid, rc, p):
        acked[0] += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=60)
    while not client.is_connected():
        client.loop(timeout=0.1)
    topics = [topic(s, Channel.TELEMETRY) for s in serials]
    last = [0] * len(serials)
    sent = 0
    tail = '"metrics": {"temp_c": 21.5, "vibration_mm_s": 1.25, "current_a": 12.0}}'
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        if sent - acked[0] >= window:
            client.loop(timeout=0.01)
            continue
        for _ in range(100):
            d = i % len(serials)
            i += 1
            now_ms = int(time.time() * 1000)
            base = max(now_ms, last[d] + per_msg)
            last[d] = base
            if per_msg == 1:
                body = f'{{"ts": {base}, "seq": {base}, {tail}'
            else:
                body = "[" + ", ".join(
                    f'{{"ts": {t}, "seq": {t}, {tail}' for t in range(base - per_msg + 1, base + 1)) + "]"
            client.publish(topics[d], body, qos=1)
            sent += 1
        client.loop(timeout=0)
    deadline = time.monotonic() + 60
    while acked[0] < sent and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    client.disconnect()
    out.put(acked[0])


def _publish(port, serials, per_msg, seconds, window, publishers) -> tuple[int, float, float]:
    """Run publisher processes; (messages acknowledged by the broker, start, end)."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    chunks = [serials[i::publishers] for i in range(publishers)]
    procs = [ctx.Process(target=_publisher, args=(port, c, per_msg, seconds, window, q)) for c in chunks]
    start = time.time()
    for p in procs:
        p.start()
    total = sum(q.get(timeout=seconds + 120) for _ in procs)
    end = time.time()
    for p in procs:
        p.join(10)
    return total, start, end


def _relay_subscriber(port: int, expected: mp.Value, received: mp.Value, ready) -> None:
    """A subscriber that does nothing but acknowledge (the broker relay ceiling)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-relay", protocol=mqtt.MQTTv5)
    client.username_pw_set("ingest", ACCOUNTS["ingest"])
    count = [0]

    def on_message(c, u, m):
        count[0] += 1

    def on_connect(c, u, f, rc, p):
        c.subscribe(f"fieldops/v1/devices/+/{Channel.TELEMETRY.value}", qos=1)

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: ready.set()
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 20_000
    client.connect("127.0.0.1", port, properties=props)
    client.loop_start()
    while True:
        time.sleep(0.01)
        received.value = count[0]
        if expected.value and count[0] >= expected.value:
            break
    client.disconnect()
    client.loop_stop()


# ---------------------------------------------------------------- set-up


def _setup(tmp: Path, devices: int):
    pg = LocalPostgres(tmp / "pg").start()
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    url = pg.url_for("bench")
    migrate(url, Settings(env="test"))
    with psycopg.connect(url) as conn:
        catalog.upsert_device_model(conn, MODEL)
        customer = catalog.create_customer(conn, "Bench")
        site = catalog.create_site(conn, customer.id, "Bench site", "1 Bench road", GeoPoint(48.1, 11.5))
        serials = [f"bench-{i:05d}" for i in range(devices)]
        for s in serials:
            catalog.create_device(conn, s, MODEL.code, site.id, INSTALLED)
        conn.commit()
    port = free_port()
    directory = tmp / "mosquitto"
    config = write_broker_files(directory, port=port, run_as=broker_user(),
                                hashes={u: hash_password(p) for u, p in ACCOUNTS.items()},
                                service_users={"ingest": "read", "bench": "readwrite"}, log_to_file=True)
    for path in [tmp, directory, directory / "data", *directory.iterdir()]:
        share_with_broker(path)
    broker = LocalMosquitto(config, port).start()
    return pg, url, broker, port, serials


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return parse_text(resp.read().decode())


def _spawn_ingest(url: str, broker_port: int, index: int, metrics_port: int) -> subprocess.Popen:
    env = {**os.environ, "FIELDOPS_ENV": "test", "FIELDOPS_DATABASE_URL": url,
           "FIELDOPS_MQTT_HOST": "127.0.0.1", "FIELDOPS_MQTT_PORT": str(broker_port),
           "FIELDOPS_MQTT_USERNAME": "ingest", "FIELDOPS_MQTT_PASSWORD": ACCOUNTS["ingest"],
           "FIELDOPS_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "fieldops.cli", "ingest", "--client-id",
                             f"bench-ingest-{index}", "--metrics-port", str(metrics_port)], cwd=ROOT, env=env)


def _latency(figures: list[dict[str, float]]) -> Histogram:
    merged = Histogram(SECONDS)
    for f in figures:
        prev = 0.0
        for i, bound in enumerate(SECONDS):
            cum = f.get(f'ingest_reading_age_at_commit_seconds_bucket{{le="{bound}"}}', 0.0)
            merged.counts[i] += int(cum - prev)
            prev = cum
        merged.counts[-1] += int(f.get("ingest_reading_age_at_commit_seconds_count", 0.0) - prev)
        merged.n += int(f.get("ingest_reading_age_at_commit_seconds_count", 0.0))
    return merged


# ---------------------------------------------------------------- phases


def relay_ceiling(port, serials, args) -> float:
    ctx = mp.get_context("fork")
    expected, received, ready = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
    sub = ctx.Process(target=_relay_subscriber, args=(port, expected, received, ready))
    sub.start()
    ready.wait(10)
    published, start, _ = _publish(port, serials, args.readings_per_message, args.seconds, args.window,
                                   args.publishers)
    expected.value = published
    sub.join(120)
    done = time.time()
    return received.value * args.readings_per_message / (done - start)


def end_to_end(url, port, serials, args) -> dict:
    ports = [free_port() for _ in range(args.ingest_processes)]
    procs = [_spawn_ingest(url, port, i, p) for i, p in enumerate(ports)]
    try:
        for p in ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if _metrics(p)["ingest_broker_connected"] == 1:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("ingest did not connect")
                time.sleep(0.1)
        time.sleep(0.5)
        before = _count(url)
        published, start, _ = _publish(port, serials, args.readings_per_message, args.seconds, args.window,
                                       args.publishers)
        expected = published * args.readings_per_message
        deadline = time.time() + 120
        stored = 0
        while time.time() < deadline:
            stored = _count(url) - before
            if stored >= expected:
                break
            time.sleep(0.02)
        done = time.time()
        figures = [_metrics(p) for p in ports]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    with psycopg.connect(url) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, ts)) FROM telemetry").fetchone()
    lat = _latency(figures)
    return {
        "published": expected, "stored": stored, "lost": max(0, expected - stored),
        "duplicates": rows - distinct,
        "redeliveries_dropped": int(sum(f["ingest_readings_duplicate_total"] for f in figures)),
        "readings_per_s": round(stored / (done - start)),
        "per_process_messages": [int(f["ingest_messages_received_total"]) for f in figures],
        "p50_ms": round(lat.quantile(0.5) * 1000, 1), "p99_ms": round(lat.quantile(0.99) * 1000, 1),
    }


def copy_ceiling(url, n_rows: int, n_devices: int, batch_rows: int) -> float:
    """COPY the same number of rows (same shape) into the same table, batch by batch."""
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM devices ORDER BY id LIMIT %s", (n_devices,))]
        writer = TelemetryWriter(conn)
        base = datetime.now(UTC) - timedelta(days=2)
        rows = [(ids[i % len(ids)], base + timedelta(milliseconds=i // len(ids)), i, [21.5, 1.25, 12.0])
                for i in range(n_rows)]
        started = time.perf_counter()
        for i in range(0, n_rows, batch_rows):
            writer.write(rows[i:i + batch_rows])
            conn.commit()
        return n_rows / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--readings-per-message", type=int, default=1)
    parser.add_argument("--ingest-processes", type=int, default=1)
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes")
    parser.add_argument("--window", type=int, default=500,
                        help="unacknowledged publishes per publisher (paho scans its in-flight list on "
                             "every acknowledgement, so a huge window is slower)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fieldops-bench-") as tmpdir:
        tmp = Path(tmpdir)
        pg, url, broker, port, serials = _setup(tmp, args.devices)
        try:
            relay = relay_ceiling(port, serials, args)
            e2e = end_to_end(url, port, serials, args)
            copy_rate = copy_ceiling(url, max(e2e["stored"], 10_000), args.devices, 5000)
        finally:
            broker.stop()
            pg.stop("fast")
    result = {
        "bench": "ingest", "devices": args.devices, "seconds": args.seconds,
        "readings_per_message": args.readings_per_message, "ingest_processes": args.ingest_processes,
        **e2e,
        "relay_ceiling_readings_per_s": round(relay), "copy_ceiling_readings_per_s": round(copy_rate),
        "ratio_to_relay": round(e2e["readings_per_s"] / relay, 3),
        "ratio_to_copy": round(e2e["readings_per_s"] / copy_rate, 3),
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
