"""The ingest consumer: MQTT (v5, QoS 1, persistent session, shared subscription) into PostgreSQL.

The paho network thread only appends each received message to a buffer. The main loop takes the
buffer in batches (by size and by age) and parses them (``ingest.payloads``); one writer thread
writes each parsed batch (readings, status, events, dead letters) in ONE transaction and
acknowledges its messages only after that transaction committed, batch after batch in order. The
two overlap: the next batch is parsed while the current one is written, and at most
``handoff_batches`` parsed batches wait for the writer (the main loop stops taking when they do).
If the database is down the writer retries its batch with backoff and nothing is acknowledged;
the client's MQTT receive maximum bounds how many unacknowledged messages the broker hands us, so
the buffer is bounded and the rest waits in the broker's persistent session. Parsing and device
lookups use their own database connection (main loop), writing uses another (writer thread).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from operator import itemgetter

import numpy as np
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
from ingest.payloads import Bulk, DeviceEvent, Inbound, Outcome, Parser, Refused, Status, Telemetry

log = logging.getLogger(__name__)

DEAD_PAYLOAD_BYTES = 4096
MAX_RECEIVE_MAXIMUM = 65_535
FAULT_SEVERITIES = frozenset({"error", "fault"})
KNOWN_TOPICS_MAX = 300_000  # topics remembered as naming a known device (then forgotten at once)
OFFLINE_CODE = "offline"  # device_events code of a device that went offline (status or last will)
_US = timedelta(microseconds=1)
_TOPIC, _PAYLOAD, _MID, _SESSION = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(4)


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Batching, buffering and retry knobs of one ingest process."""

    client_id: str = "ingest-1"
    batch_messages: int = 10000
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
    handoff_batches: int = 1  # parsed batches waiting for the writer at most
    shared: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.buffer_messages <= MAX_RECEIVE_MAXIMUM:
            raise ValueError(f"buffer_messages: must be in [1, {MAX_RECEIVE_MAXIMUM}]")
        if self.batch_messages < 1 or self.batch_bytes < 1 or self.batch_age_s <= 0:
            raise ValueError("batch_messages, batch_bytes and batch_age_s: must be positive")
        if self.handoff_batches < 1:
            raise ValueError("handoff_batches: must be positive")


@dataclass(slots=True)
class _Pending:
    """Messages taken from the buffer and not yet committed."""

    messages: list[Inbound] = field(default_factory=list)
    nbytes: int = 0
    since: float = 0.0  # monotonic time the oldest message was taken


