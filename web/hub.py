"""Live-update fan-out: one LISTEN thread per process feeding every SSE subscriber's queue.

The listener wakes on NOTIFY ``fieldops_events``, reads the new rows once through the pool and
offers each event to every subscriber; each subscriber's filter decides what it may see.

It follows the events' commit order (``commit_seq``, see :mod:`fieldops.events`), not their ids:
a transaction that took a lower id and commits late still comes after everything read before.
It starts without a database: where it begins following is fixed by whichever first reaches the
database, the listener or a stream (:meth:`Hub.begin`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg_pool import ConnectionPool

from fieldops import events
from fieldops.db.errors import is_unavailable
from fieldops.events import Event

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

Filter = Callable[[Event], Event | None]
QUEUE_SIZE = 1000
BATCH = 500
RECONNECT_FIRST_S = 0.5  # the listener's first wait after a failure, doubled on each further one
RECONNECT_MAX_S = 5.0


@dataclass(eq=False)
class Subscriber:
    """One open SSE stream. ``filter`` returns the event to send (maybe reduced) or None."""

    filter: Filter
    queue: queue.Queue[Event | None] = field(default_factory=lambda: queue.Queue(QUEUE_SIZE))
    dropped: bool = False

    def offer(self, event: Event) -> None:
        try:
            shown = self.filter(event)
        except Exception:  # a broken filter must not stop the fan-out to others
            log.exception("subscriber filter failed on event %s", event.id)
            return
        if shown is None:
            return
        try:
            self.queue.put_nowait(shown)
        except queue.Full:
            self.dropped = True  # the stream closes; the browser reconnects with Last-Event-ID


class Hub:
    """Fans events out to subscribers. ``start`` runs the listener thread (daemon)."""

    def __init__(self, pool: ConnectionPool, conninfo: str, poll_s: float = 1.0) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self._poll_s = poll_s
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_seq: int | None = None  # commit position followed from; None until begun
        self._begun = threading.Event()
        self._begin_lock = threading.Lock()

    def start(self) -> Hub:
        """Start the listener thread; it connects (and reconnects) on its own."""
        self._thread = threading.Thread(target=self._run, name="fieldops-sse-hub", daemon=True)
        self._thread.start()
        return self

    def begin(self, conn: psycopg.Connection) -> None:
        """Fix the commit position the hub follows from, once: the newest one when first called.

        The listener calls it when it first reaches the database; a stream calls it before reading
        its own starting point on ``conn``, so the hub never starts after a stream it feeds.
        """
        if self._begun.is_set():
            return
        with self._begin_lock:
            if self._last_seq is None:
                self._last_seq = events.last_commit_seq(conn)
                self._begun.set()

    def wait_begun(self, timeout_s: float) -> bool:
        """Wait until the hub follows the events (see :meth:`begin`); False after ``timeout_s``."""
        return self._begun.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=self._poll_s + 1.0)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def subscribe(self, filter: Filter) -> Subscriber:
        sub = Subscriber(filter)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)

    def _run(self) -> None:
        """Listen and dispatch until stopped. A failure is logged once, a lost database as a warning
        without traceback, anything else with it (and again if the kind of failure changes); the
        listener reconnects after RECONNECT_FIRST_S, doubling up to RECONNECT_MAX_S, and logs when
        it reads events again. Should the thread end otherwise, that is logged as critical."""
        failed_at: float | None = None
        logged_outage: bool | None = None  # the kind of failure last logged in this spell
        wait_s = RECONNECT_FIRST_S
        try:
            while not self._stop.is_set():
                try:
                    for _note in events.listen(self._conninfo, timeout_s=self._poll_s):
                        if self._stop.is_set():
                            return
                        # Also poll on timeouts: a NOTIFY sent while reconnecting is not lost.
                        self._dispatch_new()
                        if failed_at is not None:
                            log.info("event listener reading events again after %.1f s",
                                     time.monotonic() - failed_at)
                            failed_at, logged_outage, wait_s = None, None, RECONNECT_FIRST_S
                except Exception as exc:
                    if self._stop.is_set():
                        return
                    if failed_at is None:
                        failed_at = time.monotonic()
                    outage = is_unavailable(exc)
                    if outage == logged_outage:
                        log.debug("event listener still failing: %s", exc)
                    elif outage:
                        log.warning("event listener lost the database, reconnecting: %s: %s",
                                    type(exc).__name__, " ".join(str(exc).split()))
                    else:
                        log.exception("event listener failed; retrying")
                    logged_outage = outage
                    self._stop.wait(wait_s)
                    wait_s = min(2 * wait_s, RECONNECT_MAX_S)
        finally:
            if not self._stop.is_set():
                log.critical("event listener thread ended: this process sends no more live updates")

    def _dispatch_new(self) -> None:
        while True:
            with self._pool.connection() as conn:
                self.begin(conn)
                batch = events.committed_since(conn, self._last_seq, BATCH)
            if batch:
                self._last_seq = batch[-1].commit_seq
            with self._lock:
                subs = list(self._subs)
            for event in batch:
                for sub in subs:
                    sub.offer(event)
            if len(batch) < BATCH:
                return
