"""The live fleet: every simulated device publishes over MQTT v5 with its own credentials.

One process, one thread: each device has its own paho client (user name = serial), and a single
selector drives all their sockets (``loop_read``/``loop_write``/``loop_misc``), so 1,000 devices
need no thousand threads. Devices set a retained ``offline`` last will and publish a retained
``online`` on connect, send readings at their model's interval on the shared accelerated clock
(optionally batched like a gateway), keep at most ``window`` QoS 1 messages unacknowledged,
publish a fault event when they fail, and learn of repairs by polling completed jobs.
"""

from __future__ import annotations

import json
import logging
import selectors
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from fieldops.clock import Clock
from fieldops.db.pool import connect
from ingest.topics import Channel, topic
from simulators import store
from simulators.device import Block, DeviceSim
from simulators.models import MODEL_SPECS

log = logging.getLogger(__name__)

MAX_INFLIGHT = 65_535  # MQTT packet identifiers: paho cannot have more QoS 1 messages unacknowledged


@dataclass(frozen=True, slots=True)
class FleetConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    seed: int = 7
    batch: int = 1  # readings per telemetry message (a gateway batches)
    batch_age_s: float = 60.0  # simulated seconds a partial batch may wait
    window: int = 1000  # unacknowledged QoS 1 messages per device
    outbox_limit: int = 10_000  # readings a device buffers while offline; older ones are dropped
    interval_s: float | None = None  # reading interval; None: the model's nominal interval
    horizon_s: float = 600.0  # simulated seconds generated ahead per device
    keepalive_s: int = 60
    repair_poll_s: float = 2.0  # real seconds between polls for completed jobs
    state_every_s: float = 30.0  # real seconds between saves of the hidden state (ground truth)

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_INFLIGHT:
            raise ValueError(f"window: must be 1..{MAX_INFLIGHT}")
        if self.batch < 1:
            raise ValueError("batch: must be at least 1")


@dataclass
class FleetStats:
    readings: int = 0  # handed to the client for publishing
    readings_acked: int = 0  # accepted by the broker (PUBACK success): the count ingest must store
    readings_unrouted: int = 0  # acknowledged but dropped: no subscriber yet (PUBACK 0x10)
    messages: int = 0
    acked: int = 0
    events: int = 0
    dropped: int = 0
    repairs: int = 0
    restored: int = 0
    connects: int = 0


@dataclass(frozen=True, slots=True)
class FaultInjection:
    """Make ``serial`` fail with ``mode`` about ``hours`` from now: after a degradation phase of
    that length, or ``sudden``-ly, with nothing visible before."""

    serial: str
    mode: str
    hours: float
    sudden: bool = False

    @classmethod
    def parse(cls, text: str) -> FaultInjection:
        """``SERIAL:MODE:HOURS[:sudden]``, e.g. ``ac-0003:filter_clogging:12``."""
        parts = text.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "sudden"):
            raise ValueError(f"fault: expected SERIAL:MODE:HOURS[:sudden], got {text!r}")
        try:
            hours = float(parts[2])
        except ValueError:
            raise ValueError(f"fault: hours must be a number, got {parts[2]!r}") from None
        if not hours > 0:
            raise ValueError("fault: hours must be positive")
        return cls(parts[0], parts[1], hours, len(parts) == 4)


@dataclass(frozen=True, slots=True)
class FleetDevice:
    id: int
    serial: str
    model_code: str


def _ms(ts: float) -> int:
    return int(round(ts * 1000))


@dataclass(eq=False)
class _Unit:
    device: FleetDevice
    sim: DeviceSim
    client: mqtt.Client
    interval_s: float
    next_ts: float
    names: tuple[str, ...]
    block: Block | None = None
    cursor: int = 0  # rows of ``block`` already released
    outbox: deque = field(default_factory=deque)
    inflight: int = 0
    unacked: dict[int, int] = field(default_factory=dict)  # message id -> readings in it
    connected: bool = False
    powered: bool = True
    retry_at: float = 0.0