@dataclass(slots=True)
class _Writes:
    """What one batch writes: the parsed messages gathered into rows for each table."""

    messages: list[Inbound]
    written: Columns | None = None
    dead: list[repo.DeadLetterRow] = field(default_factory=list)
    seen: dict[int, tuple[datetime, int | None]] = field(default_factory=dict)
    statuses: list[Status] = field(default_factory=list)
    device_events: list[DeviceEvent] = field(default_factory=list)
    newest_us: np.ndarray | None = None  # each telemetry message's newest reading (us since PG_EPOCH)
    dead_readings: int = 0
    accepted: int = 0


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A parsed batch handed to the writer: its messages' outcomes (None for those in ``bulk``)
    and what they write."""

    outcomes: list[Outcome | None]
    bulk: Bulk | None
    writes: _Writes

    @property
    def messages(self) -> list[Inbound]:
        return self.writes.messages

    def outcome(self, i: int) -> Outcome:
        """Message ``i``'s own outcome (a message of the bulk block: a block of its one reading)."""
        out = self.outcomes[i]
        if out is None:
            row = int(np.searchsorted(self.bulk.at, i))
            block = self.bulk.block.take(np.array([row]))
            out = Telemetry(int(block.device[0]), (), (), (), block)
        return out


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
        self._conn: psycopg.Connection | None = None  # the writer thread's
        self._writer: TelemetryWriter | None = None
        self._dir_conn: psycopg.Connection | None = None  # the main loop's, for device lookups
        self._closing = False  # set before our own disconnect at shutdown
        self._handed = 0  # messages handed to the writer and not yet done with (under metrics.lock)
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
        if self._closing:
            log.info("disconnected from the broker at shutdown")
        else:
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
        handoff: queue.Queue[_Parsed | None] = queue.Queue(self.config.handoff_batches)
        writer = threading.Thread(target=self._write_loop, args=(handoff, stop),
                                  name=f"{self.config.client_id}-writer", daemon=True)
        writer.start()
        pending = _Pending()
        retry_at = 0.0
        backoff = self.config.retry_initial_s
        try:
            while True:
                stopping = stop.is_set()
                self._take(pending)
                self.metrics.buffered_messages = len(pending.messages) + len(self._buffer) + self._handed
                now = time.monotonic()
                due = pending.messages and (
                    stopping
                    or len(pending.messages) >= self.config.batch_messages
                    or pending.nbytes >= self.config.batch_bytes
                    or now - pending.since >= self.config.batch_age_s
                )
                if due and now >= retry_at:
                    try:
                        parsed = self._parse(pending.messages)
                    except Exception as exc:  # the database (device lookups), or a defect
                        self._drop_directory()
                        retry_at = time.monotonic() + backoff
                        log.warning("batch of %d messages not parsed (%s: %s); retrying in %.1fs, "
                                    "nothing acknowledged", len(pending.messages), type(exc).__name__,
                                    exc, backoff, exc_info=not isinstance(exc, psycopg.Error | OSError))
                        backoff = min(backoff * 2, self.config.retry_max_s)
                        if stopping:
                            return
                        continue
                    backoff = self.config.retry_initial_s
                    pending = _Pending()
                    with self.metrics.lock:
                        self._handed += len(parsed.messages)
                    if not self._hand_off(handoff, parsed, writer):
                        return
                    continue
                if stopping:
                    return
                if not self._buffer or len(pending.messages) >= self.config.batch_messages:
                    time.sleep(0.002)
        finally:
            self._hand_off(handoff, None, writer)  # the writer drains what it holds, then ends
            writer.join()
            self._closing = True
            self._client.disconnect()
            self._client.loop_stop()
            self._drop_directory()
            self._drop_db()

    @staticmethod
    def _hand_off(handoff: queue.Queue, item: _Parsed | None, writer: threading.Thread) -> bool:
        """Queue ``item`` for the writer, waiting while the queue is full; False if it has ended."""
        while writer.is_alive():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        log.error("the writer thread has ended; %s left unacknowledged",
                  "nothing" if item is None else f"{len(item.messages)} messages")
        return False

    def _write_loop(self, handoff: queue.Queue, stop: threading.Event) -> None:
        """The writer thread: commit each parsed batch in order, retrying while the database is down.

        Once ``stop`` is set a failed batch is not retried: it and the batches after it stay
        unacknowledged, and the broker delivers them again."""
        backoff = self.config.retry_initial_s
        giving_up = False
        while (parsed := handoff.get()) is not None:
            while not giving_up:
                try:
                    self._commit_or_isolate(parsed)
                    backoff = self.config.retry_initial_s
                    break
                except Exception as exc:  # the database, or a defect: retry, never die
                    self._drop_db()
                    self.metrics.flush_failures += 1
                    log.warning("batch of %d messages not written (%s: %s); retrying in %.1fs, "
                                "nothing acknowledged", len(parsed.messages), type(exc).__name__,
                                exc, backoff, exc_info=not isinstance(exc, psycopg.Error | OSError))
                    giving_up = stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.retry_max_s)
            with self.metrics.lock:
                self._handed -= len(parsed.messages)
        self._drop_db()

    def _take(self, pending: _Pending) -> None:
        """Move messages from the buffer to ``pending`` until it holds ``batch_messages`` or at
        least ``batch_bytes`` (the message crossing that limit included)."""
        buf = self._buffer
        room = min(len(buf), self.config.batch_messages - len(pending.messages))
        if room <= 0 or pending.nbytes >= self.config.batch_bytes:
            return
        popleft = buf.popleft  # the network thread only appends: the first ``room`` are there
        taken = [popleft() for _ in range(room)]
        sizes = list(accumulate(map(len, map(_PAYLOAD, taken)), initial=pending.nbytes))
        if sizes[-1] >= self.config.batch_bytes:
            cut = bisect_left(sizes, self.config.batch_bytes)
            buf.extendleft(reversed(taken[cut:]))
            del taken[cut:]
        if not pending.messages:
            pending.since = time.monotonic()
        pending.messages += taken
        pending.nbytes = sizes[len(taken)]

    # ------------------------------------------------------------ database

    def _db(self) -> tuple[psycopg.Connection, TelemetryWriter]:
        """The writer thread's connection (opened on first use, again after a failure)."""
        if self._conn is None or self._conn.closed or self._writer is None:
            self._drop_db()
            conn = self._connect("writer")
            try:
                self._writer = TelemetryWriter(conn)
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn, self._writer

    def _directory(self) -> psycopg.Connection:
        """The main loop's connection for device and model lookups; loads both when it opens."""
        if self._dir_conn is None or self._dir_conn.closed:
            conn = self._connect("lookup", autocommit=True)
            try:
                self._parser.update_models(catalog.device_models(conn))
                self._devices.update(repo.device_refs(conn))
            except BaseException:
                conn.close()
                raise
            self._dir_conn = conn
        return self._dir_conn

    def _connect(self, role: str, autocommit: bool = False) -> psycopg.Connection:
        return connect(self.settings.database_url, connect_timeout=5, autocommit=autocommit,
                       application_name=f"fieldops-{self.config.client_id}-{role}")

    def _drop_db(self) -> None:
        self._conn = _close(self._conn)
        self._writer = None

    def _drop_directory(self) -> None:
        self._dir_conn = _close(self._dir_conn)

    def _resolve(self, conn: psycopg.Connection, messages: list[Inbound]) -> None:
        """Look up serials not in the device directory (new devices), at most every few seconds."""
        now = time.monotonic()
        missing = set()
        known = self._known_topics
        if len(known) > KNOWN_TOPICS_MAX:
            known.clear()
        for name in set(map(_TOPIC, messages)).difference(known):
            parts = name.split("/", 4)
            serial = parts[3] if len(parts) > 3 else ""
            if serial in self._devices:
                known.add(name)
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

    def _parse(self, messages: list[Inbound]) -> _Parsed:
        """Parse a batch (main loop), looking up devices not seen before."""
        self._resolve(self._directory(), messages)
        outcomes, bulk = self._parser.parse_many(messages)
        return _Parsed(outcomes, bulk, _gather(messages, outcomes, bulk))

    def _commit_or_isolate(self, parsed: _Parsed) -> None:
        """Commit the batch; if the database refuses its content (not its availability), commit
        message by message and dead-letter the ones it still refuses, so one cannot block all."""
        try:
            self._commit(parsed.writes)
            return
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError):
            raise
        except Exception:
            log.warning("batch of %d messages refused; writing them one by one", len(parsed.messages),
                        exc_info=True)
            self._rollback()
        for i, msg in enumerate(parsed.messages):
            try:
                self._commit(_gather([msg], [parsed.outcome(i)]))
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

    def _commit(self, w: _Writes) -> BatchResult:
        """Write one batch in one transaction, then acknowledge its messages."""
        conn, writer = self._db()
        started = time.perf_counter()
        written = w.written
        stored = writer.write_columns(written) if written is not None else 0
        repo.insert_dead_letters(conn, w.dead)
        changes = repo.mark_seen(conn, [repo.SeenRow(d, ts, seq) for d, (ts, seq) in w.seen.items()])
        changes += [s for s in w.statuses if repo.set_status(conn, s)]
        for change in changes:
            events.publish(conn, events.DEVICE_STATUS, {
                "device_id": change.device_id, "status": change.status, "ts": change.ts.isoformat()})
        # Going offline is also a device event: the job logic opens inspection jobs from it.
        stored_events = repo.insert_events(conn, [
            repo.EventRow(e.device_id, e.ts, e.code, e.severity, e.payload) for e in w.device_events] + [
            repo.EventRow(c.device_id, c.ts, OFFLINE_CODE, "warning", {"source": "status"})
            for c in changes if c.status == "offline"])
        by_id = {e.device_id: e.serial for e in w.device_events}
        for event_id, e in stored_events:
            if e.severity in FAULT_SEVERITIES and e.device_id in by_id:
                events.publish(conn, events.DEVICE_FAULT, {
                    "device_event_id": event_id, "device_id": e.device_id, "serial": by_id[e.device_id],
                    "code": e.code, "severity": e.severity, "ts": e.ts.isoformat()})
        conn.commit()
        committed = datetime.now(UTC)
        elapsed = time.perf_counter() - started
        self._ack(w.messages)
        result = BatchResult(stored, (len(written) if written is not None else 0) - stored,
                             len(w.dead) - w.dead_readings, w.dead_readings, w.accepted)
        self._count(result, len(w.messages), len(w.statuses), len(stored_events), elapsed, committed,
                    w.newest_us)
        return result

    def _ack(self, messages: list[Inbound]) -> None:
        session = self._session
        # A message from an earlier connection is redelivered by the broker on this one; its old
        # packet id may now name another message, so it must not be acknowledged here.
        if set(map(_SESSION, messages)) == {session}:
            mids = list(map(_MID, messages))
            if 0 in mids:  # QoS 0: nothing to acknowledge
                mids = [mid for mid in mids if mid]
        else:
            mids = [m.mid for m in messages if m.session == session and m.mid]
        self._client.ack_many(mids)
        with self.metrics.lock:
            self.metrics.messages_acknowledged += len(mids)

    def _count(self, r: BatchResult, received: int, statuses: int, stored_events: int, elapsed: float,
               committed: datetime, newest_us: np.ndarray | None) -> None:
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
            if newest_us is not None:
                committed_us = (committed - PG_EPOCH) // _US
                m.reading_age_seconds.observe_many((committed_us - newest_us) / 1e6)


