"""Lists of readings checked as a whole with numpy must accept and store exactly what the
one-by-one checks would."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fieldops.db.repo.ingest import DeviceRef
from fieldops.db.repo.telemetry import Columns
from ingest import payloads
from ingest.payloads import Inbound, Parser
from ingest.topics import Channel, topic
from tests.factories import PUMP, T0

DEVICE = DeviceRef(7, "pump-0001", "pump", datetime(2025, 1, 1, tzinfo=UTC))
T0_MS = int(T0.timestamp() * 1000)


@pytest.fixture
def parser():
    return Parser({"pump": PUMP}, {DEVICE.serial: DEVICE}.get, lambda: T0 + timedelta(hours=1))


def _msg(readings):
    return Inbound(topic(DEVICE.serial, Channel.TELEMETRY), json.dumps(readings).encode(), 1, T0)


def _good(n, **extra):
    return [{"ts": T0_MS + i, "seq": i, "metrics": {"temp_c": 20.0 + i, "current_a": 4}, **extra}
            for i in range(n)]


def _one_by_one(parser, msg, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(payloads, "BLOCK_MIN_READINGS", 10**9)
        return parser.parse(msg)


def _as_columns(out):
    return out.block if out.block is not None else Columns.from_rows(out.rows, out.ts_us)


def _same(a: Columns, b: Columns) -> bool:
    return (np.array_equal(a.device, b.device) and np.array_equal(a.ts_us, b.ts_us)
            and np.array_equal(a.seq, b.seq) and np.array_equal(a.width, b.width)
            and np.array_equal(a.vals, b.vals, equal_nan=True))


def test_a_long_list_of_good_readings_becomes_one_block_equal_to_the_rows(parser, monkeypatch):
    msg = _msg(_good(20))
    out = parser.parse(msg)
    assert out.rows == () and _same(out.block, _as_columns(_one_by_one(parser, msg, monkeypatch)))


def test_one_bad_reading_in_a_long_list_is_refused_by_index_and_the_rest_stored(parser):
    readings = _good(20)
    readings[9]["metrics"]["temp_c"] = 900.0
    out = parser.parse(_msg(readings))
    assert (len(out.rows), out.block) == (19, None) and out.refused[0][0].startswith("readings[9].metrics.temp_c:")


def test_a_reading_naming_another_device_still_refuses_the_message(parser):
    out = parser.parse(_msg(_good(10, device="pump-0002")))
    assert "device: payload names 'pump-0002'" in out.reason


_bad_values = st.one_of(
    st.floats(-50, 160), st.integers(-50, 160), st.just(True), st.just("1.5"), st.none(),
    st.integers(2**53, 2**70), st.just(float("nan")), st.just(float("inf")),
)
_bad_stamps = st.one_of(st.integers(T0_MS - 10**12, T0_MS + 10**8), st.just(False), st.just(T0.isoformat()),
                        st.integers(2**63, 2**64), st.just(1.5))
_bad_seqs = st.one_of(st.integers(-5, -1), st.none(), st.just(2**63), st.just(1.0), st.just(True))
_metric_names = ["temp_c", "vibration_mm_s", "current_a"]


@st.composite
def _readings(draw):
    """A long list of good readings of one shape, with a few mutations (often none)."""
    names = draw(st.lists(st.sampled_from(_metric_names), min_size=1, max_size=3, unique=True))
    n = draw(st.integers(8, 30))
    out = [{"ts": T0_MS + i * draw(st.integers(0, 2)), "seq": i,
            "metrics": {k: draw(st.one_of(st.floats(0, 50), st.integers(0, 50))) for k in names}}
           for i in range(n)]
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, n - 1))
        r = out[at]
        if type(r) is not dict:
            continue
        kind = draw(st.sampled_from(["value", "name", "order", "ts", "seq", "no_seq", "not_dict", "empty"]))
        if kind == "value":
            r["metrics"][draw(st.sampled_from(names))] = draw(_bad_values)
        elif kind == "name":
            r["metrics"][draw(st.sampled_from([*_metric_names, "pressure"]))] = 1.0
        elif kind == "order":
            r["metrics"] = dict(reversed(list(r["metrics"].items())))
        elif kind in ("ts", "seq"):
            r[kind] = draw(_bad_stamps if kind == "ts" else _bad_seqs)
        elif kind == "no_seq":
            r.pop("seq", None)  # may have been drawn for this reading already
        elif kind == "empty":
            r["metrics"] = {}
        else:
            out[at] = draw(st.sampled_from([[], "x", 3]))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(readings=_readings())
def test_block_and_one_by_one_checks_accept_and_refuse_the_same(parser, monkeypatch, readings):
    msg = Inbound(topic(DEVICE.serial, Channel.TELEMETRY),
                  json.dumps(readings, allow_nan=True).encode(), 1, T0)
    fast, slow = parser.parse(msg), _one_by_one(parser, msg, monkeypatch)
    event("block" if fast.block is not None else "one by one")
    assert fast.refused == slow.refused
    assert _same(_as_columns(fast), _as_columns(slow))
