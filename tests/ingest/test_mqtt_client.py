"""LeanClient (ingest.mqtt_client) against the real broker: what reaches the sink, and acks."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt_client import LeanClient, puback_packets, read_varint
from tests.ingest.helpers import client_id, forget_session, publisher, wait_until


def _lean(port: int, user: str, password: str, cid: str, topic_filter: str, got: list) -> LeanClient:
    lock = threading.Lock()

    def sink(batch):
        with lock:
            got.extend(batch)

    client = LeanClient(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5,
                        manual_ack=True, sink=sink)
    client.username_pw_set(user, password)
    subscribed = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    assert subscribed.wait(10), "LeanClient did not subscribe"
    return client


def _stop(client: LeanClient) -> None:
    client.disconnect()
    client.loop_stop()


def test_puback_packets_are_four_bytes_each_with_the_packet_id():
    assert puback_packets([1, 0x1234]) == b"\x40\x02\x00\x01\x40\x02\x12\x34"


def test_read_varint_returns_the_value_and_the_position_after_it():
    assert [read_varint(b"\x00\x7f\x80\x01\xff\x7f", p) for p in (0, 1, 2, 4)] == [
        (0, 1), (127, 2), (128, 4), (16_383, 6)]


def test_read_varint_runs_out_of_bytes_on_an_incomplete_integer():
    with pytest.raises(IndexError):
        read_varint(b"\x80\x80", 0)


def test_read_varint_refuses_more_than_four_bytes():
    with pytest.raises(MalformedPacket):
        read_varint(b"\x80\x80\x80\x80\x01", 0)


def test_lean_client_refuses_automatic_acknowledgement():
    with pytest.raises(ValueError, match="manual_ack"):
        LeanClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, sink=lambda batch: None)


def test_sink_gets_topic_and_payload_of_a_publish_with_properties(mqtt_broker, operator):
    cid = client_id("lean")
    got: list = []
    lean = _lean(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password, cid,
                 "fieldops/v1/devices/lean-a/#", got)
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = ("origin", "test")
        operator.publish("fieldops/v1/devices/lean-a/telemetry", b'{"x": 1}', qos=1,
                         properties=props).wait_for_publish(10)
        wait_until(lambda: len(got) == 1, 10, "the message at the sink")
        topic, payload, mid = got[0]
        assert (topic, payload, mid > 0) == (b"fieldops/v1/devices/lean-a/telemetry", b'{"x": 1}', True)
    finally:
        _stop(lean)
        forget_session(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password, cid)


def test_a_payload_larger_than_one_read_arrives_whole(mqtt_broker, operator):
    cid = client_id("lean")
    got: list = []
    lean = _lean(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password, cid,
                 "fieldops/v1/devices/lean-b/#", got)
    big = bytes(range(256)) * 3000  # 768,000 bytes: several socket reads
    try:
        operator.publish("fieldops/v1/devices/lean-b/telemetry", b"first", qos=1)
        operator.publish("fieldops/v1/devices/lean-b/telemetry", big, qos=1)
        operator.publish("fieldops/v1/devices/lean-b/telemetry", b"last", qos=1).wait_for_publish(10)
        wait_until(lambda: len(got) == 3, 20, "three messages at the sink")
        assert [p for _, p, _ in got] == [b"first", big, b"last"]
    finally:
        _stop(lean)
        forget_session(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password, cid)


def test_unacknowledged_messages_come_back_and_acknowledged_ones_do_not(mqtt_broker, operator):
    cid = client_id("lean")
    user, password = mqtt_broker.ingest_user, mqtt_broker.ingest_password
    got: list = []
    lean = _lean(mqtt_broker.port, user, password, cid, "fieldops/v1/devices/lean-c/#", got)
    try:
        for n in range(4):
            operator.publish("fieldops/v1/devices/lean-c/telemetry", str(n).encode(), qos=1)
        wait_until(lambda: len(got) == 4, 10, "four messages at the sink")
        lean.ack_many([mid for _, payload, mid in got if payload in (b"0", b"2")])
        time.sleep(0.5)  # the acknowledgements reach the broker
        _stop(lean)
        again: list = []
        lean = _lean(mqtt_broker.port, user, password, cid, "fieldops/v1/devices/lean-c/#", again)
        wait_until(lambda: len(again) == 2, 10, "the two unacknowledged messages again")
        time.sleep(0.3)
        assert sorted(p for _, p, _ in again) == [b"1", b"3"]
    finally:
        _stop(lean)
        forget_session(mqtt_broker.port, user, password, cid)


def test_a_plain_paho_publisher_still_works_with_a_lean_subscriber(mqtt_broker):
    """Sanity: a device account publishing through paho reaches the lean client (ACL and all)."""
    mqtt_broker.add_users({"lean-d": "pw-lean-d"})
    cid = client_id("lean")
    got: list = []
    lean = _lean(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password, cid,
                 "fieldops/v1/devices/lean-d/#", got)
    device = publisher(mqtt_broker.port, "lean-d", "pw-lean-d")
    try:
        device.publish("fieldops/v1/devices/lean-d/status", b"online", qos=0)
        wait_until(lambda: len(got) == 1, 10, "the QoS 0 message at the sink")
        assert got[0][1:] == (b"online", 0)
    finally:
        device.disconnect()
        device.loop_stop()
        _stop(lean)
        forget_session(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password, cid)
