import json
from datetime import timedelta

from fieldops import events
from fieldops.db.repo import ingest as repo
from fieldops.db.repo import telemetry as telemetry_repo
from ingest.topics import Channel, topic
from tests.factories import T0
from tests.ingest.helpers import publish_all, reading, running_consumer, telemetry, wait_until


def _stored(db, device_id):
    db.rollback()
    return telemetry_repo.count(db, device_id)


def test_readings_are_stored_and_acknowledged(db, settings, pump, operator):
    with running_consumer(settings) as consumer:
        publish_all(operator, [telemetry(pump.serial, reading(T0 + timedelta(seconds=i), i)) for i in range(50)])
        wait_until(lambda: _stored(db, pump.id) == 50, what="50 readings")
        wait_until(lambda: consumer.metrics.readings_stored == 50, what="counters")


def test_a_list_of_readings_in_one_message_is_stored(db, settings, pump, operator):
    batch = [reading(T0 + timedelta(seconds=i), i) for i in range(10)]
    with running_consumer(settings):
        publish_all(operator, [telemetry(pump.serial, batch)])
        wait_until(lambda: _stored(db, pump.id) == 10, what="10 readings")


def test_epoch_milliseconds_are_accepted(db, settings, pump, operator):
    ms = int(T0.timestamp() * 1000)
    with running_consumer(settings):
        publish_all(operator, [telemetry(pump.serial, {"ts": ms, "seq": 1, "metrics": {"temp_c": 3}})])
        wait_until(lambda: _stored(db, pump.id) == 1, what="the reading")
    (got,) = telemetry_repo.read_range(db, pump.id, T0, T0 + timedelta(seconds=1))
    assert got.values[0] == 3.0


def test_a_bad_reading_is_dead_lettered_and_its_neighbours_stored(db, settings, pump, operator):
    batch = [reading(T0, 0), reading(T0 + timedelta(seconds=1), 1, temp_c=900.0), reading(T0 + timedelta(seconds=2), 2)]
    with running_consumer(settings):
        publish_all(operator, [telemetry(pump.serial, batch)])
        wait_until(lambda: _stored(db, pump.id) == 2, what="the two good readings")
        wait_until(lambda: repo.dead_letter_count(db, "reading") == 1, what="the dead letter")
    (reason,) = repo.dead_letter_reasons(db, "reading")
    assert "metrics.temp_c" in reason and "outside" in reason


def test_unknown_device_is_dead_lettered(db, settings, pump, operator):
    with running_consumer(settings):
        publish_all(operator, [telemetry("ghost-1", reading(T0))])
        wait_until(lambda: repo.dead_letter_count(db, "message") == 1, what="the dead letter")
    assert "unknown device 'ghost-1'" in repo.dead_letter_reasons(db)[0]


def test_redelivered_readings_are_stored_once(db, settings, pump, operator):
    with running_consumer(settings) as consumer:
        message = telemetry(pump.serial, reading(T0, 1))
        publish_all(operator, [message, message])
        wait_until(lambda: consumer.metrics.readings_duplicate == 1, what="the duplicate counted")
    assert _stored(db, pump.id) == 1


def test_readings_advance_last_seen_and_bring_the_device_online(db, settings, pump, operator):
    with running_consumer(settings):
        publish_all(operator, [telemetry(pump.serial, reading(T0 + timedelta(seconds=5), 7))])
        wait_until(lambda: _stored(db, pump.id) == 1, what="the reading")
    row = db.execute("SELECT last_seen, last_seq, status FROM devices WHERE id = %s", (pump.id,)).fetchone()
    assert row == (T0 + timedelta(seconds=5), 7, "online")


def _gateway_list(first_seq, n):
    """A gateway's list of readings in epoch milliseconds (the shape checked as one block)."""
    ms = int(T0.timestamp() * 1000)
    return [{"ts": ms + 1000 * i, "seq": i, "metrics": {"temp_c": 20.5, "current_a": i}}
            for i in range(first_seq, first_seq + n)]


def test_a_long_gateway_list_is_stored_exactly_and_advances_last_seen(db, settings, pump, operator):
    with running_consumer(settings) as consumer:
        publish_all(operator, [telemetry(pump.serial, _gateway_list(0, 50))])
        wait_until(lambda: _stored(db, pump.id) == 50, what="50 readings")
        wait_until(lambda: consumer.metrics.readings_stored == 50, what="counters")
    got = telemetry_repo.read_range(db, pump.id, T0, T0 + timedelta(minutes=1))
    seen = db.execute("SELECT last_seen, last_seq FROM devices WHERE id = %s", (pump.id,)).fetchone()
    assert ([(r.ts, r.seq, r.values) for r in got[-1:]], seen) == (
        [(T0 + timedelta(seconds=49), 49, (20.5, None, 49.0))], (T0 + timedelta(seconds=49), 49))


