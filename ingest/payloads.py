"""The one place that parses and checks device payloads (see the README, "Ingest: topics and payloads").

``Parser.parse`` turns a received MQTT message into exactly one frozen outcome: ``Telemetry``
(good readings, plus the single readings refused with their reasons), ``Status``, ``DeviceEvent``
or ``Refused`` (the whole message, with a reason naming the field). It never raises.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import numpy as np
import orjson

from fieldops.db.repo.ingest import DeviceRef
from fieldops.db.repo.ingest import StatusChange as Status  # a reported status is stored as is
from fieldops.db.repo.telemetry import PG_EPOCH_UNIX_US, Columns
from fieldops.domain import DeviceModel
from ingest import topics
from ingest.topics import Channel

log = logging.getLogger(__name__)

MAX_SEQ = 2**63 - 1
EVENT_SEVERITIES = frozenset({"info", "warning", "error", "fault"})
STATUSES = frozenset({"online", "offline"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)
TOPIC_CACHE_SIZE = 100_000
BLOCK_MIN_READINGS = 8  # lists at least this long are first checked as a whole, with numpy
_EXACT_FLOAT = 2**53  # integers below this convert to float exactly
_TS_SEQ_METRICS = itemgetter("ts", "seq", "metrics")
_NUMBERS = frozenset({int, float})
LATEST_REFRESH_S = 0.02
BULK_MIN_MESSAGES = 16  # batches at least this long first check their single readings together
_TOPIC, _PAYLOAD = itemgetter(0), itemgetter(1)
_TS, _SEQ, _METRICS = itemgetter("ts"), itemgetter("seq"), itemgetter("metrics")
_DEVICE_ID, _INSTALLED_MS, _MODEL_CODE = attrgetter("id"), attrgetter("installed_ms"), attrgetter("model_code")

Row = tuple[int, datetime, int | None, list[float | None]]  # as fieldops.db.repo.telemetry.Row


class Inbound(NamedTuple):  # a named tuple: one is made per message, and that must be cheap
    """One MQTT message as received (``mid`` is what gets acknowledged after commit)."""

    topic: str
    payload: bytes
    mid: int
    received_at: datetime
    session: int = 0  # the broker connection it arrived on


class Bulk(NamedTuple):
    """The single readings of a batch's telemetry messages that passed when checked together."""

    block: Columns  # one row per message, in the messages' order
    at: np.ndarray  # int64: the position in the batch of each row's message (ascending)


class Telemetry(NamedTuple):
    device_id: int
    rows: tuple[Row, ...]
    refused: tuple[tuple[str, bytes], ...] = ()  # (reason, the reading as JSON) per refused reading
    ts_us: tuple[int, ...] = ()  # each row's ts in microseconds since 2000-01-01 UTC (for the writer)
    block: Columns | None = None  # a list of readings that all passed, as columns (then rows is empty)


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    device_id: int
    serial: str
    ts: datetime
    code: str
    severity: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


Outcome = Telemetry | Status | DeviceEvent | Refused


class PayloadError(ValueError):
    """The whole message is refused; the text names the field."""


class ReadingError(ValueError):
    """One reading is refused; the text names the field."""


@dataclass(frozen=True, slots=True)
class _ModelSlots:
    code: str
    width: int
    slots: Mapping[str, tuple[int, float, float]]  # metric name -> (slot, min, max)
    columns: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray, np.ndarray]]  # names -> slot, min, max


