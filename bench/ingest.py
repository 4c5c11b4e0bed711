"""Ingest bench: simulated devices -> Mosquitto -> `fieldops ingest` -> PostgreSQL, with both ceilings.

    python -m bench.ingest --devices 200 --seconds 10 --readings-per-message 1 --ingest-processes 1

Starts a private PostgreSQL and a private Mosquitto (config from ingest.broker_config, as the demo),
then measures in the same run:
  1. relay ceiling: publishers -> Mosquitto -> a lean raw-socket subscriber that only acknowledges
     (same shared-subscription form and receive maximum as the consumer);
  2. end to end: publishers -> Mosquitto -> N `fieldops ingest` processes (QoS 1, ack after commit);
  3. COPY ceiling: the same number of rows written straight into the same table by TelemetryWriter
     (its columnar path, in batches as large as the consumer's mean batch, on as many connections
     as ingest processes).
Publishers are lean raw-socket MQTT 5 clients (pre-encoded PUBLISH packets, a PUBACK window).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from fieldops.config import Settings
from fieldops.db import schema
from fieldops.db.migrate import migrate
from fieldops.db.repo import catalog
from fieldops.db.repo.telemetry import PG_EPOCH, Columns, TelemetryWriter
from fieldops.domain import DeviceModel, GeoPoint, Metric
from fieldops.runtime.mosquitto import LocalMosquitto, broker_user, share_with_broker
from fieldops.runtime.postgres import LocalPostgres, free_port
from ingest.broker_config import hash_password, write_broker_files
from ingest.consumer import ConsumerConfig
from ingest.metrics import SECONDS, Histogram, parse_text
from ingest.mqtt_client import read_varint
from ingest.topics import Channel, topic

ROOT = Path(__file__).resolve().parents[1]
MODEL = DeviceModel("bench-pump", "Bench pump", (
    Metric(0, "temp_c", "degC", -40, 150), Metric(1, "vibration_mm_s", "mm/s", 0, 50),
    Metric(2, "current_a", "A", 0, 100)))
INSTALLED = datetime(2020, 1, 1, tzinfo=UTC)
ACCOUNTS = {"ingest": "bench-ingest", "bench": "bench-publisher"}


# ---------------------------------------------------------------- lean MQTT 5 (raw sockets)
#
# The load generator and the relay-ceiling subscriber speak MQTT 5 over plain sockets (like
# emqtt-bench): pre-encoded packets written many at a time, acknowledgements read in bulk. A
# Python MQTT library costs more CPU per message than the broker does, and on a 2-core machine
# that CPU would be taken from the broker and the consumer under test.

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 0x10, 0x20, 0x30, 0x40, 0x80, 0x90
RECEIVE_MAXIMUM = 0x21  # MQTT 5 property identifier


def varint(n: int) -> bytes:
    """MQTT variable byte integer."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def mqtt_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(client_id: str, user: str, password: str, *, receive_maximum: int | None = None) -> bytes:
    """CONNECT (MQTT 5, clean start, user name and password, keepalive 60 s)."""
    props = b"" if receive_maximum is None else bytes([RECEIVE_MAXIMUM]) + receive_maximum.to_bytes(2, "big")
    body = (mqtt_string("MQTT") + bytes([5, 0xC2]) + (60).to_bytes(2, "big") + varint(len(props)) + props
            + mqtt_string(client_id) + mqtt_string(user) + mqtt_string(password))
    return bytes([CONNECT]) + varint(len(body)) + body


def publish_packet(topic_field: bytes, mid: int, payload: bytes) -> bytes:
    """PUBLISH at QoS 1 without properties; ``topic_field`` is ``mqtt_string(topic)``."""
    return (b"\x32" + varint(len(topic_field) + 3 + len(payload)) + topic_field + mid.to_bytes(2, "big")
            + b"\x00" + payload)


def subscribe_packet(topic_filter: str, mid: int = 1) -> bytes:
    body = mid.to_bytes(2, "big") + b"\x00" + mqtt_string(topic_filter) + b"\x01"  # QoS 1
    return bytes([SUBSCRIBE | 0x02]) + varint(len(body)) + body


def split_packets(buf: bytearray) -> list[tuple[int, memoryview]]:
    """Complete packets (first byte, body) at the start of ``buf``; removes them from it."""
    out = []
    view = memoryview(bytes(buf))
    pos, size = 0, len(view)
    while pos + 2 <= size:
        try:
            length, i = read_varint(view, pos + 1)
        except IndexError:
            break
        if i + length > size:
            break
        out.append((view[pos], view[i:i + length]))
        pos = i + length
    del buf[:pos]
    return out


