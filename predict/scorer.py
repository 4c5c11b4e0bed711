"""The scorer: scores every active device in batches, stores predictions, opens proactive jobs.

Where P(failure within the horizon) passes the model's threshold, a job is opened through the
service-jobs layer (which fills skill, parts and duration from the failure mode and de-duplicates
per device and mode). The job must be done before the predicted failure minus a safety margin;
its priority comes from the risk's margin above the threshold, the predicted time to failure
and the customer's contract; its explanation names the readings that drove the score in a
dispatcher's words. An open job for the same device and mode is only touched again when the
risk rises to a more urgent priority.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import psycopg
from threadpoolctl import threadpool_limits

from fieldops.domain import JobSource, JobType, Priority, TimeWindow
from fieldops.service import jobs
from predict import data
from predict import features as F
from predict.model import FailureModel

log = logging.getLogger(__name__)

ACTOR = "predict"
SAFETY_MARGIN_H = 12.0
MIN_WINDOW_H = 4.0
ACTIVE_WITHIN_H = 48.0
CONTRACT_BOOST = {"premium": 1, "gold": 1, "standard": 0, "basic": 0}
# priority margins: the share of the way from the operating threshold to p = 1
URGENT_MARGIN, HIGH_MARGIN, NORMAL_MARGIN = 0.6, 0.4, 0.15
URGENT_RUL_H = 24.0
# Devices per batch and batches scored at a time. Measured on 2 cores over 10,200 devices (bench):
# 2,000 on one thread gave 8,000-10,500 devices/s; 4,000 on two threads 13,500-15,000.
BATCH, COMPUTE_THREADS = 4000, 2
# The fleet's data rate against the training history's: hourly means of many more (or fewer)
# readings carry less (more) reading noise than the model learned from.
RATE_TOLERANCE = 2.0  # times, either way
RATE_WINDOW_H = 6  # complete hours the fleet's rate is taken over
RATE_CHECK_H = 24.0  # the score loop checks on a new model and then this often (service hours)


@dataclass(frozen=True, slots=True)
class Prediction:
    device_id: int
    p_fail: float
    rul_h: float
    failure_mode: str
    explanation: str
    contract: str


def priority_for(p_fail: float, threshold: float, contract: str, rul_h: float) -> Priority:
    """Risk and urgency to a priority, relative to the model's operating ``threshold``.

    The margin is how far the risk lies from the threshold towards certainty (0 at the threshold,
    1 at p = 1), so the mapping holds whatever threshold a model was given: well above it is P2 (P1
    when the failure is also due within a day), just above it P3/P4. Premium-like contracts go one
    step more urgent.
    """
    margin = (p_fail - threshold) / max(1.0 - threshold, 1e-9)
    if margin >= URGENT_MARGIN and rul_h <= URGENT_RUL_H:
        level = 1
    elif margin >= HIGH_MARGIN:
        level = 2
    elif margin >= NORMAL_MARGIN:
        level = 3
    else:
        level = 4
    return Priority(max(1, level - CONTRACT_BOOST.get(contract, 0)))


def _fmt_pct(change: float) -> str:
    return f"{'up' if change >= 0 else 'down'} {abs(change) * 100:.0f}%"


def explain(x_row: np.ndarray, names: list[str] | dict[str, int], slot_names: list[str],
            spec: F.FeatureSpec, top: int = 2) -> str:
    """The strongest departures from the device's own baseline, e.g. "vibration_rms up 40% over 7 days".

    ``names``: the feature names, or their column index by name (built once per batch)."""
    col = names if isinstance(names, dict) else {n: i for i, n in enumerate(names)}
    long_w = max(spec.windows)
    long_label = f"{long_w // 24} days" if long_w % 24 == 0 and long_w >= 48 else f"{long_w} h"
    row = x_row.tolist()  # Python floats: a few values per slot, no numpy call per value
    findings = []
    for m, metric in enumerate(slot_names[: spec.n_slots]):
        if not metric:
            continue
        base = row[col[f"m{m}:base_mean"]]
        z = row[col[f"m{m}:z_{long_w}"]]
        trend = row[col[f"m{m}:trend_{long_w}"]]
        mean = row[col[f"m{m}:mean_{long_w}"]]
        known = [abs(v) for v in (z, trend) if not math.isnan(v)]
        if not known or math.isnan(base) or abs(base) < 1e-9:
            continue
        change = (mean - base) / abs(base)
        findings.append((max(known), f"{metric} {_fmt_pct(change)} over {long_label} "
                                     f"({mean:.3g} vs {base:.3g} normal for this unit)"))
    for k, label in enumerate(data.COUNT_SEVERITIES[: spec.n_counts]):
        key = f"c{k}:count_24"
        if key in col and row[col[key]] > 0 and label != "fault":
            findings.append((float(row[col[key]]), f"{int(row[col[key]])} {label} events in 24 h"))
    findings.sort(key=lambda f: -f[0])
    return "; ".join(text for _, text in findings[:top]) or "risk pattern across several readings"


def window_for(model: FailureModel) -> data.Window:
    """A rolling window of the hours ``model`` needs before the scored hour."""
    return data.Window(model.spec.history + 1, model.spec.n_slots)


@dataclass(frozen=True, slots=True)
class Scores:
    """One batch's predictions as columns (one row per scored device)."""

    device_ids: np.ndarray
    p_fail: np.ndarray
    rul_h: np.ndarray
    modes: np.ndarray  # object: failure mode or ''
    explanations: np.ndarray  # object: the explanation where the risk passes the threshold, else ''
    contracts: list[str]

    def predictions(self, rows: np.ndarray | None = None) -> list[Prediction]:
        """The rows ``rows`` (all when None) as :class:`Prediction` objects."""
        rows = np.arange(len(self.device_ids)) if rows is None else rows
        return [Prediction(int(self.device_ids[r]), float(self.p_fail[r]), float(self.rul_h[r]),
                           self.modes[r], self.explanations[r], self.contracts[r]) for r in rows]


