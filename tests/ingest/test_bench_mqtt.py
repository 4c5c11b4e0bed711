"""The bench's raw-socket MQTT 5 load generator and relay subscriber against the real broker."""

from __future__ import annotations

import json
import threading

from bench.ingest import raw_publish, raw_subscribe, split_packets, varint
from tests.ingest.helpers import publisher, wait_until


def test_varint_encodes_mqtt_variable_byte_integers():
    assert [varint(n) for n in (0, 127, 128, 16_383, 16_384)] == [
        b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01"]


def test_split_packets_keeps_an_incomplete_packet_for_the_next_read():
    buf = bytearray(b"\x40\x02\x00\x01\x40\x02\x00")
    packets = split_packets(buf)
    assert ([(first, bytes(body)) for first, body in packets], bytes(buf)) == ([(0x40, b"\x00\x01")], b"\x40\x02\x00")


def test_raw_publishes_are_acknowledged_and_delivered_to_a_paho_subscriber(mqtt_broker):
    got: list[bytes] = []
    sub = publisher(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.subscribe("fieldops/v1/devices/raw-a/telemetry", qos=1)
    assert subscribed.wait(10)
    try:
        acked, refused = raw_publish(mqtt_broker.port, ["raw-a"], 2, 0.2, 50,
                                     user=mqtt_broker.admin_user, password=mqtt_broker.admin_password)
        wait_until(lambda: len(got) == acked, 20, "every acknowledged message at the subscriber")
        readings = [json.loads(p) for p in got]
        stamps = [r["ts"] for batch in readings for r in batch]
        assert (refused, acked > 0, len(set(stamps)) == 2 * acked) == (0, True, True)
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_publishes_outside_the_acl_are_counted_as_refused(mqtt_broker):
    mqtt_broker.add_users({"raw-b": "pw-raw-b"})
    acked, refused = raw_publish(mqtt_broker.port, ["raw-other"], 1, 0.1, 10, user="raw-b", password="pw-raw-b")
    assert (acked, refused > 0) == (0, True)


def test_raw_subscriber_receives_what_a_paho_client_publishes(mqtt_broker):
    keep: list[tuple[bytes, bytes]] = []
    ready = threading.Event()
    done = threading.Event()
    counted: list[int] = []

    def run() -> None:
        counted.append(raw_subscribe(mqtt_broker.port, "fieldops/v1/devices/raw-c/#", lambda n: n >= 3,
                                     user=mqtt_broker.ingest_user, password=mqtt_broker.ingest_password,
                                     on_ready=ready.set, keep=keep))
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    pub = publisher(mqtt_broker.port, mqtt_broker.admin_user, mqtt_broker.admin_password)
    try:
        for n in range(3):
            pub.publish("fieldops/v1/devices/raw-c/telemetry", f"m{n}".encode(), qos=1)
        assert done.wait(10), "raw subscriber did not receive three messages"
        assert (counted, keep) == ([3], [(b"fieldops/v1/devices/raw-c/telemetry", f"m{n}".encode())
                                         for n in range(3)])
    finally:
        pub.disconnect()
        pub.loop_stop()