class RawSession:
    """One MQTT 5 connection over a plain socket."""

    def __init__(self, port: int, client_id: str, user: str, password: str, *,
                 receive_maximum: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.sock.sendall(connect_packet(client_id, user, password, receive_maximum=receive_maximum))
        first, body = self.expect(CONNACK)
        if body[1] != 0:
            raise ConnectionError(f"broker refused the connection: reason code {body[1]:#x}")
        self.receive_maximum = _property(body[2:], RECEIVE_MAXIMUM) or 65_535

    def read(self, timeout: float | None) -> list[tuple[int, memoryview]]:
        """Packets received within ``timeout`` seconds (0: only what is there)."""
        if timeout is not None and not select.select([self.sock], [], [], timeout)[0]:
            return []
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("broker closed the connection")
        self.buf += data
        return split_packets(self.buf)

    def expect(self, kind: int) -> tuple[int, memoryview]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for first, body in self.read(0.5):
                if first & 0xF0 == kind:
                    return first, body
        raise TimeoutError(f"no packet {kind:#x} from the broker")

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()


def _property(props: memoryview, ident: int) -> int | None:
    """A two-byte integer property from a CONNACK's properties (length prefix included)."""
    length, i = read_varint(props, 0)
    end = i + length
    while i < end:
        key = props[i]
        i += 1
        if key == ident:
            return int.from_bytes(props[i:i + 2], "big")
        if key in (0x11, 0x27):  # four-byte integers
            i += 4
        elif key in (0x21, 0x22, 0x13):  # two-byte integers
            i += 2
        elif key in (0x24, 0x25, 0x28, 0x29, 0x2A):  # bytes
            i += 1
        elif key == 0x26:  # user property: two strings
            i += 2 + int.from_bytes(props[i:i + 2], "big")
            i += 2 + int.from_bytes(props[i:i + 2], "big")
        else:  # strings and binary data
            i += 2 + int.from_bytes(props[i:i + 2], "big")
    return None


def bodies(serials: list[str], per_msg: int) -> Iterator[tuple[int, bytes]]:
    """Endless (device index, JSON payload) with per-device increasing, unique timestamps near now."""
    one = b'{"ts": %d, "seq": %d, "metrics": {"temp_c": 21.5, "vibration_mm_s": 1.25, "current_a": 12.0}}'
    template = one if per_msg == 1 else b"[" + b", ".join([one] * per_msg) + b"]"
    last = [0] * len(serials)
    i = 0
    while True:
        now_ms = int(time.time() * 1000)
        for _ in range(1000):
            d = i % len(serials)
            i += 1
            base = max(now_ms, last[d] + per_msg)
            last[d] = base
            stamps = range(base - per_msg + 1, base + 1)
            yield d, template % tuple(t for t in stamps for _ in (0, 1))


def raw_publish(port: int, serials: list[str], per_msg: int, seconds: float, window: int,
                user: str = "bench", password: str = ACCOUNTS["bench"], rate: float = 0.0) -> tuple[int, int]:
    """Publish QoS 1 for ``seconds`` keeping at most ``window`` unacknowledged, at most ``rate``
    messages per second (0: as fast as the window allows); (acked, refused)."""
    session = RawSession(port, f"bench-pub-{os.getpid()}-{time.monotonic_ns()}", user, password)
    window = min(window, session.receive_maximum, 65_535)
    topics = [mqtt_string(topic(s, Channel.TELEMETRY)) for s in serials]
    source = bodies(serials, per_msg)
    sent = acked = refused = 0
    mid = 0
    began = time.monotonic()
    end = began + seconds
    while time.monotonic() < end:
        room = window - (sent - acked - refused)
        if rate:
            room = min(room, int(rate * (time.monotonic() - began)) - sent)
        if room > 0:
            chunk = []
            for _ in range(min(room, 200)):
                d, body = next(source)
                mid = mid % 65_535 + 1
                chunk.append(publish_packet(topics[d], mid, body))
            session.sock.sendall(b"".join(chunk))
            sent += len(chunk)
        for first, body in session.read(0 if room > 200 else 0.05):
            if first & 0xF0 == PUBACK:
                if len(body) > 2 and body[2] >= 0x80:
                    refused += 1
                else:
                    acked += 1
    deadline = time.monotonic() + 60
    while acked + refused < sent and time.monotonic() < deadline:
        for first, body in session.read(0.1):
            if first & 0xF0 == PUBACK:
                if len(body) > 2 and body[2] >= 0x80:
                    refused += 1
                else:
                    acked += 1
    session.close()
    return acked, refused


def _publisher(port: int, serials: list[str], per_msg: int, seconds: float, window: int, rate: float,
               out) -> None:
    acked, refused = raw_publish(port, serials, per_msg, seconds, window, rate=rate)
    if refused:
        raise RuntimeError(f"the broker refused {refused} publishes")
    out.put(acked)


def _publish(port, serials, per_msg, seconds, window, publishers, rate=0.0) -> tuple[int, float, float]:
    """Run publisher processes; (messages acknowledged by the broker, start, end)."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    chunks = [serials[i::publishers] for i in range(publishers)]
    procs = [ctx.Process(target=_publisher, args=(port, c, per_msg, seconds, window, rate / publishers, q)) for c in chunks]
    start = time.time()
    for p in procs:
        p.start()
    total = sum(q.get(timeout=seconds + 120) for _ in procs)
    end = time.time()
    for p in procs:
        p.join(10)
    return total, start, end


def raw_subscribe(port: int, topic_filter: str, stop: Callable[[int], bool], *, user: str = "ingest",
                  password: str = ACCOUNTS["ingest"], receive_maximum: int = 20_000,
                  on_ready: Callable[[], None] = lambda: None,
                  keep: list[tuple[bytes, bytes]] | None = None) -> int:
    """Receive QoS 1 messages and acknowledge them at once, until ``stop(count)``; the count.

    ``keep`` collects (topic, payload) of every message (tests); the bench keeps nothing.
    """
    session = RawSession(port, f"bench-relay-{os.getpid()}", user, password, receive_maximum=receive_maximum)
    session.sock.sendall(subscribe_packet(topic_filter))
    _, body = session.expect(SUBACK)
    if body[-1] >= 0x80:
        raise ConnectionError(f"subscription refused: reason code {body[-1]:#x}")
    on_ready()
    count = 0
    while not stop(count):
        acks = []
        for first, body in session.read(0.05):
            if first & 0xF0 != PUBLISH:
                continue
            n = int.from_bytes(body[:2], "big")
            if first & 0x06:
                acks.append(b"\x40\x02" + bytes(body[2 + n:4 + n]))
            if keep is not None:
                props, start = read_varint(body, 4 + n if first & 0x06 else 2 + n)
                keep.append((bytes(body[2:2 + n]), bytes(body[start + props:])))
            count += 1
        if acks:
            session.sock.sendall(b"".join(acks))
    session.close()
    return count


def _relay_subscriber(port: int, expected: mp.Value, received: mp.Value, ready) -> None:
    """A subscriber that does nothing but acknowledge (the broker relay ceiling)."""

    def stop(count: int) -> bool:
        received.value = count
        return bool(expected.value) and count >= expected.value

    raw_subscribe(port, f"$share/relay/fieldops/v1/devices/+/{Channel.TELEMETRY.value}", stop,
                  on_ready=ready.set, receive_maximum=ConsumerConfig().buffer_messages)


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


def _stat(pid: int | str) -> tuple[int, float]:
    """(parent pid, CPU seconds user + system so far) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    return _stat(pid)[1]


def _cluster_cpu_s(data_dir: Path) -> dict[int, float]:
    """CPU seconds used so far by each live process of the PostgreSQL cluster (postmaster children)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent, cpu = _stat(entry.name)
        except OSError:  # ended meanwhile
            continue
        if parent == postmaster or int(entry.name) == postmaster:
            out[int(entry.name)] = cpu
    return out


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


def relay_ceiling(port, serials, args, broker_pid: int) -> tuple[float, float]:
    """(relay rate in readings/s, the broker's CPU microseconds per relayed message)."""
    ctx = mp.get_context("fork")
    expected, received, ready = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
    sub = ctx.Process(target=_relay_subscriber, args=(port, expected, received, ready))
    sub.start()
    ready.wait(10)
    broker_before = _cpu_s(broker_pid)
    # A ceiling: always open loop, whatever --rate offers the end-to-end phase.
    published, start, _ = _publish(port, serials, args.readings_per_message, args.seconds, args.window,
                                   args.publishers)
    expected.value = published
    sub.join(120)
    done = time.time()
    broker_us = (_cpu_s(broker_pid) - broker_before) / max(received.value, 1) * 1e6
    return received.value * args.readings_per_message / (done - start), broker_us


def end_to_end(url, port, serials, args, pg_dir: Path, broker_pid: int) -> dict:
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
        cpu_before = {p.pid: _cpu_s(p.pid) for p in procs}
        pg_before = _cluster_cpu_s(pg_dir)
        broker_before = _cpu_s(broker_pid)
        published, start, _ = _publish(port, serials, args.readings_per_message, args.seconds, args.window,
                                       args.publishers, args.rate)
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
        cpu_s = sum(_cpu_s(p.pid) - cpu_before[p.pid] for p in procs)
        pg_cpu_s = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in _cluster_cpu_s(pg_dir).items())
        broker_cpu_s = _cpu_s(broker_pid) - broker_before
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    with psycopg.connect(url) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, ts)) FROM telemetry").fetchone()
    lat = _latency(figures)
    batches = int(sum(f["ingest_batches_total"] for f in figures))
    return {
        "published": expected, "stored": stored, "lost": max(0, expected - stored),
        "duplicates": rows - distinct,
        "redeliveries_dropped": int(sum(f["ingest_readings_duplicate_total"] for f in figures)),
        "readings_per_s": round(stored / (done - start)),
        "per_process_messages": [int(f["ingest_messages_received_total"]) for f in figures],
        # load-independent-ish cost of the consumer: CPU time of the ingest processes per reading
        "ingest_cpu_us_per_reading": round(cpu_s / max(stored, 1) * 1e6, 2),
        # and of the PostgreSQL cluster (all its processes) over the same span
        "postgres_cpu_us_per_reading": round(pg_cpu_s / max(stored, 1) * 1e6, 2),
        "broker_cpu_us_per_message": round(broker_cpu_s / max(published, 1) * 1e6, 2),
        "p50_ms": round(lat.quantile(0.5) * 1000, 1), "p99_ms": round(lat.quantile(0.99) * 1000, 1),
        "mean_batch_readings": round(stored / max(batches, 1)),
        # share of the run the ingest processes spent parsing, writing and committing batches
        "commit_busy_share": round(sum(f["ingest_commit_seconds_sum"] for f in figures)
                                   / ((done - start) * len(procs)), 3),
    }