def scores(fleet: data.Fleet, model: FailureModel, active: np.ndarray | None = None) -> Scores:
    """Features, model and explanations for every device of ``fleet`` with a step to score (and,
    with the mask ``active``, only those it marks)."""
    grid = fleet.grid
    step = grid.last_steps()
    dev = np.flatnonzero((step >= 0) if active is None else (step >= 0) & active)
    if not len(dev):  # e.g. a batch of devices that all went silent: estimators refuse no rows
        none = np.empty(0, dtype=object)
        return Scores(grid.device_ids[dev], np.empty(0), np.empty(0), none, none, [])
    with threadpool_limits(1):  # the scorer overlaps batches on its own threads
        x = F.compute(grid, model.spec, dev, step[dev])
        p, rul, modes = model.score(x)
    col = {n: i for i, n in enumerate(F.feature_names(model.spec))}
    explanations = np.full(len(dev), "", dtype=object)
    for row in np.flatnonzero(p >= model.threshold):  # only alerts are explained
        i = dev[row]
        slots = grid.slot_names[grid.group[i]] if grid.slot_names else []
        explanations[row] = explain(x[row], col, slots, model.spec)
    return Scores(grid.device_ids[dev], p, rul, modes, explanations, [fleet.contracts[i] for i in dev])


def score_devices(conn: psycopg.Connection, model: FailureModel, now: datetime,
                  device_ids: list[int], window: data.Window | None = None) -> list[Prediction]:
    """Predictions for ``device_ids`` from the hours before ``now``; with ``window`` (kept across
    passes), only the hours since its previous pass are read."""
    if not device_ids:
        return []
    window = window or window_for(model)
    return scores(window.fleet(conn, now, device_ids), model).predictions()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def store(conn: psycopg.Connection, batch: Scores, version: int, now: datetime,
          job_ids: dict[int, int]) -> None:
    """Every prediction of ``batch`` into ``predictions``: one COPY of text built in one go."""
    stamp, null = now.isoformat(), "\\N"
    p = np.clip(batch.p_fail, 0.0, 1.0).tolist()
    rul = np.maximum(batch.rul_h, 0.0).tolist()
    ids = batch.device_ids.tolist()
    rows = [f"{d}\t{stamp}\t{version}\t{pf!r}\t{r!r}\t{m.translate(_COPY_ESCAPES)}\t"
            f"{e.translate(_COPY_ESCAPES)}\t{null if j is None else j}\n"
            for d, pf, r, m, e, j in zip(ids, p, rul, batch.modes, batch.explanations,
                                         [job_ids.get(d) for d in ids], strict=True)]
    with conn.cursor() as cur, cur.copy("COPY predictions (device_id, scored_at, model_version, p_fail, rul_h, "
                                        "failure_mode, explanation, job_id) FROM STDIN") as copy:
        copy.write("".join(rows))


