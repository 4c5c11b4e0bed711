"""The topic grammar, in one place: ``fieldops/v1/devices/{serial}/{telemetry|status|events}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

DEVICE_ROOT = "fieldops/v1/devices"
SHARE_GROUP = "ingest"
_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    STATUS = "status"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    serial: str
    channel: Channel


class TopicError(ValueError):
    """A topic outside the grammar."""


def valid_serial(serial: str) -> bool:
    return bool(_SERIAL.match(serial))


def topic(serial: str, channel: Channel) -> str:
    if not valid_serial(serial):
        raise TopicError(f"invalid device serial {serial!r}")
    return f"{DEVICE_ROOT}/{serial}/{channel.value}"


def parse(topic_name: str) -> DeviceTopic:
    prefix = DEVICE_ROOT + "/"
    if not topic_name.startswith(prefix):
        raise TopicError(f"topic {topic_name[:120]!r} is not under {DEVICE_ROOT}/")
    parts = topic_name[len(prefix):].split("/")
    if len(parts) != 2:
        raise TopicError(f"topic {topic_name[:120]!r}: expected {DEVICE_ROOT}/<serial>/<channel>")
    serial, channel = parts
    if not valid_serial(serial):
        raise TopicError(f"topic {topic_name[:120]!r}: invalid device serial")
    try:
        return DeviceTopic(serial, Channel(channel))
    except ValueError:
        raise TopicError(f"topic {topic_name[:120]!r}: unknown channel {channel[:40]!r}") from None


def subscriptions(shared: bool = True) -> list[str]:
    """Topic filters the ingest consumer subscribes to (through the shared group when ``shared``)."""
    filters = [f"{DEVICE_ROOT}/+/{c.value}" for c in Channel]
    return [f"$share/{SHARE_GROUP}/{f}" for f in filters] if shared else filters