def copy_ceiling(url, n_rows: int, n_devices: int, batch_rows: int, connections: int = 1) -> float:
    """COPY the same number of rows (same shape) into the same table, batch by batch, through the
    writer's fastest path (readings already in columns, as the consumer hands them over), on as
    many connections (threads) as there are ingest processes."""
    with psycopg.connect(url) as conn:
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM devices ORDER BY id LIMIT %s", (n_devices,))],
                       np.int64)
    base_us = (datetime.now(UTC) - timedelta(days=2) - PG_EPOCH) // timedelta(microseconds=1)
    batches = []
    for start in range(0, n_rows, batch_rows):
        i = np.arange(start, min(start + batch_rows, n_rows), dtype=np.int64)
        batches.append(Columns(ids[i % len(ids)], base_us + (i // len(ids)) * 1000, i,
                               np.tile([21.5, 1.25, 12.0], (len(i), 1)), np.full(len(i), 3, np.int64)))
    with psycopg.connect(url, autocommit=True) as ddl:  # day partitions first: writers would race
        schema.ensure_partitions(ddl, {(PG_EPOCH + timedelta(microseconds=int(us))).date()
                                       for us in (base_us, batches[-1].ts_us.max())})
    conns = [psycopg.connect(url) for _ in range(connections)]
    try:
        writers = [TelemetryWriter(c) for c in conns]
        go = threading.Barrier(connections + 1)

        def run(k: int) -> None:
            go.wait()
            for batch in batches[k::connections]:
                writers[k].write_columns(batch)
                conns[k].commit()

        threads = [threading.Thread(target=run, args=(k,)) for k in range(connections)]
        for t in threads:
            t.start()
        go.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        return n_rows / (time.perf_counter() - started)
    finally:
        for c in conns:
            c.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--readings-per-message", type=int, default=1)
    parser.add_argument("--ingest-processes", type=int, default=1)
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes")
    parser.add_argument("--window", type=int, default=2000,
                        help="unacknowledged publishes per publisher (capped by the broker's receive maximum)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered messages per second over all publishers (0: open loop, as fast as "
                             "the windows allow, which queues a backlog in the broker)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fieldops-bench-") as tmpdir:
        tmp = Path(tmpdir)
        pg, url, broker, port, serials = _setup(tmp, args.devices)
        try:
            relay, relay_broker_us = relay_ceiling(port, serials, args, broker.pid)
            e2e = end_to_end(url, port, serials, args, pg.data_dir, broker.pid)
            # in batches as large as the consumer's (at least 5000 rows): per-batch costs count
            copy_rate = copy_ceiling(url, max(e2e["stored"], 10_000), args.devices,
                                     max(5000, e2e["mean_batch_readings"]), args.ingest_processes)
        finally:
            broker.stop()
            pg.stop("fast")
    result = {
        "bench": "ingest", "devices": args.devices, "seconds": args.seconds,
        "readings_per_message": args.readings_per_message, "ingest_processes": args.ingest_processes,
        "publishers": args.publishers, "offered_messages_per_s": args.rate or "open loop",
        **e2e,
        "relay_ceiling_readings_per_s": round(relay),
        "relay_broker_cpu_us_per_message": round(relay_broker_us, 2), "copy_ceiling_readings_per_s": round(copy_rate),
        "ratio_to_relay": round(e2e["readings_per_s"] / relay, 3),
        "ratio_to_copy": round(e2e["readings_per_s"] / copy_rate, 3),
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