class Fleet:
    """Runs the devices; ``step`` once per loop, or ``run`` until a deadline."""

    def __init__(self, devices: list[FleetDevice], passwords: Mapping[str, str] | Callable[[str], str],
                 clock: Clock, config: FleetConfig, conninfo: str | None = None) -> None:
        self.clock, self.config, self.conninfo = clock, config, conninfo
        self.stats = FleetStats()
        self.selector = selectors.DefaultSelector()
        self.units: dict[str, _Unit] = {}
        self._db: psycopg.Connection | None = None
        self._applied: set[int] = set()
        self._poll_at = 0.0
        self._misc_at = 0.0
        self._state_at = 0.0
        self._started = clock.now()
        password = passwords if callable(passwords) else passwords.__getitem__
        now = clock.now().timestamp()
        for dev in devices:
            spec = MODEL_SPECS[dev.model_code]
            interval = config.interval_s or spec.interval_s
            phase = (zlib.crc32(dev.serial.encode()) % 1000 + 1) / 1000.0 * interval
            unit = _Unit(dev, DeviceSim(spec, dev.serial, config.seed, now), self._client(dev, password(dev.serial)),
                         interval, now + phase, tuple(m.name for m in spec.model.metrics))
            self.units[dev.serial] = unit
        if conninfo:
            self._resume_open_faults()

    def inject(self, fault: FaultInjection) -> None:
        """Start ``fault.mode`` on its unit now, failing in about ``fault.hours``.

        The other modes of that unit are postponed, so the failure is the injected one.
        """
        unit = self.units.get(fault.serial)
        if unit is None:
            raise ValueError(f"fault: device {fault.serial!r} is not in this fleet")
        sim = unit.sim
        try:
            sim.spec.mode_index(fault.mode)
        except KeyError as exc:
            raise ValueError(f"fault: {exc.args[0]}") from None
        sim.inject(fault.mode, sim.last_ts, fault.hours, sudden=fault.sudden)
        log.info("device %s: injected %s%s, failing in about %g h", fault.serial, fault.mode,
                 " (sudden)" if fault.sudden else "", fault.hours)

    def _resume_open_faults(self) -> None:
        """Units whose failure (e.g. from the backfill) is not repaired yet start failed."""
        by_id = {u.device.id: u for u in self.units.values()}
        with connect(self.conninfo) as conn:
            for device_id, (mode, failed_at) in store.open_failures(conn, list(by_id)).items():
                unit = by_id[device_id]
                unit.sim.set_failed(mode, failed_at.timestamp())
                log.info("device %s resumes failed (%s since %s)", unit.device.serial, mode, failed_at)

    # ------------------------------------------------------------ MQTT plumbing

    def _client(self, dev: FleetDevice, password: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev.serial, protocol=mqtt.MQTTv5,
                             userdata=dev.serial)
        client.username_pw_set(dev.serial, password)
        client.will_set(topic(dev.serial, Channel.STATUS), "offline", qos=1, retain=True)
        client.max_inflight_messages_set(min(self.config.window, MAX_INFLIGHT))
        client.max_queued_messages_set(0)
        if self.config.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client, serial, flags, reason_code, properties) -> None:
        unit = self.units[serial]
        if reason_code.is_failure:
            log.warning("device %s: connection refused (%s)", serial, reason_code)
            return
        unit.connected = True
        self.stats.connects += 1
        client.publish(topic(serial, Channel.STATUS), "online", qos=1, retain=True)

    def _on_disconnect(self, client, serial, flags, reason_code, properties) -> None:
        unit = self.units[serial]
        unit.connected = False
        unit.inflight = 0
        unit.retry_at = time.monotonic() + 2.0 if unit.powered else 0.0
        self._unregister(unit)
        # our own clean disconnects (500 of them when the fleet stops) are not news
        log.log(logging.WARNING if reason_code.is_failure else logging.DEBUG,
                "device %s disconnected (%s)", serial, reason_code)

    def _on_publish(self, client, serial, mid, reason_code, properties) -> None:
        unit = self.units[serial]
        unit.inflight = max(0, unit.inflight - 1)
        self.stats.acked += 1
        n = unit.unacked.pop(mid, 0)
        if reason_code.value == 0:
            self.stats.readings_acked += n
        else:
            self.stats.readings_unrouted += n

    def _register(self, unit: _Unit) -> None:
        sock = unit.client.socket()
        if sock is not None:
            try:
                self.selector.register(sock, selectors.EVENT_READ, unit)
            except (KeyError, ValueError):
                log.debug("socket of %s already registered", unit.device.serial)

    def _unregister(self, unit: _Unit) -> None:
        for key in list(self.selector.get_map().values()):
            if key.data is unit:
                self.selector.unregister(key.fileobj)

    def connect(self, timeout_s: float = 30.0) -> None:
        """Open every device's connection; wait until all are accepted (or raise after ``timeout_s``)."""
        for unit in self.units.values():
            self._open(unit)
        deadline = time.monotonic() + timeout_s
        while not all(u.connected for u in self.units.values()):
            if time.monotonic() > deadline:
                missing = [s for s, u in self.units.items() if not u.connected]
                raise TimeoutError(f"{len(missing)} device(s) not connected, e.g. {missing[:3]}")
            self._io(0.05)

    def _open(self, unit: _Unit) -> None:
        """Connect (or reconnect) one device; on failure, try again a few seconds later."""
        try:
            unit.client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        except OSError as exc:
            log.warning("device %s: cannot connect (%s)", unit.device.serial, exc)
            unit.retry_at = time.monotonic() + 5.0
            return
        self._register(unit)

    def _io(self, timeout_s: float) -> None:
        for key, _ in self.selector.select(timeout_s):
            key.data.client.loop_read(100)
        for unit in self.units.values():
            if unit.powered and unit.client.want_write():
                unit.client.loop_write()
        now = time.monotonic()
        if now >= self._misc_at:
            self._misc_at = now + 1.0
            for unit in self.units.values():
                if unit.connected:
                    unit.client.loop_misc()
                elif unit.retry_at and now >= unit.retry_at:
                    unit.retry_at = 0.0
                    self._open(unit)

    def power_loss(self, serial: str) -> None:
        """Cut a device off without a clean disconnect (it stays off): the broker publishes its will."""
        unit = self.units[serial]
        sock = unit.client.socket()
        self._unregister(unit)
        unit.connected, unit.powered, unit.retry_at = False, False, 0.0
        if sock is not None:
            sock.close()

    def close(self, drain_s: float = 5.0) -> None:
        """Go offline cleanly: wait up to ``drain_s`` for outstanding acknowledgements, then publish
        a retained ``offline`` and disconnect every device."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(u.unacked for u in self.units.values() if u.connected):
            self._io(0.05)
        for unit in self.units.values():
            if unit.connected:
                unit.client.publish(topic(unit.device.serial, Channel.STATUS), "offline", qos=1, retain=True)
                unit.client.disconnect()
                unit.client.loop_write()
        self._io(0.05)
        if self._db is not None:
            self._db.close()

    # ------------------------------------------------------------ simulation

    def _release(self, unit: _Unit, now_ts: float) -> None:
        """Move readings due by ``now_ts`` into the outbox; generate ahead when the block runs out."""
        while True:
            if unit.block is None or unit.cursor >= unit.block.n:
                if unit.next_ts > now_ts:
                    return
                horizon = max(now_ts, unit.next_ts) + self.config.horizon_s
                ts = np.arange(unit.next_ts, horizon, unit.interval_s)
                unit.block, unit.cursor = unit.sim.advance(ts), 0
                unit.next_ts = float(unit.block.ts[-1]) + unit.interval_s
            block = unit.block
            due = int(np.searchsorted(block.ts, now_ts, side="right"))
            if due <= unit.cursor:
                return
            for r in range(unit.cursor, due):
                if block.present[r]:
                    metrics = {n: round(float(v), 3) for n, v in zip(unit.names, block.values[r], strict=True)
                               if v == v}
                    if metrics:
                        t = float(block.ts[r])
                        unit.outbox.append({"ts": _ms(t), "seq": _ms(t), "metrics": metrics})
                if block.failure is not None and r == block.n - 1:
                    self._fail(unit, block)
            unit.cursor = due
            while len(unit.outbox) > self.config.outbox_limit:
                unit.outbox.popleft()
                self.stats.dropped += 1

    def _fail(self, unit: _Unit, block: Block) -> None:
        f = block.failure
        payload = {"code": f.fault_code, "severity": "fault", "ts": _ms(f.failed_ts), "mode": f.mode}
        unit.client.publish(topic(unit.device.serial, Channel.EVENTS), json.dumps(payload), qos=1)
        self.stats.events += 1
        log.info("device %s failed: %s (%s)", unit.device.serial, f.mode, f.fault_code)
        if self.conninfo:
            try:
                self._connection()
                store.record_failures(self._db, [store.FailureTruth(
                    unit.device.id, f.mode, f.fault_code, datetime.fromtimestamp(f.onset_ts, UTC),
                    datetime.fromtimestamp(f.failed_ts, UTC), None, "fleet")])
                self._db.commit()
            except psycopg.Error as exc:
                log.warning("fleet: ground truth of %s not recorded (%s)", unit.device.serial, exc)
                self._drop_db()

    def _connection(self) -> psycopg.Connection:
        if self._db is None:
            self._db = connect(self.conninfo)
            self._applied = store.applied_job_ids(self._db)
            self._db.commit()
        return self._db

    def _drop_db(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None

    def _send(self, unit: _Unit, now_ts: float) -> None:
        cfg = self.config
        while unit.outbox and unit.connected and unit.inflight < cfg.window:
            full = len(unit.outbox) >= cfg.batch
            stale = now_ts - unit.outbox[0]["ts"] / 1000.0 >= cfg.batch_age_s
            if not (full or stale):
                return
            n = min(cfg.batch, len(unit.outbox))
            readings = [unit.outbox.popleft() for _ in range(n)]
            payload = json.dumps(readings[0] if cfg.batch == 1 else readings)
            info = unit.client.publish(topic(unit.device.serial, Channel.TELEMETRY), payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                unit.outbox.extendleft(reversed(readings))
                return
            unit.inflight += 1
            unit.unacked[info.mid] = n
            self.stats.messages += 1
            self.stats.readings += n

    def step(self, io_timeout_s: float = 0.05) -> None:
        now_ts = self.clock.now().timestamp()
        for unit in self.units.values():
            if unit.powered:
                self._release(unit, now_ts)
                self._send(unit, now_ts)
        self._io(io_timeout_s)
        if self.conninfo and time.monotonic() >= self._poll_at:
            self._poll_at = time.monotonic() + self.config.repair_poll_s
            try:
                self.poll_repairs()
            except psycopg.Error as exc:  # the database is away: keep publishing, try again later
                log.warning("fleet: polling repairs failed (%s); retrying", exc)
                self._drop_db()

    def run(self, duration_s: float | None = None) -> FleetStats:
        """Step until ``duration_s`` real seconds have passed (forever when None)."""
        end = None if duration_s is None else time.monotonic() + duration_s
        while end is None or time.monotonic() < end:
            self.step()
        return self.stats

    # ------------------------------------------------------------ repairs

    def poll_repairs(self) -> int:
        """Apply completed jobs of our devices: a matching finding and parts restore the device."""
        self._connection()
        by_id = {u.device.id: u for u in self.units.values()}
        try:
            done = store.completed_jobs(self._db, list(by_id), self._applied, self._started)
        except psycopg.errors.UndefinedTable:
            self._db.rollback()
            log.warning("no jobs tables: the fleet cannot learn of repairs")
            self.conninfo = None
            return 0
        for job in done:
            self._apply(by_id[job.device_id], job)
        if time.monotonic() >= self._state_at:
            self._state_at = time.monotonic() + self.config.state_every_s
            at = self.clock.now()
            store.save_device_state(self._db, [
                (u.device.id, at, u.sim.failed_mode,
                 {ms.code: round(float(h), 4) for ms, h in zip(u.sim.spec.modes, u.sim.h, strict=True)})
                for u in self.units.values()
            ])
        self._db.commit()
        return len(done)

    def _apply(self, unit: _Unit, job: store.CompletedJob) -> None:
        self._applied.add(job.job_id)
        sim = unit.sim
        if unit.block is not None:  # forget readings generated ahead of the repair
            sim.rewind(unit.block, unit.cursor)
            if unit.cursor < unit.block.n:
                unit.next_ts = float(unit.block.ts[unit.cursor])
            unit.block, unit.cursor = None, 0
        was_failed = sim.failed_mode
        at = max(job.completed_at.timestamp(), sim.last_ts)
        restored = sim.repair(at, job.finding_mode, job.parts, preventive=job.preventive)
        self.stats.repairs += 1
        ts = datetime.fromtimestamp(at, UTC)
        store.record_repairs(self._db, [store.RepairTruth(
            unit.device.id, ts, job.finding_mode, job.parts, job.preventive, restored, "fleet", job.job_id)])
        if restored is not None:
            self.stats.restored += 1
            store.mark_repaired(self._db, unit.device.id, restored, ts)
        if was_failed is not None and sim.failed_mode is None:
            payload = {"code": "RESTORED", "severity": "info", "ts": _ms(at), "mode": was_failed,
                       "job_id": job.job_id}
            unit.client.publish(topic(unit.device.serial, Channel.EVENTS), json.dumps(payload), qos=1)
        log.info("device %s: job %d applied (finding %s) -> restored %s", unit.device.serial, job.job_id,
                 job.finding_mode, restored)
