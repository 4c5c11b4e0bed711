"""Single readings of many messages checked together (``Parser.parse_many``) must accept, refuse
and store exactly what ``Parser.parse`` does message by message."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fieldops.db.repo.ingest import DeviceRef
from fieldops.db.repo.telemetry import Columns
from fieldops.domain import DeviceModel, Metric
from ingest.consumer import _gather
from ingest.payloads import BULK_MIN_MESSAGES, Inbound, Parser, Telemetry
from ingest.topics import Channel, topic
from tests.factories import PUMP, T0
from tests.ingest.test_payload_blocks import _bad_seqs, _bad_stamps, _bad_values, _same

FAN = DeviceModel("fan", "Test fan", (Metric(0, "rpm", "1/min", 0, 3000), Metric(1, "current_a", "A", 0, 10)))
PUMP_A = DeviceRef(7, "pump-0001", "pump", datetime(2025, 1, 1, tzinfo=UTC))
PUMP_B = DeviceRef(8, "pump-0002", "pump", T0 - timedelta(minutes=5))  # installed just before T0
FAN_A = DeviceRef(9, "fan-0001", "fan", datetime(2025, 1, 1, tzinfo=UTC))
GHOST = DeviceRef(10, "ghost-0001", "ghost", datetime(2025, 1, 1, tzinfo=UTC))  # a model not known
DEVICES = {d.serial: d for d in (PUMP_A, PUMP_B, FAN_A, GHOST)}
NAMES = {"pump": ["temp_c", "vibration_mm_s", "current_a"], "fan": ["rpm", "current_a"]}
T0_MS = int(T0.timestamp() * 1000)
MAX_PAYLOAD = 300


@pytest.fixture
def parser():
    return Parser({"pump": PUMP, "fan": FAN}, DEVICES.get, lambda: T0 + timedelta(hours=1),
                  max_payload_bytes=MAX_PAYLOAD)


def _reading(draw, model: str, i: int) -> object:
    """A good single reading of ``model``, often mutated in one way."""
    names = draw(st.lists(st.sampled_from(NAMES[model]), min_size=1, max_size=len(NAMES[model]), unique=True))
    r = {"ts": T0_MS + i * draw(st.integers(-2, 2)), "seq": i,
         "metrics": {k: draw(st.one_of(st.floats(0, 10), st.integers(0, 10))) for k in names}}
    kind = "none" if draw(st.integers(0, 4)) else draw(st.sampled_from(["value", "name", "order", "ts", "seq", "no_seq", "empty",
                                 "device", "other_device", "extra", "not_dict", "list", "iso_ts", "big"]))
    if kind == "value":
        r["metrics"][draw(st.sampled_from(names))] = draw(_bad_values)
    elif kind == "name":
        r["metrics"][draw(st.sampled_from(["temp_c", "rpm", "current_a", "pressure"]))] = 1.0
    elif kind == "order":
        r["metrics"] = dict(reversed(list(r["metrics"].items())))
    elif kind in ("ts", "seq"):
        r[kind] = draw(_bad_stamps if kind == "ts" else _bad_seqs)
    elif kind == "no_seq":
        del r["seq"]
    elif kind == "empty":
        r["metrics"] = {}
    elif kind in ("device", "other_device", "extra"):
        r["device" if kind != "extra" else "note"] = draw(st.sampled_from(list(DEVICES)))
    elif kind == "iso_ts":
        r["ts"] = (T0 + timedelta(milliseconds=i)).isoformat()
    elif kind == "big":
        r["metrics"]["note"] = "x" * MAX_PAYLOAD
    elif kind == "list":
        return [r, dict(r, ts=r["ts"] + 1)]
    elif kind == "not_dict":
        return draw(st.sampled_from([[], "x", 3, None]))
    return r


@st.composite
def _messages(draw):
    """A batch of mostly good single readings from several devices and models, with odd ones."""
    out = []
    for i in range(draw(st.integers(BULK_MIN_MESSAGES, 40))):
        device = draw(st.sampled_from([PUMP_A, PUMP_A, PUMP_B, PUMP_B, FAN_A, FAN_A, GHOST]))
        serial = device.serial if draw(st.integers(0, 20)) else "pump-9999"  # sometimes unknown
        channel = Channel.TELEMETRY if draw(st.integers(0, 20)) else Channel.STATUS
        body = json.dumps(_reading(draw, "fan" if device is FAN_A else "pump", i), allow_nan=True).encode()
        body = draw(st.sampled_from([body] * 30 + [body[:-1], b"\xff" + body, body.replace(b"10", b"NaN"),
                                     body.replace(b'"seq": ', b'"seq": 99999999999999999999')]))
        name = topic(serial, channel) if draw(st.integers(0, 20)) else f"fieldops/v1/devices/{serial}/telemetry/x"
        out.append(Inbound(name, body, i + 1, T0))
    return out


def _rows(out: Telemetry) -> Columns:
    return Columns.from_rows(out.rows, out.ts_us)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=_messages())
def test_many_at_once_and_one_by_one_accept_refuse_and_store_the_same(parser, messages):
    outcomes, bulk = parser.parse_many(messages)
    alone = [parser.parse(m) for m in messages]
    taken = [] if bulk is None else bulk.at.tolist()
    event(f"{min(4, 5 * len(taken) // len(messages))} fifths together")
    assert [i for i, o in enumerate(outcomes) if o is None] == taken
    for i, (many, one) in enumerate(zip(outcomes, alone, strict=True)):
        if many is None:
            row = bulk.block.take(np.array([taken.index(i)]))
            row.vals = row.vals[:, :int(row.width[0])]  # a block of several models is as wide as the widest
            assert type(one) is Telemetry and one.refused == () and len(one.rows) == 1
            assert _same(row, _rows(one))
        else:
            assert many == one
    together, apart = _gather(messages, outcomes, bulk), _gather(messages, alone)
    assert (together.accepted, together.dead, together.seen) == (apart.accepted, apart.dead, apart.seen)
    assert (together.written is None) == (apart.written is None)
    if apart.written is not None:
        assert _same(together.written, apart.written)
        assert sorted(together.newest_us.tolist()) == sorted(apart.newest_us.tolist())


def test_a_batch_of_good_single_readings_is_one_block_in_message_order(parser):
    messages = [Inbound(topic(d.serial, Channel.TELEMETRY), json.dumps(
        {"ts": T0_MS + i, "seq": i, "metrics": {"current_a": i % 10}}).encode(), i + 1, T0)
        for i, d in enumerate([PUMP_A, FAN_A] * BULK_MIN_MESSAGES)]
    outcomes, bulk = parser.parse_many(messages)
    assert set(outcomes) == {None} and bulk.at.tolist() == list(range(len(messages)))
    assert bulk.block.device.tolist() == [7, 9] * BULK_MIN_MESSAGES


def test_one_bad_single_reading_among_many_is_refused_alone_with_its_reason(parser):
    messages = [Inbound(topic(PUMP_A.serial, Channel.TELEMETRY), json.dumps(
        {"ts": T0_MS + i, "seq": i, "metrics": {"temp_c": 900.0 if i == 5 else 20.0}}).encode(), i + 1, T0)
        for i in range(BULK_MIN_MESSAGES)]
    outcomes, bulk = parser.parse_many(messages)
    assert [i for i, o in enumerate(outcomes) if o is not None] == [5]
    assert outcomes[5].refused[0][0] == "metrics.temp_c: 900.0 is outside [-40.0, 150.0]"
    assert len(bulk.block) == BULK_MIN_MESSAGES - 1