def open_jobs(conn: psycopg.Connection, predictions: list[Prediction], threshold: float,
              now: datetime) -> dict[int, int]:
    """Open or escalate proactive jobs for predictions at or above ``threshold``; device -> job id."""
    risky = [p for p in predictions if p.p_fail >= threshold]
    if not risky:
        return {}
    open_rows = conn.execute(
        "SELECT device_id, coalesce(failure_mode, ''), id, priority FROM jobs "
        "WHERE device_id = ANY(%s) AND status = ANY(%s)",
        ([p.device_id for p in risky], list(jobs.OPEN)),
    ).fetchall()
    existing = {(d, m): (j, pr) for d, m, j, pr in open_rows}
    out: dict[int, int] = {}
    for pr in risky:
        priority = priority_for(pr.p_fail, threshold, pr.contract, pr.rul_h)
        found = existing.get((pr.device_id, pr.failure_mode))
        if found is not None and found[1] <= priority:
            out[pr.device_id] = found[0]
            continue
        due = now + timedelta(hours=max(pr.rul_h - SAFETY_MARGIN_H, MIN_WINDOW_H))
        request = jobs.JobRequest(
            source=JobSource.PREDICTION, type=JobType.REPAIR, device_id=pr.device_id,
            failure_mode=pr.failure_mode or None, priority=int(priority),
            windows=(TimeWindow(now, due),),
            explanation=f"Predicted {pr.failure_mode or 'failure'} within {pr.rul_h:.0f} h "
                        f"(risk {pr.p_fail:.0%}): {pr.explanation}",
            evidence={"p_fail": round(pr.p_fail, 4), "rul_h": round(pr.rul_h, 1),
                      "failure_mode": pr.failure_mode},
        )
        job = jobs.create_job(conn, request, actor=ACTOR, now=now)
        out[pr.device_id] = job.id
    return out


@dataclass(frozen=True, slots=True)
class Pass:
    devices: int
    alerts: int
    jobs: int
    seconds: float


