"""The ingest consumer: MQTT (v5, QoS 1, persistent session, shared subscription) into PostgreSQL.

The paho network thread only appends each received message to a buffer. The main loop takes the
buffer in batches (by size and by age), parses it (``ingest.payloads``), writes readings, status,
events and dead letters in ONE transaction and acknowledges the messages only after that
transaction committed. If the database is down the batch is retried with backoff and nothing is
acknowledged; the client's MQTT receive maximum bounds how many unacknowledged messages the broker
hands us, so the buffer is bounded and the rest waits in the broker's persistent session.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fieldops import events
from fieldops.clock import Clock
from fieldops.config import Settings
from fieldops.db import connect
from fieldops.db.repo import catalog
from fieldops.db.repo import ingest as repo
from fieldops.db.repo.telemetry import NO_SEQ, PG_EPOCH, Columns, TelemetryWriter
from ingest import topics
from ingest.metrics import IngestMetrics
from ingest.mqtt_client import LeanClient
from ingest.payloads import DeviceEvent, Inbound, Parser, Refused, Status, Telemetry

log = logging.getLogger(__name__)

DEAD_PAYLOAD_BYTES = 4096
MAX_RECEIVE_MAXIMUM = 65_535
FAULT_SEVERITIES = frozenset({"error", "fault"})
KNOWN_TOPICS_MAX = 300_000  # topics remembered as naming a known device (then forgotten at once)
OFFLINE_CODE = "offline"  # device_events code of a device that went offline (status or last will)


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Batching, buffering and retry knobs of one ingest process."""

    client_id: str = "ingest-1"
    batch_messages: int = 5000
    batch_bytes: int = 4_194_304
    batch_age_s: float = 0.2
    buffer_messages: int = 20_000  # MQTT receive maximum: unacknowledged messages held at most
    session_expiry_s: int = 7 * 86_400
    keepalive_s: int = 30
    max_payload_bytes: int = 262_144
    max_future_s: float = 300.0
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    unknown_recheck_s: float = 10.0
    shared: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.buffer_messages <= MAX_RECEIVE_MAXIMUM:
            raise ValueError(f"buffer_messages: must be in [1, {MAX_RECEIVE_MAXIMUM}]")
        if self.batch_messages < 1 or self.batch_bytes < 1 or self.batch_age_s <= 0:
            raise ValueError("batch_messages, batch_bytes and batch_age_s: must be positive")


@dataclass(slots=True)
class _Pending:
    """Messages taken from the buffer and not yet committed."""

    messages: list[Inbound] = field(default_factory=list)
    nbytes: int = 0
    since: float = 0.0  # monotonic time the oldest message was taken


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: int
    duplicates: int
    dead_messages: int
    dead_readings: int
    accepted: int