def _gather(messages: list[Inbound], outcomes: list[Outcome | None], bulk: Bulk | None = None) -> _Writes:
    """The rows a batch writes, from its messages' parse outcomes (None: the message's reading is
    in ``bulk``); readings in the messages' order. No database, no shared state."""
    w = _Writes(messages)
    rows: list = []
    stamps: list[int] = []
    row_at: list[int] = []
    blocks: list[Columns] = []
    block_at: list[np.ndarray] = []
    newest: list[int] = []
    everyone_in_bulk = bulk is not None and len(bulk.at) == len(messages)
    for i, (msg, out) in enumerate(() if everyone_in_bulk else zip(messages, outcomes, strict=True)):
        kind = type(out)
        if kind is Telemetry:
            w.accepted += 1
            if out.block is not None:
                blocks.append(out.block)
                block_at.append(np.full(len(out.block), i, np.int64))
                newest.append(int(out.block.ts_us.max()))
            elif out.rows:
                rows += out.rows
                stamps += out.ts_us
                row_at += [i] * len(out.rows)
                newest.append(max(out.ts_us))
            for reason, reading in out.refused:
                w.dead.append(_dead(msg, "reading", reason, reading))
            w.dead_readings += len(out.refused)
        elif kind is Refused:
            w.dead.append(_dead(msg, "message", out.reason, msg.payload))
        elif kind is Status:
            w.accepted += 1
            w.statuses.append(out)
        elif out is not None:
            w.accepted += 1
            w.device_events.append(out)
    if rows:
        blocks.append(Columns.from_rows(rows, stamps))
        block_at.append(np.array(row_at, np.int64))
    newest_us = [np.array(newest, np.int64)] if newest else []
    if bulk is not None:
        w.accepted += len(bulk.block)
        blocks.append(bulk.block)
        block_at.append(bulk.at)
        newest_us.append(bulk.block.ts_us)
    if newest_us:
        w.newest_us = np.concatenate(newest_us)
    if not blocks:
        return w
    written = Columns.concat(blocks)
    if len(blocks) > 1:  # in the messages' order (a stable sort keeps each message's own order)
        written = written.take(np.argsort(np.concatenate(block_at), kind="stable"))
    w.written = written
    w.seen = _newest_per_device(written)
    return w


def _newest_per_device(c: Columns) -> dict[int, tuple[datetime, int | None]]:
    """Each device's newest reading (ts, seq): the first in the batch among equal timestamps."""
    order = np.lexsort((np.arange(len(c))[::-1], c.ts_us, c.device))
    last = np.ones(len(order), bool)
    last[:-1] = c.device[order][1:] != c.device[order][:-1]
    pick = order[last]
    return {d: (PG_EPOCH + timedelta(microseconds=t), None if q == NO_SEQ else q) for d, t, q in zip(
        c.device[pick].tolist(), c.ts_us[pick].tolist(), c.seq[pick].tolist(), strict=True)}


def _close(conn: psycopg.Connection | None) -> None:
    """Close a connection that may be broken already."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            log.debug("closing a broken connection failed", exc_info=True)


def _topic_text(topic: bytes) -> str:
    try:
        return topic.decode()
    except UnicodeDecodeError:
        return topic.decode(errors="replace")


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
