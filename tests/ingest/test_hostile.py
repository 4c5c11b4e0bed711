"""Hostile input at volume: >= 10,000 generated payloads and topics through the real broker."""

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fieldops.db.repo import ingest as repo
from ingest.topics import DEVICE_ROOT, Channel
from tests.ingest.helpers import publish_all, running_consumer, wait_until

EXAMPLES = 260
PER_EXAMPLE = 40  # 260 x 40 = 10,400 messages (small examples keep hypothesis fast)
KNOWN = "pump-0001"

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)
metric_names = st.sampled_from(["temp_c", "vibration_mm_s", "current_a"]) | st.text(max_size=12)
near_readings = st.fixed_dictionaries(
    {
        "ts": st.one_of(
            st.integers(min_value=1_735_689_600_000, max_value=1_900_000_000_000),
            st.integers(), st.just("2026-03-02T08:00:00Z"), st.text(max_size=30), json_values,
        ),
        "metrics": st.dictionaries(metric_names, json_scalars | json_values, max_size=4),
    },
    optional={"seq": st.integers() | json_scalars, "device": st.sampled_from([KNOWN, "other-2"])},
)


def _dumps(value) -> bytes:
    return json.dumps(value).encode()


valid_readings = st.fixed_dictionaries({
    "ts": st.integers(min_value=1_735_689_600_000, max_value=1_767_225_600_000),  # 2025
    "seq": st.integers(min_value=0, max_value=2**40),
    "metrics": st.fixed_dictionaries({"temp_c": st.floats(-40, 150), "current_a": st.integers(0, 100)}),
})

payloads = st.one_of(
    valid_readings.map(_dumps),
    st.binary(max_size=120),
    json_values.map(_dumps),
    near_readings.map(_dumps),
    st.lists(near_readings, min_size=1, max_size=5).map(_dumps),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=6000).map(lambda n: b'{"ts": ' + b"9" * n + b', "metrics": {}}'),
    st.binary(min_size=1, max_size=20).map(lambda b: b'{"ts": "' + b + b'", "metrics": {"temp_c": 1}}'),
    st.tuples(near_readings, near_readings).map(
        lambda r: b'{"ts": %s, "ts": %s, "metrics": %s, "metrics": %s}' % (
            _dumps(r[0]["ts"]), _dumps(r[1]["ts"]), _dumps(r[0]["metrics"]), _dumps(r[1]["metrics"]))),
    st.sampled_from([b"online", b"offline", b'"online"', b'{"status": "offline"}']),
    st.fixed_dictionaries({"code": json_scalars, "severity": st.sampled_from(["fault", "info", "x"]),
                           "ts": st.just("2026-03-02T08:00:00Z") | json_scalars}).map(_dumps),
)
serials = st.one_of(
    st.just(KNOWN), st.just("ghost-1"),
    # topics the broker accepts: valid UTF-8 without control characters (Mosquitto checks that)
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="/+#"), max_size=20),
)
messages = st.tuples(serials, st.sampled_from(list(Channel)), payloads).map(
    lambda m: (f"{DEVICE_ROOT}/{m[0]}/{m[1].value}", m[2])
)


def test_hostile_messages_end_stored_or_dead_lettered(db, settings: object, pump, operator):
    with running_consumer(settings, batch_age_s=0.05) as consumer:
        published = [0]

        @settings_(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])
        @given(st.lists(messages, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
        def check(batch):
            publish_all(operator, batch)
            published[0] += len(batch)
            assert consumer.thread.is_alive()

        check()
        assert published[0] >= 10_000
        m = consumer.metrics
        # >=: Mosquitto 2.0.11 also hands retained status messages to shared subscribers
        wait_until(lambda: m.messages_received >= published[0], timeout_s=60, what="every message handled",
                   detail=lambda: (published[0], m.render()))
        time.sleep(0.5)
        assert consumer.thread.is_alive()
        assert m.messages_accepted + m.dead_messages == m.messages_received
        assert m.readings_stored > 0 and m.dead_messages > 0 and m.dead_readings > 0
        db.rollback()
        assert repo.dead_letter_count(db, "message") == consumer.metrics.dead_messages
        assert repo.dead_letter_count(db, "reading") == consumer.metrics.dead_readings
        assert all(repo.dead_letter_reasons(db))


settings_ = settings