class Consumer:
    """One ingest process. ``run(stop)`` until ``stop`` is set; never raises on bad input."""

    def __init__(
        self, settings: Settings, config: ConsumerConfig = ConsumerConfig(),
        metrics: IngestMetrics | None = None, clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.metrics = metrics or IngestMetrics()
        self.clock = clock or Clock.from_settings(settings.clock_speed, settings.clock_anchor)
        self._buffer: deque[Inbound] = deque()
        self._session = 0  # incremented on every (re)connect; acks go only to the current one
        self._conn: psycopg.Connection | None = None
        self._writer: TelemetryWriter | None = None
        self._devices: dict[str, repo.DeviceRef] = {}
        self._unknown: dict[str, float] = {}
        self._known_topics: set[str] = set()  # topics whose device is in self._devices
        self._parser = Parser({}, self._devices.get, self.clock.now,
                              max_payload_bytes=config.max_payload_bytes,
                              max_future_s=config.max_future_s)
        self.subscribed = threading.Event()
        self.subscribe_count = 0  # subscriptions granted, one per (re)connect
        self._client = self._make_client()

    # ------------------------------------------------------------ MQTT

    def _make_client(self) -> mqtt.Client:
        client = LeanClient(
            CallbackAPIVersion.VERSION2, client_id=self.config.client_id,
            protocol=mqtt.MQTTv5, manual_ack=True, sink=self._on_publish,
        )
        client.username_pw_set(self.settings.mqtt_username, self.settings.mqtt_password or None)
        if self.settings.mqtt_tls:
            client.tls_set()
        client.reconnect_delay_set(0.1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self._session += 1
        self.metrics.connected = 1
        log.info("connected to the broker (session present: %s); subscribing", flags.session_present)
        client.subscribe([(f, mqtt.SubscribeOptions(qos=1)) for f in topics.subscriptions(self.config.shared)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("subscription refused: %s", failed)
        else:
            self.subscribe_count += 1
            self.subscribed.set()
            log.info("subscribed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.metrics.connected = 0
        self.subscribed.clear()
        log.warning("disconnected from the broker (%s); paho reconnects", reason_code)

    def _on_publish(self, published: list[tuple[bytes, bytes, int]]) -> None:
        received_at = datetime.now(UTC)
        session = self._session
        self._buffer.extend([Inbound(_topic_text(t), p, mid, received_at, session) for t, p, mid in published])

    def _connect_broker(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.buffer_messages
        host = self.settings.mqtt_host or "127.0.0.1"
        self._client.connect_async(host, self.settings.mqtt_port, keepalive=self.config.keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()

    # ------------------------------------------------------------ main loop

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then commit what is pending and disconnect."""
        self._connect_broker()
        pending = _Pending()
        retry_at = 0.0
        backoff = self.config.retry_initial_s
        try:
            while True:
                stopping = stop.is_set()
                self._take(pending)
                self.metrics.buffered_messages = len(pending.messages) + len(self._buffer)
                now = time.monotonic()
                due = pending.messages and (
                    stopping
                    or len(pending.messages) >= self.config.batch_messages
                    or pending.nbytes >= self.config.batch_bytes
                    or now - pending.since >= self.config.batch_age_s
                )
                if due and now >= retry_at:
                    try:
                        self._commit_or_isolate(pending.messages)
                        pending = _Pending()
                        backoff = self.config.retry_initial_s
                    except Exception as exc:  # the database, or a defect: retry, never die
                        self._drop_db()
                        self.metrics.flush_failures += 1
                        retry_at = time.monotonic() + backoff
                        log.warning("batch of %d messages not written (%s: %s); retrying in %.1fs, "
                                    "nothing acknowledged", len(pending.messages), type(exc).__name__,
                                    exc, backoff, exc_info=not isinstance(exc, psycopg.Error | OSError))
                        backoff = min(backoff * 2, self.config.retry_max_s)
                        if stopping:
                            return
                    continue
                if stopping:
                    return
                if not self._buffer or len(pending.messages) >= self.config.batch_messages:
                    time.sleep(0.002)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            self._drop_db()

    def _take(self, pending: _Pending) -> None:
        buf = self._buffer
        limit = self.config.batch_messages
        while buf and len(pending.messages) < limit and pending.nbytes < self.config.batch_bytes:
            msg = buf.popleft()
            if not pending.messages:
                pending.since = time.monotonic()
            pending.messages.append(msg)
            pending.nbytes += len(msg.payload)

    # ------------------------------------------------------------ database

    def _db(self) -> tuple[psycopg.Connection, TelemetryWriter]:
        if self._conn is None or self._conn.closed or self._writer is None:
            self._drop_db()
            conn = connect(self.settings.database_url, connect_timeout=5,
                           application_name=f"fieldops-{self.config.client_id}")
            try:
                self._writer = TelemetryWriter(conn)
                self._parser.update_models(catalog.device_models(conn))
                self._devices.update(repo.device_refs(conn))
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn, self._writer

    def _drop_db(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                log.debug("closing a broken connection failed", exc_info=True)
        self._conn = None
        self._writer = None

    def _resolve(self, conn: psycopg.Connection, messages: list[Inbound]) -> None:
        """Look up serials not in the device directory (new devices), at most every few seconds."""
        now = time.monotonic()
        missing = set()
        known = self._known_topics
        if len(known) > KNOWN_TOPICS_MAX:
            known.clear()
        for m in messages:
            if m.topic in known:
                continue
            parts = m.topic.split("/", 4)
            serial = parts[3] if len(parts) > 3 else ""
            if serial in self._devices:
                known.add(m.topic)
            elif self._unknown.get(serial, 0.0) <= now:
                missing.add(serial)
        if not missing:
            return
        found = repo.device_refs(conn, missing)
        if any(d.model_code not in self._parser._models for d in found.values()):
            self._parser.update_models(catalog.device_models(conn))
        self._devices.update(found)
        if len(self._unknown) > 100_000:
            self._unknown.clear()
        for serial in missing - found.keys():
            self._unknown[serial] = now + self.config.unknown_recheck_s

    def _commit_or_isolate(self, messages: list[Inbound]) -> None:
        """Commit the batch; if the database refuses its content (not its availability), commit
        message by message and dead-letter the ones it still refuses, so one cannot block all."""
        try:
            self._commit(messages)
            return
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError):
            raise
        except Exception:
            log.warning("batch of %d messages refused; writing them one by one", len(messages),
                        exc_info=True)
            self._rollback()
        for msg in messages:
            try:
                self._commit([msg])
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError):
                raise
            except Exception as exc:
                self._rollback()
                reason = f"database: refused ({type(exc).__name__}: {str(exc)[:200]})"
                conn, _ = self._db()
                repo.insert_dead_letters(conn, [_dead(msg, "message", reason, msg.payload)])
                conn.commit()
                self._ack([msg])
                with self.metrics.lock:
                    self.metrics.messages_received += 1
                    self.metrics.dead_messages += 1

    def _rollback(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            except psycopg.Error:
                self._drop_db()

    def _commit(self, messages: list[Inbound]) -> BatchResult:
        """Write one batch in one transaction, then acknowledge its messages."""
        conn, writer = self._db()
        started = time.perf_counter()
        self._resolve(conn, messages)
        rows: list = []
        stamps: list[int] = []
        blocks: list[Columns] = []
        dead: list[repo.DeadLetterRow] = []
        seen: dict[int, tuple[datetime, int | None]] = {}
        statuses: list[Status] = []
        device_events: list[DeviceEvent] = []
        newest: list[datetime] = []
        dead_readings = accepted = 0
        parse = self._parser.parse
        for msg in messages:
            out = parse(msg)
            kind = type(out)
            if kind is Telemetry:
                accepted += 1
                last = None
                if out.block is not None:
                    blocks.append(out.block)
                    last = _newest_in(out.block)
                elif out.rows:
                    rows += out.rows
                    stamps += out.ts_us
                    newest_row = out.rows[0] if len(out.rows) == 1 else max(out.rows, key=_row_ts)
                    last = newest_row[1], newest_row[2]
                if last is not None:
                    newest.append(last[0])
                    prev = seen.get(out.device_id)
                    if prev is None or last[0] > prev[0]:
                        seen[out.device_id] = last
                for reason, reading in out.refused:
                    dead.append(_dead(msg, "reading", reason, reading))
                dead_readings += len(out.refused)
            elif kind is Refused:
                dead.append(_dead(msg, "message", out.reason, msg.payload))
            elif kind is Status:
                accepted += 1
                statuses.append(out)
            else:
                accepted += 1
                device_events.append(out)
        if rows:
            blocks.append(Columns.from_rows(rows, stamps))
        written = Columns.concat(blocks) if blocks else None
        stored = writer.write_columns(written) if written is not None else 0
        repo.insert_dead_letters(conn, dead)
        changes = repo.mark_seen(conn, [repo.SeenRow(d, ts, seq) for d, (ts, seq) in seen.items()])
        changes += [s for s in statuses if repo.set_status(conn, s)]
        for change in changes:
            events.publish(conn, events.DEVICE_STATUS, {
                "device_id": change.device_id, "status": change.status, "ts": change.ts.isoformat()})
        # Going offline is also a device event: the job logic opens inspection jobs from it.
        stored_events = repo.insert_events(conn, [
            repo.EventRow(e.device_id, e.ts, e.code, e.severity, e.payload) for e in device_events] + [
            repo.EventRow(c.device_id, c.ts, OFFLINE_CODE, "warning", {"source": "status"})
            for c in changes if c.status == "offline"])
        by_id = {e.device_id: e.serial for e in device_events}
        for event_id, e in stored_events:
            if e.severity in FAULT_SEVERITIES and e.device_id in by_id:
                events.publish(conn, events.DEVICE_FAULT, {
                    "device_event_id": event_id, "device_id": e.device_id, "serial": by_id[e.device_id],
                    "code": e.code, "severity": e.severity, "ts": e.ts.isoformat()})
        conn.commit()
        committed = datetime.now(UTC)
        elapsed = time.perf_counter() - started
        self._ack(messages)
        result = BatchResult(stored, (len(written) if written is not None else 0) - stored, len(dead) - dead_readings, dead_readings, accepted)
        self._count(result, len(messages), len(statuses), len(stored_events), elapsed, committed, newest)
        return result

    def _ack(self, messages: list[Inbound]) -> None:
        session = self._session
        # A message from an earlier connection is redelivered by the broker on this one; its old
        # packet id may now name another message, so it must not be acknowledged here.
        self._client.ack_many([m.mid for m in messages if m.session == session and m.mid])

    def _count(self, r: BatchResult, received: int, statuses: int, stored_events: int, elapsed: float,
               committed: datetime, newest: list[datetime]) -> None:
        m = self.metrics
        with m.lock:
            m.messages_received += received
            m.messages_accepted += r.accepted
            m.readings_stored += r.stored
            m.readings_duplicate += r.duplicates
            m.dead_messages += r.dead_messages
            m.dead_readings += r.dead_readings
            m.status_updates += statuses
            m.events_stored += stored_events
            m.batches += 1
            m.batch_readings.observe(r.stored + r.duplicates)
            m.commit_seconds.observe(elapsed)
            m.reading_age_seconds.observe_many([(committed - ts).total_seconds() for ts in newest])


def _topic_text(topic: bytes) -> str:
    try:
        return topic.decode()
    except UnicodeDecodeError:
        return topic.decode(errors="replace")


def _row_ts(row: tuple) -> datetime:
    return row[1]


def _newest_in(block: Columns) -> tuple[datetime, int | None]:
    """The newest reading's timestamp and seq in a block of one device's readings."""
    i = int(block.ts_us.argmax())
    seq = int(block.seq[i])
    return PG_EPOCH + timedelta(microseconds=int(block.ts_us[i])), None if seq == NO_SEQ else seq


def _dead(msg: Inbound, kind: str, reason: str, payload: bytes) -> repo.DeadLetterRow:
    return repo.DeadLetterRow(
        msg.received_at, kind, msg.topic.replace("\x00", "\\0"), reason.replace("\x00", "\\0"),
        payload[:DEAD_PAYLOAD_BYTES], len(payload),
    )


def run_forever(settings: Settings, config: ConsumerConfig, on_ready: Callable[[Consumer], None] | None = None,
                stop: threading.Event | None = None) -> None:
    """Run a consumer in this thread (the ``fieldops ingest`` command)."""
    stop = stop or threading.Event()
    consumer = Consumer(settings, config)
    if on_ready is not None:
        on_ready(consumer)
    consumer.run(stop)
