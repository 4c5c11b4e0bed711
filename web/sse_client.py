"""A minimal Server-Sent Events reader over http.client (tests and the bench use it)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    id: int | None
    event: str
    data: Any


def open_stream(host: str, port: int, path: str, *, cookie: str | None = None,
                last_event_id: int | None = None, timeout_s: float = 30.0) -> http.client.HTTPResponse:
    """GET an event stream; raises on a non-200 answer."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    headers = {"Accept": "text/event-stream"}
    if cookie:
        headers["Cookie"] = cookie
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise ConnectionError(f"{path}: HTTP {resp.status}")
    return resp


def messages(resp: http.client.HTTPResponse) -> Iterator[Message]:
    """Parse messages as they arrive; comments and keepalives are skipped."""
    event_id: int | None = None
    kind, data = "message", []
    while True:
        raw = resp.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield Message(event_id, kind, json.loads("\n".join(data)))
            event_id, kind, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = int(value)
            elif name == "event":
                kind = value
            elif name == "data":
                data.append(value)
