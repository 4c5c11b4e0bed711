"""Helpers for the ingest tests: a consumer running in a thread, MQTT v5 publishers, waiting."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fieldops.config import Settings
from ingest.consumer import Consumer, ConsumerConfig
from ingest.topics import Channel, topic

_ids = itertools.count()


def client_id(prefix: str = "ingest-test") -> str:
    return f"{prefix}-{time.monotonic_ns()}-{next(_ids)}"


def publisher(port: int, user: str, password: str, *, will: tuple[str, bytes] | None = None,
              cid: str | None = None) -> mqtt.Client:
    """A connected MQTT v5 client with its network loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid or client_id("pub"),
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if will:
        client.will_set(will[0], will[1], qos=1, retain=True)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.connect("127.0.0.1", port, keepalive=5)
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        raise TimeoutError(f"{user} could not connect")
    return client


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]], timeout_s: float = 60,
                retain: bool = False) -> None:
    """Publish at QoS 1 and wait until the broker acknowledged every message."""
    infos = [client.publish(t, p, qos=1, retain=retain) for t, p in messages]
    deadline = time.monotonic() + timeout_s
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "broker did not acknowledge a publish"


def reading(ts: datetime, seq: int = 0, **metrics: float) -> dict:
    return {"ts": ts.isoformat(), "seq": seq, "metrics": metrics or {"temp_c": 20.0}}


def telemetry(serial: str, payload: object) -> tuple[str, bytes]:
    return topic(serial, Channel.TELEMETRY), json.dumps(payload).encode()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30, what: str = "condition",
               detail: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {detail()}")
        time.sleep(0.05)


def forget_session(port: int, user: str, password: str, cid: str) -> None:
    """End a persistent session so that it does not keep its share of later tests' messages."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


@contextmanager
def running_consumer(settings: Settings, forget: bool = True, **config):
    """A consumer running in a thread for the duration of the block; yields it once subscribed.

    Its broker session is ended afterwards unless ``forget`` is False."""
    cfg = ConsumerConfig(client_id=config.pop("client_id", None) or client_id(), **config)
    consumer = Consumer(settings, cfg)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            consumer.run(stop)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=target, name="consumer", daemon=True)
    thread.start()
    try:
        assert consumer.subscribed.wait(15), "consumer did not subscribe"
        consumer.thread = thread
        yield consumer
    finally:
        stop.set()
        thread.join(30)
        if forget:
            forget_session(settings.mqtt_port, settings.mqtt_username, settings.mqtt_password,
                           cfg.client_id)
    assert not errors, f"consumer died: {errors!r}"
