"""The live fleet against the real broker: device credentials, last will, batching, repairs."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fieldops.clock import Clock
from fieldops.db.repo import catalog
from fieldops.domain import JobSource, JobStatus, PartQuantity
from fieldops.service import jobs, parts
from simulators import seed, store
from simulators.fleet import FaultInjection, Fleet, FleetConfig, FleetDevice
from simulators.seed import device_password

SECRET = "fleet-test-secret"


class Subscriber:
    """Collects every message under the device root, as the operator account."""

    def __init__(self, broker):
        self.messages = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(broker.admin_user, broker.admin_password)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda client, userdata, mid, reason_codes, properties: self.subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe("fieldops/v1/devices/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, suffix):
        with self.lock:
            return [(t, p, r) for t, p, r in self.messages if t.endswith(suffix)]

    def wait(self, suffix, count=1, timeout_s=10.0, fleet=None):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.on(suffix)) >= count:
                return self.on(suffix)
            fleet.step(0.02) if fleet else time.sleep(0.02)
        raise AssertionError(f"fewer than {count} messages on {suffix}")

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def world(db, mqtt_broker):
    seed.seed_data(db, now=datetime.now(UTC) - timedelta(days=1), secret=SECRET, devices=3, technicians=2)
    db.commit()
    devices = [FleetDevice(d.id, d.serial, d.model_code) for d in catalog.devices(db)]
    mqtt_broker.add_users({d.serial: device_password(SECRET, d.serial) for d in devices})
    return devices


@pytest.fixture
def subscriber(mqtt_broker):
    sub = Subscriber(mqtt_broker)
    assert sub.subscribed.wait(10), "the subscriber's subscription was not acknowledged"
    yield sub
    sub.stop()


def make_fleet(devices, broker, conninfo=None, **config):
    clock = Clock(speed=60.0, real_anchor=datetime.now(UTC), sim_anchor=datetime.now(UTC))
    cfg = FleetConfig(port=broker.port, interval_s=10.0, **config)
    return Fleet(devices, lambda s: device_password(SECRET, s), clock, cfg, conninfo=conninfo)


def test_devices_publish_readings_with_their_own_credentials(world, mqtt_broker, subscriber):
    fleet = make_fleet(world, mqtt_broker)
    fleet.connect()
    try:
        for dev in world:
            (_, payload, _), *_ = subscriber.wait(f"/{dev.serial}/telemetry", fleet=fleet)
            reading = json.loads(payload)
            assert set(reading) == {"ts", "seq", "metrics"} and reading["metrics"]
    finally:
        fleet.close()
    live = [p for _, p, retained in subscriber.on(f"/{world[0].serial}/status") if not retained]
    assert live[0] == b"online"


def test_a_device_with_a_wrong_password_is_refused(world, mqtt_broker):
    clock = Clock()
    fleet = Fleet(world[:1], lambda s: "wrong", clock, FleetConfig(port=mqtt_broker.port))
    with pytest.raises(TimeoutError):
        fleet.connect(timeout_s=2.0)
    fleet.close()


def test_power_loss_publishes_the_retained_last_will(world, mqtt_broker, subscriber):
    fleet = make_fleet(world, mqtt_broker)
    fleet.connect()
    try:
        victim = world[1].serial
        subscriber.wait(f"/{victim}/telemetry", fleet=fleet)
        before = len(subscriber.on(f"/{victim}/status"))
        fleet.power_loss(victim)
        statuses = subscriber.wait(f"/{victim}/status", count=before + 1, fleet=fleet)
        assert [p for _, p, _ in statuses[before:]] == [b"offline"]
    finally:
        fleet.close()


def test_gateway_batching_sends_lists_of_readings(world, mqtt_broker, subscriber):
    fleet = make_fleet(world[:1], mqtt_broker, batch=5)
    fleet.connect()
    try:
        (_, payload, _), *_ = subscriber.wait(f"/{world[0].serial}/telemetry", fleet=fleet)
    finally:
        fleet.close()
    batch = json.loads(payload)
    assert isinstance(batch, list) and len(batch) == 5
    assert [r["ts"] for r in batch] == sorted(r["ts"] for r in batch)


def _fail_now(fleet, serial, mode):
    sim = fleet.units[serial].sim
    sim.force_onset(mode, sim.last_ts)
    sim.h[sim.spec.mode_index(mode)] = 1.0  # fails at its next reading
    fleet.units[serial].block = None
    fleet.units[serial].next_ts = sim.last_ts + 10.0


def _complete(db, device, mode, finding_mode, parts_used):
    tech = catalog.technicians(db)[0]
    van = parts.van_of(db, tech.id)
    for p in parts_used:
        parts.receive(db, van, p.sku, p.quantity, actor="test", now=datetime.now(UTC))
    now = datetime.now(UTC)
    job = jobs.create_job(db, jobs.JobRequest(source=JobSource.FAULT_EVENT, device_id=device.id,
                                              failure_mode=mode), actor="test", now=now)
    jobs.assign(db, job.id, tech.id, now, actor="test", now=now)
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        jobs.transition(db, job.id, status, expected_version=None, actor="test", now=now)
    jobs.transition(db, job.id, JobStatus.COMPLETED, expected_version=None, actor="test",
                    now=now + timedelta(seconds=1), finding="fault_confirmed", finding_mode=finding_mode,
                    parts_used=parts_used)
    db.commit()


@pytest.fixture
def failed_chiller(world, db, db_url, mqtt_broker, subscriber):
    chiller = next((d for d in world if d.model_code == "chiller"), None)
    if chiller is None:
        catalog.create_device(db, "CH-900001", "chiller", catalog.devices(db)[0].site_id,
                              datetime.now(UTC) - timedelta(days=400))
        db.commit()
        d = catalog.device_by_serial(db, "CH-900001")
        chiller = FleetDevice(d.id, d.serial, d.model_code)
        mqtt_broker.add_users({chiller.serial: device_password(SECRET, chiller.serial)})
    fleet = make_fleet([chiller], mqtt_broker, conninfo=db_url)
    fleet.connect()
    _fail_now(fleet, chiller.serial, "refrigerant_leak")
    (_, payload, _), = subscriber.wait(f"/{chiller.serial}/events", fleet=fleet)
    assert json.loads(payload)["mode"] == "refrigerant_leak"
    yield fleet, chiller
    fleet.close()


def test_a_matching_repair_restores_the_live_device(failed_chiller, db, subscriber):
    fleet, chiller = failed_chiller
    _complete(db, chiller, "refrigerant_leak", "refrigerant_leak",
              (PartQuantity("REF-R134A-10", 2), PartQuantity("SEAL-KIT-CH", 1)))
    assert fleet.poll_repairs() == 1
    assert fleet.units[chiller.serial].sim.failed_mode is None
    events = subscriber.wait(f"/{chiller.serial}/events", count=2, fleet=fleet)
    assert json.loads(events[-1][1])["code"] == "RESTORED"
    (truth,) = store.failures(db, [chiller.id])
    assert truth.repaired_at is not None


def test_a_wrong_repair_leaves_the_live_device_failed(failed_chiller, db):
    fleet, chiller = failed_chiller
    _complete(db, chiller, "refrigerant_leak", "bearing_wear", (PartQuantity("BRG-CH-6312", 2),))
    assert fleet.poll_repairs() == 1
    assert fleet.units[chiller.serial].sim.failed_mode == "refrigerant_leak"


def test_devices_reconnect_after_a_broker_restart(world, mqtt_broker):
    fleet = make_fleet(world, mqtt_broker)
    fleet.connect()
    try:
        mqtt_broker.restart()
        deadline = time.monotonic() + 20
        while fleet.stats.connects < 2 * len(world) and time.monotonic() < deadline:
            fleet.step(0.05)
        assert fleet.stats.connects == 2 * len(world)
        assert all(u.connected for u in fleet.units.values())
    finally:
        fleet.close()


def test_a_fault_left_open_by_the_history_continues_live(world, db, db_url, mqtt_broker):
    device = world[0]
    mode = {"chiller": "refrigerant_leak", "air_compressor": "oil_leak",
            "elevator_drive": "door_operator_wear"}[device.model_code]
    failed = datetime.now(UTC) - timedelta(hours=3)
    store.record_failures(db, [store.FailureTruth(device.id, mode, "X", failed - timedelta(days=9), failed,
                                                  None, "backfill")])
    db.commit()
    fleet = make_fleet(world, mqtt_broker, conninfo=db_url)
    assert fleet.units[device.serial].sim.failed_mode == mode
    assert fleet.units[world[1].serial].sim.failed_mode is None


def test_injected_fault_fails_the_unit_with_that_mode_in_about_the_hours_given() -> None:
    fleet = Fleet([FleetDevice(1, "AC-T1", "air_compressor")], {"AC-T1": "unused"}, Clock(), FleetConfig())
    fleet.inject(FaultInjection.parse("AC-T1:filter_clogging:4"))
    sim = fleet.units["AC-T1"].sim
    start = sim.last_ts
    block = sim.advance(start + 60.0 * np.arange(1, 24 * 60))  # a day of minutes
    assert block.failure is not None and block.failure.mode == "filter_clogging"
    assert 2 * 3600 <= block.failure.failed_ts - start <= 6 * 3600
    assert not block.failure.sudden and block.failure.onset_ts == start


def test_sudden_injected_fault_fails_without_a_degradation_phase() -> None:
    fleet = Fleet([FleetDevice(1, "AC-T1", "air_compressor")], {"AC-T1": "unused"}, Clock(), FleetConfig())
    fleet.inject(FaultInjection.parse("AC-T1:filter_clogging:4:sudden"))
    sim = fleet.units["AC-T1"].sim
    block = sim.advance(sim.last_ts + 60.0 * np.arange(1, 24 * 60))
    assert block.failure is not None and block.failure.sudden


@pytest.mark.parametrize("text", ["AC-T1:filter_clogging", "AC-T1:filter_clogging:soon",
                                  "AC-T1:filter_clogging:0", "AC-T1:filter_clogging:4:later"])
def test_fault_injection_refuses_malformed_text_naming_the_field(text: str) -> None:
    with pytest.raises(ValueError, match="^fault:"):
        FaultInjection.parse(text)
