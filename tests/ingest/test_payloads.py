import json
from datetime import UTC, datetime, timedelta

import pytest

from fieldops.db.repo.ingest import DeviceRef
from ingest.payloads import DeviceEvent, Inbound, Parser, Refused, Status, Telemetry
from ingest.topics import Channel, topic
from tests.factories import PUMP, T0

DEVICE = DeviceRef(7, "pump-0001", "pump", datetime(2025, 1, 1, tzinfo=UTC))


@pytest.fixture
def parser():
    return Parser({"pump": PUMP}, {DEVICE.serial: DEVICE}.get, lambda: T0 + timedelta(hours=1),
                  max_payload_bytes=10_000)


def _msg(payload, channel=Channel.TELEMETRY, serial=DEVICE.serial):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Inbound(topic(serial, channel), body, 1, T0)


def _one(ts=None, **metrics):
    return {"ts": ts or T0.isoformat(), "seq": 3, "metrics": metrics or {"temp_c": 21.5}}


def test_metrics_land_in_their_model_slots(parser):
    out = parser.parse(_msg(_one(current_a=4, temp_c=21.5)))
    assert out[:2] == Telemetry(7, ((7, T0, 3, [21.5, None, 4.0]),))[:2]


@pytest.mark.parametrize("stamp", ["iso", "epoch_ms"])
def test_each_row_comes_with_its_timestamp_in_postgres_microseconds(parser, stamp):
    ts = T0 + timedelta(milliseconds=1234)
    value = ts.isoformat() if stamp == "iso" else int(ts.timestamp() * 1000)
    out = parser.parse(_msg(_one(ts=value)))
    assert (out.rows[0][1], out.ts_us) == (ts, ((ts - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),))


@pytest.mark.parametrize(("metrics", "field"), [
    ({"pressure": 1.0}, "metrics.pressure: not a metric"),
    ({"temp_c": "hot"}, "metrics.temp_c: expected a number"),
    ({"temp_c": True}, "metrics.temp_c: expected a number"),
    ({"temp_c": 151.0}, "metrics.temp_c: 151.0 is outside"),
])
def test_a_bad_metric_refuses_its_reading_naming_the_field(parser, metrics, field):
    out = parser.parse(_msg(_one(**metrics)))
    assert out.rows == () and field in out.refused[0][0]


def test_nan_is_refused_as_not_finite(parser):
    out = parser.parse(_msg(b'{"ts": "2026-03-02T08:00:00Z", "metrics": {"temp_c": NaN}}'))
    assert "not a finite number" in out.refused[0][0]


def test_future_timestamp_is_refused(parser):
    out = parser.parse(_msg(_one(ts=(T0 + timedelta(days=1)).isoformat())))
    assert "ts:" in out.refused[0][0] and "future" in out.refused[0][0]


def test_timestamp_before_installation_is_refused(parser):
    out = parser.parse(_msg(_one(ts="2024-06-01T00:00:00+00:00")))
    assert "before the device was installed" in out.refused[0][0]


def test_naive_timestamp_is_refused(parser):
    out = parser.parse(_msg(_one(ts="2026-03-02T08:00:00")))
    assert "no UTC offset" in out.refused[0][0]


def test_good_readings_survive_a_bad_neighbour(parser):
    out = parser.parse(_msg([_one(), _one(ts=(T0 + timedelta(seconds=1)).isoformat(), temp_c=1e9)]))
    assert len(out.rows) == 1 and out.refused[0][0].startswith("readings[1].metrics.temp_c")


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff\x00", "not valid UTF-8"),
    (b"{", "not valid JSON"),
    (b"[" * 50_00 + b"]" * 50_00, "nested too deeply"),
    (b"[]", "empty list"),
    (b"42", "expected a reading object"),
    (b"x" * 10_001, "over the limit"),
])
def test_bad_messages_are_refused_whole(parser, payload, reason):
    out = parser.parse(_msg(payload))
    assert isinstance(out, Refused) and reason in out.reason


def test_payload_naming_another_device_is_refused(parser):
    out = parser.parse(_msg({**_one(), "device": "pump-0002"}))
    assert isinstance(out, Refused) and out.reason.startswith("device:")


def test_unknown_device_is_refused(parser):
    out = parser.parse(_msg(_one(), serial="other-1"))
    assert out == Refused("topic: unknown device 'other-1'")


def test_plain_status_text_is_understood(parser):
    assert parser.parse(_msg(b"offline", Channel.STATUS)) == Status(7, "offline", T0 + timedelta(hours=1))


def test_status_json_carries_its_time(parser):
    out = parser.parse(_msg({"status": "online", "ts": T0.isoformat()}, Channel.STATUS))
    assert out == Status(7, "online", T0)


def test_event_keeps_extra_fields(parser):
    out = parser.parse(_msg({"code": "E42", "severity": "fault", "ts": T0.isoformat(), "temp": 99},
                            Channel.EVENTS))
    assert out == DeviceEvent(7, DEVICE.serial, T0, "E42", "fault", {"temp": 99})


def test_event_with_unknown_severity_is_refused(parser):
    out = parser.parse(_msg({"code": "E42", "severity": "bad", "ts": T0.isoformat()}, Channel.EVENTS))
    assert isinstance(out, Refused) and out.reason.startswith("severity:")
