"""A paho-mqtt 2.x client with a cheaper receive and acknowledge path for the ingest consumer.

paho's own loop does, for every received message, one ``select`` and three ``recv`` calls, builds
an ``MQTTMessage`` with a ``Properties`` object and walks the topic-callback tree; manual
acknowledgements each queue one packet, wake the network thread and are written with one ``send``
each. At tens of thousands of messages per second that is most of a core. ``LeanClient`` keeps
paho for everything else (connect, session, keepalive, subscribe, reconnect, QoS 2) and changes:

* one ``recv`` of up to 256 KiB per wake-up; every complete packet in it is handled at once
  (PUBLISH packets decoded inline); after a short read the thread waits ``coalesce_s`` (2 ms)
  so that the next wake-up finds more packets;
* QoS 0/1 PUBLISH packets go to ``sink([(topic, payload, packet id), ...])``, one list per read,
  in order (topic as raw bytes; MQTT 5 properties are skipped: the consumer uses none, and it
  announces no topic alias maximum, so the broker never sends topic aliases);
* ``ack_many(mids)`` queues all PUBACKs of a committed batch as one write and one wake-up.

Acknowledgement is always manual (after commit): the client is made with ``manual_ack=True``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

PUBLISH = 0x30
PUBACK = 0x40
READ_CHUNK_BYTES = 262_144

Published = tuple[bytes, bytes, int]  # topic, payload, packet id (0 at QoS 0)
Sink = Callable[[list[Published]], None]


def puback_packets(mids: Iterable[int]) -> bytes:
    """PUBACK packets (reason code success, no properties) for the packet ids, concatenated."""
    mids = list(mids)
    return struct.pack(f"!{len(mids)}I", *[(PUBACK << 24) | (2 << 16) | mid for mid in mids])


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The MQTT variable byte integer at ``buf[pos]``: (value, position after it).

    IndexError if ``buf`` ends inside it, MalformedPacket if it runs over four bytes."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 28:
            raise MalformedPacket("variable byte integer longer than four bytes")


class LeanClient(mqtt.Client):
    """``mqtt.Client`` with bulk reads into a PUBLISH sink and batched acknowledgements."""

    coalesce_s = 0.002  # after a short read, wait this long before the next (0: never wait)

    def __init__(self, *args, sink: Sink, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self._manual_ack:
            raise ValueError("manual_ack: LeanClient acknowledges only through ack_many")
        self._sink = sink
        self._rbuf = b""
        self._rsock: object | None = None

    # ------------------------------------------------------------ reading

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read what the socket holds (up to ``READ_CHUNK_BYTES``) and handle every complete packet.

        PUBLISH packets at QoS 0/1 go to the sink, in order, one list per read; every other packet
        (CONNACK, SUBACK, PINGRESP, DISCONNECT, QoS 2 PUBLISH) goes to paho's own handler.
        """
        sock = self._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if sock is not self._rsock:  # a new connection: a partial packet of the old one is void
            self._rsock, self._rbuf = sock, b""
        try:
            data = self._sock_recv(READ_CHUNK_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        buf = self._rbuf + data if self._rbuf else data
        size = len(buf)
        pos = 0
        batch: list[tuple[bytes, bytes, int]] = []
        append = batch.append
        v5 = self._protocol == mqtt.MQTTv5
        while pos + 2 <= size:
            header = buf[pos]
            length = buf[pos + 1]
            if length < 0x80:  # a remaining length under 128 is one byte
                i = pos + 2
            elif pos + 2 < size and buf[pos + 2] < 0x80:  # under 16,384: two bytes (small messages)
                length = (length & 0x7F) | (buf[pos + 2] << 7)
                i = pos + 3
            else:
                try:
                    length, i = read_varint(buf, pos + 1)
                except IndexError:
                    break  # incomplete: wait for more bytes
                except MalformedPacket:
                    self._rbuf = b""
                    return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)
            end = i + length
            if end > size:
                break
            if header & 0xF0 == PUBLISH and header & 0x06 != 0x04 and v5:
                # inline: topic, packet id (QoS 1), properties (skipped), payload; ``at`` past
                # ``end`` marks a malformed packet
                at = i + 2 + ((buf[i] << 8) | buf[i + 1]) if length >= 2 else end + 1
                topic = buf[i + 2:at]
                mid = 0
                if header & 0x06:
                    mid = (buf[at] << 8) | buf[at + 1] if at + 2 <= end else 0
                    at += 2
                if at < end and buf[at] < 0x80:
                    at += 1 + buf[at]
                elif at < end:
                    try:
                        props, at = read_varint(buf, at)
                        at += props
                    except (MalformedPacket, IndexError):
                        at = end + 1
                else:
                    at = end + 1  # no properties length
                if at > end:
                    self._rbuf = b""
                    return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)
                append((topic, buf[at:end], mid))
            else:
                if batch:
                    self._sink(batch)
                    batch = []
                    append = batch.append
                rc = self._handle_other(header, buf[i:end])
                if rc > 0:
                    self._rbuf = b""
                    return self._loop_rc_handle(rc)
                if self._sock is not sock:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
            pos = end
        if batch:
            self._sink(batch)
        self._rbuf = buf[pos:]
        if self.coalesce_s and len(data) < READ_CHUNK_BYTES // 4:
            time.sleep(self.coalesce_s)  # let more arrive: fewer wake-ups, each handling more packets
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_other(self, header: int, body: bytes) -> MQTTErrorCode:
        self._in_packet = {
            "command": header, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
            "remaining_length": len(body), "packet": bytearray(body), "to_process": 0, "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
            "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0,
        }
        return rc

    # ------------------------------------------------------------ acknowledging

    def ack_many(self, mids: Iterable[int]) -> MQTTErrorCode:
        """Acknowledge QoS 1 messages (manual ack) with one queued write."""
        packets = puback_packets(mids)
        if not packets:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._packet_queue(PUBACK, packets, 0, 0)