def score_pass(conn: psycopg.Connection, model: FailureModel, version: int, now: datetime,
               batch: int = BATCH, open_proactive: bool = True,
               windows: dict[tuple, data.Window] | None = None, compute_threads: int = COMPUTE_THREADS) -> Pass:
    """Score every device that reported within the last two days; one transaction per batch.
    ``windows`` (kept by the caller across passes) holds each batch's rolling window.

    Batches are cut from every device, and each batch's read tells which of them reported: a
    separate query for the active devices (one index probe per device) would hold up the first
    batch.

    All database work (reading a batch, opening its jobs, storing its predictions) runs in order
    on one thread, the features and models of up to ``compute_threads`` batches at a time on
    others: later batches are read and earlier ones stored while batches are scored (numpy,
    scikit-learn and the socket wait release the GIL). The connection is used by one thread at a
    time; predictions are stored in batch order."""
    if batch < 1 or compute_threads < 1:
        raise ValueError(f"batch ({batch}) and compute_threads ({compute_threads}) must be at least 1")
    started = time.perf_counter()
    ids = data.device_ids(conn)
    since = now - timedelta(hours=ACTIVE_WITHIN_H)
    windows = {} if windows is None else windows
    starts = range(0, len(ids), batch)

    def read(a: int) -> tuple[data.Fleet, np.ndarray]:
        window = windows.setdefault((a, model.spec.history, model.spec.n_slots), window_for(model))
        fleet = window.fleet(conn, now, ids[a:a + batch])
        return fleet, window.reported_since(since)

    def write(scored: Scores) -> tuple[int, int, int]:
        risky = np.flatnonzero(scored.p_fail >= model.threshold)
        job_ids = open_jobs(conn, scored.predictions(risky), model.threshold, now) if open_proactive else {}
        store(conn, scored, version, now, job_ids)
        conn.commit()
        return len(scored.device_ids), len(risky), len(job_ids)

    # One BLAS/OpenMP thread for the whole pass: the BLAS limit is process-wide, so each batch's
    # own limit in ``scores`` (needed there: OpenMP's is per thread) restores 1 when it ends.
    with (threadpool_limits(1), ThreadPoolExecutor(1, thread_name_prefix="scorer-db") as db,
          ThreadPoolExecutor(compute_threads, thread_name_prefix="scorer-cpu") as cpu):
        reads: deque = deque(db.submit(read, a) for a in starts[:compute_threads + 1])
        queued = len(reads)
        computing: deque = deque()
        writes = []
        while reads:
            fleet, active = reads.popleft().result()
            computing.append(cpu.submit(scores, fleet, model, active))
            if queued < len(starts):  # read ahead as far as the compute threads can take
                reads.append(db.submit(read, starts[queued]))
                queued += 1
            if len(computing) >= compute_threads:
                writes.append(db.submit(write, computing.popleft().result()))
        writes += [db.submit(write, c.result()) for c in computing]  # the last ones, in order
        done = [w.result() for w in writes]
    result = Pass(*(sum(d[k] for d in done) for k in range(3)), time.perf_counter() - started)
    log.info("scored %d devices in %.2f s: %d above threshold, %d proactive jobs",
             result.devices, result.seconds, result.alerts, result.jobs)
    return result


def rate_mismatch(trained: float | None, live: float | None, tolerance: float = RATE_TOLERANCE) -> float | None:
    """How many times (>= 1, either way) the live data rate differs from the training history's
    when that is more than ``tolerance``; None within it, or when either rate is unknown."""
    if not trained or not live:
        return None
    factor = max(live / trained, trained / live)
    return factor if factor > tolerance else None


def check_data_rate(conn: psycopg.Connection, model: FailureModel, now: datetime) -> float | None:
    """The fleet's data rate (median readings per device-hour) over the last ``RATE_WINDOW_H``
    complete hours before ``now``; logs a warning when it differs from the rate the model was
    trained on by more than ``RATE_TOLERANCE`` times (retrain on recent history)."""
    end = now.replace(minute=0, second=0, microsecond=0)
    live = data.readings_per_hour(conn, end - timedelta(hours=RATE_WINDOW_H), end)
    factor = rate_mismatch(model.readings_per_hour, live)
    if factor is not None:
        log.warning("the fleet reports %g readings per device-hour, the model was trained on %g (%.1f times "
                    "%s): its hourly means carry another amount of reading noise than the model learned from; "
                    "retrain on recent history", live, model.readings_per_hour, factor,
                    "more" if live > model.readings_per_hour else "fewer")
    return live


def summary(p: Pass) -> str:
    return json.dumps({"devices": p.devices, "alerts": p.alerts, "jobs": p.jobs, "seconds": round(p.seconds, 3)})