def test_overlapping_gateway_lists_are_stored_once(db, settings, pump, operator):
    with running_consumer(settings) as consumer:
        publish_all(operator, [telemetry(pump.serial, _gateway_list(0, 30)), telemetry(pump.serial, _gateway_list(20, 30))])
        wait_until(lambda: consumer.metrics.readings_duplicate == 10, what="the 10 repeats counted")
    assert _stored(db, pump.id) == 50


def _status(db, device_id):
    db.rollback()
    return db.execute("SELECT status FROM devices WHERE id = %s", (device_id,)).fetchone()[0]


def test_offline_status_is_applied_and_published(db, settings, pump, operator):
    with running_consumer(settings):
        publish_all(operator, [(topic(pump.serial, Channel.STATUS), b"offline")])
        wait_until(lambda: _status(db, pump.id) == "offline", what="offline")
    kinds = [e.kind for e in events.since(db, 0)]
    assert events.DEVICE_STATUS in kinds


def test_going_offline_is_stored_as_an_unhandled_device_event(db, settings, pump, operator):
    with running_consumer(settings):
        publish_all(operator, [(topic(pump.serial, Channel.STATUS), b"offline")])
        wait_until(lambda: _status(db, pump.id) == "offline", what="offline")
    row = db.execute("SELECT code, severity, handled_at FROM device_events WHERE device_id = %s",
                     (pump.id,)).fetchone()
    assert row == ("offline", "warning", None)


def test_last_will_marks_the_device_offline(db, settings, pump, mqtt_broker):
    from tests.ingest.helpers import publisher

    mqtt_broker.add_users({pump.serial: "pw-" + pump.serial})
    with running_consumer(settings):
        device = publisher(mqtt_broker.port, pump.serial, "pw-" + pump.serial,
                           will=(topic(pump.serial, Channel.STATUS), b"offline"))
        publish_all(device, [(topic(pump.serial, Channel.STATUS), b"online")])
        wait_until(lambda: _status(db, pump.id) == "online", what="online")
        device._sock.close()  # vanish without DISCONNECT: the broker sends the will
        device.loop_stop()
        wait_until(lambda: _status(db, pump.id) == "offline", timeout_s=30, what="the last will")
        device_clear = publisher(mqtt_broker.port, mqtt_broker.admin_user, mqtt_broker.admin_password)
        device_clear.publish(topic(pump.serial, Channel.STATUS), b"", qos=1, retain=True).wait_for_publish(5)
        device_clear.disconnect()
        device_clear.loop_stop()  # the retained will is cleared for the tests that follow


def test_fault_event_is_stored_unhandled_and_published(db, settings, pump, operator):
    event = {"code": "E42", "severity": "fault", "ts": T0.isoformat(), "detail": "overheat"}
    with running_consumer(settings):
        publish_all(operator, [(topic(pump.serial, Channel.EVENTS), json.dumps(event).encode())] * 2)
        wait_until(lambda: db.rollback() or db.execute("SELECT count(*) FROM device_events").fetchone()[0] == 1,
                   what="the event")
    row = db.execute("SELECT code, severity, payload, handled_at FROM device_events").fetchone()
    assert row == ("E42", "fault", {"detail": "overheat"}, None)
    faults = [e for e in events.since(db, 0) if e.kind == events.DEVICE_FAULT]
    assert len(faults) == 1 and faults[0].payload["code"] == "E42"


def test_garbage_does_not_stop_the_consumer(db, settings, pump, operator):
    junk = [(topic(pump.serial, Channel.TELEMETRY), p) for p in (b"\xff\xfe", b"[" * 100_000, b"{}", b"1e999")]
    with running_consumer(settings) as consumer:
        publish_all(operator, junk + [telemetry(pump.serial, reading(T0))])
        wait_until(lambda: _stored(db, pump.id) == 1, what="the good reading after the junk")
        assert consumer.thread.is_alive()
    assert repo.dead_letter_count(db, "message") == 3  # "{}" is one bad reading, not a bad message
    assert repo.dead_letter_count(db, "reading") == 1