def _columns_of(model: _ModelSlots, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Slot, min and max arrays for metric ``names`` in that order (cached); None if one is unknown."""
    found = model.columns.get(names)
    if found is None:
        if not names or len(model.columns) >= 64 or any(n not in model.slots for n in names):
            return None
        slots = [model.slots[n] for n in names]
        found = model.columns[names] = tuple(np.array(c) for c in zip(*slots, strict=True))
    return found


def _model_slots(model: DeviceModel) -> _ModelSlots:
    return _ModelSlots(
        model.code, len(model.metrics), {m.name: (m.index, m.min_value, m.max_value) for m in model.metrics}, {}
    )


class Parser:
    """Checks payloads against the device directory and the device models.

    ``lookup(serial)`` returns the device or None; ``now()`` is the shared clock.
    """

    def __init__(
        self,
        models: Mapping[str, DeviceModel],
        lookup: Callable[[str], DeviceRef | None],
        now: Callable[[], datetime],
        *,
        max_payload_bytes: int = 262_144,
        max_future_s: float = 300.0,
    ) -> None:
        self._models = {code: _model_slots(m) for code, m in models.items()}
        self._lookup = lookup
        self._now = now
        self.max_payload_bytes = max_payload_bytes
        self.max_future_s = max_future_s
        self._topics: dict[str, topics.DeviceTopic] = {}  # topic name -> parsed, for valid topics
        self._telemetry_serials: dict[str, str] = {}  # telemetry topic name -> serial
        self._latest_until = 0.0
        self._latest_cached: tuple[datetime, int] = (_EPOCH, 0)

    def update_models(self, models: Mapping[str, DeviceModel]) -> None:
        self._models = {code: _model_slots(m) for code, m in models.items()}

    def parse(self, msg: Inbound) -> Outcome:
        try:
            return self._parse(msg)
        except PayloadError as exc:
            return Refused(str(exc))
        except RecursionError:
            return Refused("payload: nested too deeply")
        except Exception as exc:  # a process never dies on one bad message
            log.warning("unexpected error parsing a message on %r", msg.topic[:120], exc_info=True)
            return Refused(f"payload: cannot be parsed ({type(exc).__name__})")

    def parse_many(self, messages: Sequence[Inbound]) -> tuple[list[Outcome | None], Bulk | None]:
        """``parse`` of each message, except for telemetry messages holding one reading of the
        common shape (an object of exactly ``ts`` in epoch ms, an integer ``seq`` and ``metrics``
        of known names): those are checked together with numpy, and the ones that pass are rows
        of the returned block, with outcome None. Every other message, and every one that does
        not pass, goes through ``parse``, so both ways accept, refuse and store the same."""
        bulk = None
        if len(messages) >= BULK_MIN_MESSAGES:
            try:
                bulk = self._bulk(messages)
            except Exception:  # a defect here must cost speed, never a message
                log.warning("checking %d messages together failed; checking them one by one",
                            len(messages), exc_info=True)
        parse = self.parse
        if bulk is None:
            return list(map(parse, messages)), None
        outcomes: list[Outcome | None] = [None] * len(messages)
        taken = bulk.at.tolist()
        if len(taken) < len(messages):
            for i in sorted(set(range(len(messages))).difference(taken)):
                outcomes[i] = parse(messages[i])
        return outcomes, bulk

    # ------------------------------------------------------------ whole messages

    def _parse(self, msg: Inbound) -> Outcome:
        where = self._topics.get(msg.topic)
        if where is None:
            try:
                where = topics.parse(msg.topic)
            except topics.TopicError as exc:
                raise PayloadError(f"topic: {exc}") from None
            if len(self._topics) >= TOPIC_CACHE_SIZE:
                self._topics.clear()
            self._topics[msg.topic] = where
        if len(msg.payload) > self.max_payload_bytes:
            raise PayloadError(
                f"payload: {len(msg.payload)} bytes is over the limit of {self.max_payload_bytes}"
            )
        device = self._lookup(where.serial)
        if device is None:
            raise PayloadError(f"topic: unknown device {where.serial!r}")
        if where.channel is Channel.TELEMETRY:
            return self._telemetry(device, msg.payload)
        if where.channel is Channel.STATUS:
            return self._status(device, msg.payload)
        return self._event(device, msg.payload)

    def _telemetry(self, device: DeviceRef, payload: bytes) -> Telemetry:
        doc = _json(payload)
        model = self._models.get(device.model_code)
        if model is None:
            raise PayloadError(f"device {device.serial}: model {device.model_code!r} is not known")
        if type(doc) is dict:
            readings = (doc,)
        elif type(doc) is list:
            if not doc:
                raise PayloadError("payload: empty list of readings")
            readings = doc
        else:
            raise PayloadError("payload: expected a reading object or a list of them")
        latest, latest_ms = self._latest()
        # Epoch milliseconds inside [installed, latest] need no further check (the hot path).
        window = (device.installed_ms, latest_ms)
        if len(readings) >= BLOCK_MIN_READINGS:
            block = _block(readings, device, model, window)
            if block is not None:
                return Telemetry(device.id, (), (), (), block)
        rows: list[Row] = []
        stamps: list[int] = []
        refused: list[tuple[str, bytes]] = []
        for i, reading in enumerate(readings):
            try:
                row, us = self._reading(reading, device, model, latest, window)
                rows.append(row)
                stamps.append(us)
            except ReadingError as exc:
                where = f"readings[{i}]." if len(readings) > 1 else ""
                refused.append((f"{where}{exc}", _dump(reading)))
        return Telemetry(device.id, tuple(rows), tuple(refused), tuple(stamps))

    def _status(self, device: DeviceRef, payload: bytes) -> Status:
        text = payload.strip()
        if text in (b"online", b"offline"):
            return Status(device.id, text.decode(), self._now())
        doc = _json(payload)
        if type(doc) is str:
            doc = {"status": doc}
        if type(doc) is not dict:
            raise PayloadError('status: expected "online", "offline" or {"status": ..., "ts": ...}')
        _check_device(doc, device)
        status = doc.get("status")
        if status not in STATUSES:
            raise PayloadError(f"status: must be online or offline, not {_show(status)}")
        ts = self._now() if doc.get("ts") is None else self._message_ts(doc.get("ts"), device, "ts")
        return Status(device.id, status, ts)

    def _event(self, device: DeviceRef, payload: bytes) -> DeviceEvent:
        doc = _json(payload)
        if type(doc) is not dict:
            raise PayloadError("event: expected an object with code, severity and ts")
        _check_device(doc, device)
        code = doc.get("code")
        if type(code) is not str or not 1 <= len(code) <= 64 or not code.isprintable():
            raise PayloadError(f"code: expected 1 to 64 printable characters, not {_show(code)}")
        severity = doc.get("severity")
        if severity not in EVENT_SEVERITIES:
            raise PayloadError(f"severity: must be one of {sorted(EVENT_SEVERITIES)}, not {_show(severity)}")
        ts = self._message_ts(doc.get("ts"), device, "ts")
        extra = {k: v for k, v in doc.items() if k not in ("code", "severity", "ts")}
        try:
            text = json.dumps(extra, allow_nan=False)
        except ValueError:
            raise PayloadError("event: extra fields hold NaN or infinity") from None
        if "\\u0000" in text:
            raise PayloadError("event: extra fields hold a NUL character")
        return DeviceEvent(device.id, device.serial, ts, code, severity, extra)

    def _latest(self) -> tuple[datetime, int]:
        """The newest acceptable timestamp (and as epoch ms), from ``now()`` at most every 20 ms of
        real time (so several hundred messages share one clock read; the 5-minute limit moves by
        20 ms times the clock speed at most)."""
        tick = time.monotonic()
        if tick >= self._latest_until:
            latest = self._now() + timedelta(seconds=self.max_future_s)
            self._latest_cached = (latest, (latest - _EPOCH) // _MS)
            self._latest_until = tick + LATEST_REFRESH_S
        return self._latest_cached

    def _message_ts(self, value: object, device: DeviceRef, field: str) -> datetime:
        latest = self._now() + timedelta(seconds=self.max_future_s)
        try:
            return _timestamp(value, device, latest)
        except ReadingError as exc:
            raise PayloadError(f"{field}: {exc}") from None

    # ------------------------------------------------------------ single readings, many messages at once

    def _bulk(self, messages: Sequence[Inbound]) -> Bulk | None:
        """The messages holding one reading of the common shape that passes every check, as one
        block (see ``parse_many``); None if there are none."""
        at = list(range(len(messages)))
        names = list(map(_TOPIC, messages))
        serials = list(map(self._telemetry_serials.get, names))
        if None in serials:
            serials = [self._telemetry_serial(t) if s is None else s for t, s in zip(names, serials, strict=True)]
        refs = list(map(self._lookup, serials))
        payloads = list(map(_PAYLOAD, messages))
        if None in refs or max(map(len, payloads)) > self.max_payload_bytes:
            limit = self.max_payload_bytes
            keep = [k for k, (r, p) in enumerate(zip(refs, payloads, strict=True)) if r is not None and len(p) <= limit]
            at, refs, payloads = _pick(keep, at, refs, payloads)
        if not all(map(bytes.startswith, payloads, repeat(b"{"))):  # lists are not for here: parse once
            at, refs, payloads = _pick([k for k, p in enumerate(payloads) if p.startswith(b"{")], at, refs, payloads)
        if not payloads:
            return None
        try:
            docs = list(map(orjson.loads, payloads))
        except orjson.JSONDecodeError:
            docs = list(map(_loads_or_none, payloads))
        try:
            if set(map(type, docs)) != {dict} or set(map(len, docs)) != {3}:
                raise KeyError
            stamps, seqs, metrics = list(map(_TS, docs)), list(map(_SEQ, docs)), list(map(_METRICS, docs))
        except KeyError:
            keep = [k for k, d in enumerate(docs) if type(d) is dict and len(d) == 3
                    and "ts" in d and "seq" in d and "metrics" in d]
            at, refs, docs = _pick(keep, at, refs, docs)
            stamps, seqs, metrics = list(map(_TS, docs)), list(map(_SEQ, docs)), list(map(_METRICS, docs))
        if not docs:
            return None
        if set(map(type, stamps)) != {int} or set(map(type, seqs)) != {int} or set(map(type, metrics)) != {dict}:
            keep = [k for k, (ts, seq, m) in enumerate(zip(stamps, seqs, metrics, strict=True))
                    if type(ts) is int and type(seq) is int and type(m) is dict]
            if not keep:
                return None
            at, refs, stamps, seqs, metrics = _pick(keep, at, refs, stamps, seqs, metrics)
        latest_ms = self._latest()[1]
        try:
            parts = [self._bulk_group(key, ks, at, refs, stamps, seqs, metrics, latest_ms)
                     for key, ks in _groups(refs, metrics, exact=False).items()]
        except KeyError:  # a reading lacks a name of its group's first: group by the exact names
            parts = [self._bulk_group(key, ks, at, refs, stamps, seqs, metrics, latest_ms)
                     for key, ks in _groups(refs, metrics, exact=True).items()]
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        order = np.argsort(np.concatenate([p.at for p in parts]), kind="stable")
        merged = Columns.concat([p.block for p in parts]).take(order)
        return Bulk(merged, np.concatenate([p.at for p in parts])[order])

    def _bulk_group(self, key: tuple[str, tuple[str, ...]], ks: list[int], at: list[int], refs: list[DeviceRef],
                    stamps: Sequence, seqs: Sequence, metrics: Sequence, latest_ms: int) -> Bulk | None:
        """The readings ``ks`` (of one model and one list of metric names) that pass, as a block.

        KeyError if a reading lacks one of the names (an inexact group, see ``_groups``)."""
        code, names = key
        model = self._models.get(code)
        found = None if model is None else _columns_of(model, names)
        if found is None:
            return None
        if len(ks) == len(at):  # the whole batch is one group (the common case)
            refs_g, stamps_g, seqs_g, metrics_g, at_g = refs, stamps, seqs, metrics, at
        else:
            refs_g, stamps_g, seqs_g, metrics_g, at_g = _pick(ks, refs, stamps, seqs, metrics, at)
        values = _values(metrics_g, names)
        n, width = len(ks), len(names)
        if not set(map(type, chain.from_iterable(values))) <= _NUMBERS:
            plain = np.fromiter((all(type(v) is float or type(v) is int for v in row) for row in values), bool, n)
            values = [row if ok else (0.0,) * width for row, ok in zip(values, plain.tolist(), strict=True)]
        else:
            plain = None
        arrays = _arrays(stamps_g, seqs_g, values, n, width)
        if arrays is None:  # an integer beyond 64 bits: check this group one by one
            return None
        ts_ms, seq, got = arrays
        ok = ((ts_ms >= np.fromiter(map(_INSTALLED_MS, refs_g), np.int64, n)) & (ts_ms <= latest_ms) & (seq >= 0)
              & _in_range(got, found))
        if plain is not None:
            ok &= plain
        if not ok.any():
            return None
        device = np.fromiter(map(_DEVICE_ID, refs_g), np.int64, n)
        block = _columns(device[ok], ts_ms[ok], seq[ok], got[ok], found[0], model.width)
        return Bulk(block, np.fromiter(at_g, np.int64, n)[ok])

    def _telemetry_serial(self, name: str) -> str:
        """The device serial of a telemetry topic (remembered); "" for any other topic."""
        try:
            where = topics.parse(name)
        except topics.TopicError:
            return ""
        if where.channel is not Channel.TELEMETRY:
            return ""
        if len(self._telemetry_serials) >= TOPIC_CACHE_SIZE:
            self._telemetry_serials.clear()
        self._telemetry_serials[name] = where.serial
        return where.serial

    # ------------------------------------------------------------ single readings (the hot path)

    def _reading(self, reading: object, device: DeviceRef, model: _ModelSlots, latest: datetime,
                 window: tuple[int, int]) -> tuple[Row, int]:
        """The row and its ts in microseconds since 2000-01-01 UTC."""
        if type(reading) is not dict:
            raise ReadingError("reading: expected an object with ts, seq and metrics")
        if "device" in reading and reading["device"] != device.serial:
            raise PayloadError(
                f"device: payload names {_show(reading['device'])} but the topic names {device.serial!r}"
            )
        value = reading.get("ts")
        if type(value) is int and window[0] <= value <= window[1]:
            ts = _EPOCH + _MS * value
            us = value * 1000 - PG_EPOCH_UNIX_US
        else:
            try:
                ts = _timestamp(value, device, latest)
            except ReadingError as exc:
                raise ReadingError(f"ts: {exc}") from None
            us = (ts - _EPOCH) // _US - PG_EPOCH_UNIX_US
        seq = reading.get("seq")
        if seq is not None and (type(seq) is not int or not 0 <= seq <= MAX_SEQ):
            raise ReadingError(f"seq: expected a non-negative integer, not {_show(seq)}")
        metrics = reading.get("metrics")
        if type(metrics) is not dict or not metrics:
            raise ReadingError("metrics: expected a non-empty object of metric name to number")
        vals: list[float | None] = [None] * model.width
        slots = model.slots
        for name, value in metrics.items():
            slot = slots.get(name)
            if slot is None:
                raise ReadingError(f"metrics.{name[:64]}: not a metric of model {model.code}")
            kind = type(value)
            if kind is not float and kind is not int:
                raise ReadingError(f"metrics.{name}: expected a number, not {_show(value)}")
            index, lo, hi = slot
            if not lo <= value <= hi:
                if kind is float and not math.isfinite(value):
                    raise ReadingError(f"metrics.{name}: {value} is not a finite number")
                raise ReadingError(f"metrics.{name}: {_show(value)} is outside [{lo}, {hi}]")
            vals[index] = float(value)
        return (device.id, ts, seq, vals), us


def _block(readings: list, device: DeviceRef, model: _ModelSlots, window: tuple[int, int]) -> Columns | None:
    """A list of readings as columns, checked with numpy, if every reading passes as the common
    shape (epoch-ms ``ts`` inside ``window``, an integer ``seq``, the same metric names in the same
    order, plain numbers in range); None otherwise, and then ``_reading`` checks them one by one
    (which names the field of each refusal), so both ways accept exactly the same readings."""
    if set(map(type, readings)) != {dict} or any(map(dict.__contains__, readings, repeat("device"))):
        return None
    try:
        stamps, seqs, metrics = zip(*map(_TS_SEQ_METRICS, readings), strict=True)
    except KeyError:
        return None
    if set(map(type, stamps)) != {int} or set(map(type, seqs)) != {int} or set(map(type, metrics)) != {dict}:
        return None
    names = tuple(metrics[0])
    found = _columns_of(model, names)
    if found is None or set(map(len, metrics)) != {len(names)}:
        return None
    try:
        values = _values(metrics, names)
    except KeyError:
        return None
    if not set(map(type, chain.from_iterable(values))) <= _NUMBERS:
        return None
    n = len(readings)
    arrays = _arrays(stamps, seqs, values, n, len(names))
    if arrays is None:
        return None
    ts_ms, seq, got = arrays
    if (int(ts_ms.min()) < window[0] or int(ts_ms.max()) > window[1] or int(seq.min()) < 0
            or not _in_range(got, found).all()):
        return None
    return _columns(np.full(n, device.id, np.int64), ts_ms, seq, got, found[0], model.width)


def _values(metrics: Sequence[dict], names: tuple[str, ...]) -> list[tuple]:
    """Each reading's values of ``names``, in that order (KeyError if one lacks a name)."""
    get = itemgetter(*names)
    return list(map(get, metrics)) if len(names) > 1 else [(v,) for v in map(get, metrics)]


def _arrays(stamps: Sequence, seqs: Sequence, values: list[tuple], n: int, width: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(ts in epoch ms, seq, values ``[n, width]``) as arrays; None if an integer is beyond 64 bits."""
    try:
        return (np.fromiter(stamps, np.int64, n), np.fromiter(seqs, np.int64, n),
                np.fromiter(chain.from_iterable(values), np.float64, n * width).reshape(n, width))
    except OverflowError:
        return None


def _in_range(got: np.ndarray, found: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Per reading: every value inside its metric's range and exact as a float."""
    _, lo, hi = found
    return ((got >= lo) & (got <= hi) & (np.abs(got) < _EXACT_FLOAT)).all(axis=1)


def _columns(device: np.ndarray, ts_ms: np.ndarray, seq: np.ndarray, got: np.ndarray, index: np.ndarray,
             width: int) -> Columns:
    """Checked readings as the writer's columns (values in their model's slots, NaN elsewhere)."""
    vals = np.full((len(device), width), np.nan)
    vals[:, index] = got
    return Columns(device, ts_ms * 1000 - PG_EPOCH_UNIX_US, seq, vals, np.full(len(device), width, np.int64))


def _pick(keep: list[int], *columns: Sequence) -> list[list]:
    """The items at positions ``keep`` of each of the parallel ``columns``."""
    return [[c[k] for k in keep] for c in columns]


def _groups(refs: list[DeviceRef], metrics: list[dict], exact: bool) -> dict[tuple[str, tuple[str, ...]], list[int]]:
    """Positions of the readings by (model, metric names). Not ``exact``: one group named as its first
    reading when all are of one model and have as many names (the caller then finds any reading
    whose names differ by a KeyError); ``exact``: each reading by its own names, in order."""
    names = tuple(metrics[0])
    if not exact and len(set(map(_MODEL_CODE, refs))) == 1 and set(map(len, metrics)) == {len(names)}:
        return {(refs[0].model_code, names): list(range(len(metrics)))}
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for k, key in enumerate(zip(map(_MODEL_CODE, refs), map(tuple, metrics), strict=True)):
        groups.setdefault(key, []).append(k)
    return groups


def _timestamp(value: object, device: DeviceRef, latest: datetime) -> datetime:
    kind = type(value)
    if kind is int:
        if not 0 <= value <= 253_402_300_799_000:  # up to 9999-12-31
            raise ReadingError(f"epoch milliseconds {_show(value)} out of range")
        ts = _EPOCH + timedelta(milliseconds=value)
    elif kind is str:
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise ReadingError(f"{_show(value)} is not ISO-8601") from None
        if ts.tzinfo is None:
            raise ReadingError(f"{_show(value)} has no UTC offset")
    else:
        raise ReadingError(f"expected ISO-8601 UTC text or epoch milliseconds, not {_show(value)}")
    if ts > latest:
        raise ReadingError(f"{ts.isoformat()} is in the future")
    if ts < device.installed_at:
        raise ReadingError(f"{ts.isoformat()} is before the device was installed")
    return ts


def _check_device(doc: dict, device: DeviceRef) -> None:
    if "device" in doc and doc["device"] != device.serial:
        raise PayloadError(f"device: payload names {_show(doc['device'])} but the topic names {device.serial!r}")


def _json(payload: bytes) -> object:
    """The document; orjson first (fast, strict), the standard library for whatever it refuses,
    so that NaN, huge integers and the error texts are the same either way."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):  # deeper than the standard library could go
            raise PayloadError("payload: nested too deeply") from None
    try:
        return json.loads(payload.decode())
    except UnicodeDecodeError:
        raise PayloadError("payload: not valid UTF-8") from None
    except RecursionError:
        raise PayloadError("payload: nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"payload: not valid JSON ({str(exc)[:100]})") from None


def _loads_or_none(payload: bytes) -> object:
    """What orjson makes of the payload, or None if it refuses it."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _dump(value: object) -> bytes:
    try:
        return json.dumps(value)[:4096].encode()
    except (ValueError, TypeError, RecursionError):
        return repr(value)[:4096].encode(errors="replace")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
