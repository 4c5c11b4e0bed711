"""Backfill: N days of history for M devices, straight into the database.

Readings go through :class:`fieldops.db.repo.telemetry.TelemetryWriter` (COPY, deduplicated) in
large batches and the hourly rollup is refreshed for the range afterwards. Each failure becomes a
fault event (already handled, as history) followed by the repair a service organisation would
have done: a response delay by contract, sometimes a first visit that could not fix it, then the
matching repair. Preventive maintenance visits happen every ~180 days per unit. Ground truth goes
to the ``simulator`` schema; the repairs go through the configured :class:`RepairRecorder`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
import psycopg

from fieldops.db import schema
from fieldops.db.pool import connect
from fieldops.db.repo import catalog
from fieldops.db.repo.telemetry import TelemetryWriter
from simulators import store
from simulators.device import DEFAULT_WARNING_H, Block, DeviceSim
from simulators.models import MODEL_SPECS

log = logging.getLogger(__name__)

BATCH_ROWS = 100_000
PM_INTERVAL_DAYS = 180.0
FIRST_TIME_FIX_P = 0.85
RESPONSE_MEDIAN_H = {"premium": 5.0, "standard": 20.0}


@dataclass(frozen=True, slots=True)
class Visit:
    """A maintenance visit that the history says happened (ground truth of what it did included)."""

    device_id: int
    model_code: str
    start: datetime
    end: datetime
    finding: str | None
    parts: dict[str, int]
    preventive: bool
    restored_mode: str | None
    failure_ts: datetime | None  # the failure this visit answered, if any
    note: str = ""


RepairRecorder = Callable[[psycopg.Connection, list[Visit]], int]


def record_in_simulator_schema(conn: psycopg.Connection, visits: list[Visit]) -> int:
    """Record visits only as ground truth (used when no jobs tables exist)."""
    return store.record_repairs(conn, [
        store.RepairTruth(v.device_id, v.end, v.finding, v.parts, v.preventive, v.restored_mode, "backfill")
        for v in visits
    ])


@dataclass
class BackfillResult:
    devices: int
    readings: int
    failures: int
    visits: int
    generate_s: float = 0.0
    write_s: float = 0.0
    rollup_s: float = 0.0
    open_faults: list[int] = field(default_factory=list)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class _History:
    """Drives one device through the range, deciding when repairs and PM visits happen."""

    def __init__(self, sim: DeviceSim, device_id: int, contract: str, rng: np.random.Generator) -> None:
        self.sim, self.device_id, self.contract, self.rng = sim, device_id, contract, rng
        self.failures: list[store.FailureTruth] = []
        self.events: list[store.FaultEvent] = []
        self.visits: list[Visit] = []

    def run(self, grid: np.ndarray, end_ts: float, emit: Callable[[Block], None]) -> None:
        sim, rng = self.sim, self.rng
        phase = rng.uniform(0, PM_INTERVAL_DAYS) * 86400.0
        pm_times = [float(t) for t in np.arange(grid[0] + phase, end_ts, PM_INTERVAL_DAYS * 86400.0)]
        pending: list[tuple[float, Visit]] = []  # scheduled repair visits, by completion time
        i = 0
        while True:
            next_pm = pm_times[0] if pm_times else np.inf
            next_fix = pending[0][0] if pending else np.inf
            stop = min(next_pm, next_fix)
            j = int(np.searchsorted(grid, stop, side="right"))  # rows up to the next visit
            if j > i:
                block = sim.advance(grid[i:j])
                emit(block)
                i += block.n
                if block.failure is not None:
                    pending = sorted(pending + self._answer(block.failure, end_ts), key=lambda p: p[0])
                    continue
            if not np.isfinite(stop):
                return
            ts = max(stop, sim.last_ts)
            if next_fix <= next_pm:
                _, visit = pending.pop(0)
                self._finish(visit, sim.repair(ts, visit.finding, visit.parts))
            else:
                pm_times.pop(0)
                failed = sim.failed_mode is not None
                sim.repair(ts, None, {}, preventive=True)
                self.visits.append(Visit(self.device_id, sim.spec.code, _dt(ts - 3600), _dt(ts), None, {},
                                         True, None, None, "preventive maintenance"
                                         + (" (unit found failed)" if failed else "")))

    def _answer(self, failure, end_ts: float) -> list[tuple[float, Visit]]:
        """The visits that follow a failure: maybe an unsuccessful first one, then the fix."""
        rng, sim = self.rng, self.sim
        self.failures.append(store.FailureTruth(self.device_id, failure.mode, failure.fault_code,
                                                _dt(failure.onset_ts), _dt(failure.failed_ts), None,
                                                "backfill"))
        mode = sim.spec.modes[sim.spec.mode_index(failure.mode)].mode
        duration = mode.repair_duration_s * rng.lognormal(0.0, 0.25)
        arrive = failure.failed_ts + 3600 * RESPONSE_MEDIAN_H.get(self.contract, 20.0) * rng.lognormal(0, 0.5)
        out = []
        if rng.random() > FIRST_TIME_FIX_P:  # the van lacked the part: a follow-up visit fixes it
            first_end = arrive + 1800
            out.append((first_end, Visit(self.device_id, sim.spec.code, _dt(arrive), _dt(first_end),
                                         failure.mode, {}, False, None, _dt(failure.failed_ts),
                                         "part missing, follow-up needed")))
            arrive = first_end + 86400 * rng.uniform(1.0, 3.0)
        parts = {p.sku: p.quantity for p in mode.parts}
        end = arrive + duration
        out.append((end, Visit(self.device_id, sim.spec.code, _dt(arrive), _dt(end), failure.mode, parts,
                               False, failure.mode, _dt(failure.failed_ts), "repaired")))
        out = [(t, v) for t, v in out if t < end_ts]
        # A fault answered within the range is history (handled); the last one may still be open.
        handled = _dt(failure.failed_ts + 120) if out else None
        self.events.append(store.FaultEvent(self.device_id, _dt(failure.failed_ts), failure.fault_code,
                                            failure.mode, handled))
        return out

    def _finish(self, visit: Visit, restored: str | None) -> None:
        visit = replace(visit, restored_mode=restored)
        self.visits.append(visit)
        if restored and visit.failure_ts is not None:
            self.failures = [replace(f, repaired_at=visit.end) if f.failed_at == visit.failure_ts else f
                             for f in self.failures]


def backfill(
    conninfo: str, *, days: float, devices: int | None = None, resolution_s: int = 600, seed: int = 7,
    end: datetime | None = None, recorder: RepairRecorder = record_in_simulator_schema,
    warning_h: float = DEFAULT_WARNING_H,
) -> BackfillResult:
    """Write ``days`` of history ending at ``end`` (default: now, on the resolution grid);
    ``warning_h`` is the nominal length of the degradation phase before each failure."""
    if days <= 0 or resolution_s <= 0:
        raise ValueError("days, resolution_s: must be positive")
    end = end or datetime.now(UTC)
    end_ts = float(int(end.timestamp()) // resolution_s * resolution_s)
    start_ts = end_ts - days * 86400.0
    grid = np.arange(start_ts + resolution_s, end_ts + 1, resolution_s, dtype=float)
    with connect(conninfo) as conn:
        fleet = [d for d in catalog.devices(conn) if d.model_code in MODEL_SPECS]
        fleet = fleet[:devices] if devices is not None else fleet
        contracts = dict(conn.execute(
            "SELECT d.id, c.contract FROM devices d JOIN sites s ON s.id = d.site_id "
            "JOIN customers c ON c.id = s.customer_id").fetchall())
        writer = TelemetryWriter(conn)
        result = BackfillResult(devices=len(fleet), readings=0, failures=0, visits=0)
        rows: list = []

        def flush() -> None:
            t = time.perf_counter()
            result.readings += writer.write(rows)
            conn.commit()
            rows.clear()
            result.write_s += time.perf_counter() - t

        for dev in fleet:
            t = time.perf_counter()
            sim = DeviceSim(MODEL_SPECS[dev.model_code], dev.serial, seed, start_ts, warning_h=warning_h)
            history = _History(sim, dev.id, contracts.get(dev.id, "standard"),
                               np.random.default_rng([seed, dev.id, 1]))

            def emit(block: Block, dev_id: int = dev.id) -> None:
                keep = block.present
                vals = np.where(np.isnan(block.values), None, block.values.astype(np.float32)).tolist()
                for ts, v, k in zip(block.ts.tolist(), vals, keep.tolist(), strict=True):
                    if k:
                        rows.append((dev_id, _dt(ts), int(ts) * 1000, v))  # seq: epoch ms, as live

            history.run(grid, end_ts, emit)
            store.record_failures(conn, history.failures)
            store.record_fault_events(conn, history.events)
            result.visits += recorder(conn, history.visits)
            result.failures += len(history.failures)
            if sim.failed_mode is not None:
                store.set_device_status(conn, dev.id, "fault", _dt(sim.failed_ts))
                result.open_faults.append(dev.id)
            result.generate_s += time.perf_counter() - t
            if len(rows) >= BATCH_ROWS:
                flush()
        flush()
    t = time.perf_counter()
    schema.refresh_rollup(conninfo, _dt(start_ts), _dt(end_ts + resolution_s))
    result.rollup_s = time.perf_counter() - t
    log.info("backfill: %d devices, %d readings, %d failures, %d visits (generate %.1fs, write %.1fs, "
             "rollup %.1fs)", result.devices, result.readings, result.failures, result.visits,
             result.generate_s, result.write_s, result.rollup_s)
    return result
