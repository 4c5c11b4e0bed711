"""Ingest counters in Prometheus text format, served over HTTP from a daemon thread."""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

log = logging.getLogger(__name__)


class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def observe_many(self, values: Sequence[float]) -> None:
        """``observe`` each value (bucketed with numpy: one call per batch, not per message)."""
        if not len(values):
            return
        v = np.asarray(values, dtype=np.float64)
        at = np.bincount(np.searchsorted(self.bounds, v, side="left"), minlength=len(self.counts))
        self.counts = [c + int(a) for c, a in zip(self.counts, at.tolist(), strict=True)]
        self.total += float(v.sum())
        self.n += len(v)

    def quantile(self, q: float) -> float:
        """Estimate by linear interpolation inside the bucket holding the q-quantile."""
        if self.n == 0:
            return 0.0
        rank = q * self.n
        seen = 0
        for i, c in enumerate(self.counts):
            if seen + c >= rank and c:
                lo = self.bounds[i - 1] if i > 0 else 0.0
                hi = self.bounds[i] if i < len(self.bounds) else self.bounds[-1]
                return lo + (hi - lo) * (rank - seen) / c
            seen += c
        return self.bounds[-1]


SECONDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
SIZES = (1, 10, 100, 1000, 5000, 10000, 50000, 100000)


class IngestMetrics:
    """Everything the consumer counts. Updated under ``lock``, read by the HTTP thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages_received = 0
        self.messages_accepted = 0
        self.messages_acknowledged = 0
        self.readings_stored = 0
        self.readings_duplicate = 0
        self.dead_messages = 0
        self.dead_readings = 0
        self.events_stored = 0
        self.status_updates = 0
        self.batches = 0
        self.flush_failures = 0
        self.buffered_messages = 0
        self.connected = 0
        self.batch_readings = Histogram(SIZES)
        self.commit_seconds = Histogram(SECONDS)
        self.reading_age_seconds = Histogram(SECONDS)

    def render(self) -> str:
        with self.lock:
            out: list[str] = []
            counters = [
                ("ingest_messages_received_total", "MQTT messages received", self.messages_received),
                ("ingest_messages_accepted_total", "messages stored (possibly minus refused readings)",
                 self.messages_accepted),
                ("ingest_messages_acknowledged_total", "QoS 1 messages acknowledged (after commit)",
                 self.messages_acknowledged),
                ("ingest_readings_stored_total", "readings committed", self.readings_stored),
                ("ingest_readings_duplicate_total", "redelivered readings dropped", self.readings_duplicate),
                ("ingest_events_stored_total", "device events stored", self.events_stored),
                ("ingest_status_updates_total", "status messages applied", self.status_updates),
                ("ingest_batches_total", "committed batches", self.batches),
                ("ingest_flush_failures_total", "batch writes that failed and were retried",
                 self.flush_failures),
            ]
            for name, help_text, value in counters:
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
            out += [
                "# HELP ingest_dead_letters_total messages and readings refused, by kind",
                "# TYPE ingest_dead_letters_total counter",
                f'ingest_dead_letters_total{{kind="message"}} {self.dead_messages}',
                f'ingest_dead_letters_total{{kind="reading"}} {self.dead_readings}',
                "# TYPE ingest_buffered_messages gauge",
                f"ingest_buffered_messages {self.buffered_messages}",
                "# TYPE ingest_broker_connected gauge",
                f"ingest_broker_connected {self.connected}",
            ]
            for name, help_text, h in [
                ("ingest_batch_readings", "readings per committed batch", self.batch_readings),
                ("ingest_commit_seconds", "batch write and commit latency", self.commit_seconds),
                ("ingest_reading_age_at_commit_seconds", "commit time minus the newest reading ts "
                 "of each message", self.reading_age_seconds),
            ]:
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
                cumulative = 0
                for bound, count in zip(h.bounds, h.counts, strict=False):
                    cumulative += count
                    out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
                out.append(f'{name}_bucket{{le="+Inf"}} {h.n}')
                out += [f"{name}_sum {h.total}", f"{name}_count {h.n}"]
            return "\n".join(out) + "\n"


def parse_text(text: str) -> dict[str, float]:
    """Sample name (with labels) -> value, from Prometheus text (for tests and the bench)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def serve(metrics: IngestMetrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``/metrics`` on ``host:port`` (0: any free port, see ``server_address``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingest-metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", host, server.server_address[1])
    return server
