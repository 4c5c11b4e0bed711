"""Service KPIs, computed in SQL from jobs, their audit trail (``job_events``) and feedback.

Population: jobs finished (completed or unresolved) in ``[start, end)``, grouped by day (UTC, of
completion), region (of the site), technician or device model. Definitions:

- response_compliance: share of finished jobs with a response deadline that arrived by it.
- resolution_compliance: share of finished jobs with a resolution deadline that were completed
  (not unresolved) by it.
- first_time_fix_rate: share of completed device jobs after which no further non-preventive job
  was opened for the same device within 30 days of completion.
- mttr_s: mean time from opening to completion of completed jobs.
- mean_response_s: mean time from opening to arrival on site.
- proactive_precision: share of finished prediction jobs whose finding was fault_confirmed.
- satisfaction: mean customer rating (1-5) of the finished jobs that were rated.
- utilisation / travel_share: on-site time / travel (en_route) time over shift time. Intervals
  come from ``job_events`` (from entering on_site or en_route to the job's next status change),
  start in ``[start, end)``; shift time is the technician's shift length less the break
  (break_duration_s, else the break window) for each UTC day with such an interval. Not defined per device model (None there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from fieldops.service.errors import ServiceError

log = logging.getLogger(__name__)

FTF_WINDOW_DAYS = 30

_JOB_KEYS = {
    "all": "'all'",
    "day": "to_char(j.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "region": "s.region",
    "technician": "j.technician_id::text",
    "model": "m.code",
}
_WORK_KEYS = {
    "all": "'all'",
    "day": "to_char(w.day, 'YYYY-MM-DD')",
    "region": "t.region",
    "technician": "w.technician_id::text",
}
GROUPINGS = tuple(_JOB_KEYS)


@dataclass(frozen=True, slots=True)
class KpiRow:
    key: str | None
    jobs: int = 0
    response_compliance: float | None = None
    resolution_compliance: float | None = None
    first_time_fix_rate: float | None = None
    mttr_s: float | None = None
    mean_response_s: float | None = None
    proactive_precision: float | None = None
    satisfaction: float | None = None
    utilisation: float | None = None
    travel_share: float | None = None


_JOB_SQL = """
WITH finished AS (
    SELECT j.*, {key} AS key FROM jobs j
    JOIN sites s ON s.id = j.site_id
    LEFT JOIN devices d ON d.id = j.device_id
    LEFT JOIN device_models m ON m.id = d.model_id
    WHERE j.status IN ('completed', 'unresolved') AND j.completed_at >= %(start)s AND j.completed_at < %(end)s
)
SELECT f.key, count(*),
    avg((f.arrived_at <= f.response_due)::int) FILTER (WHERE f.response_due IS NOT NULL),
    avg((f.status = 'completed' AND f.completed_at <= f.resolution_due)::int)
        FILTER (WHERE f.resolution_due IS NOT NULL),
    avg((NOT EXISTS (
        SELECT 1 FROM jobs n WHERE n.device_id = f.device_id AND n.id <> f.id
        AND n.source <> 'preventive_schedule'
        AND n.created_at > f.completed_at AND n.created_at <= f.completed_at + make_interval(days => %(ftf)s)
    ))::int) FILTER (WHERE f.status = 'completed' AND f.device_id IS NOT NULL),
    avg(extract(epoch FROM f.completed_at - f.created_at)) FILTER (WHERE f.status = 'completed'),
    avg(extract(epoch FROM f.arrived_at - f.created_at)),
    avg((f.finding = 'fault_confirmed')::int) FILTER (WHERE f.source = 'prediction'),
    avg(fb.rating)
FROM finished f LEFT JOIN feedback fb ON fb.job_id = f.id
GROUP BY f.key ORDER BY f.key NULLS LAST
"""

_WORK_SQL = """
WITH changes AS (
    SELECT e.job_id, e.to_status, e.at, e.technician_id,
           lead(e.at) OVER (PARTITION BY e.job_id ORDER BY e.at, e.id) AS next_at
    FROM job_events e WHERE e.from_status IS DISTINCT FROM e.to_status
), intervals AS (
    SELECT technician_id, to_status, (at AT TIME ZONE 'UTC')::date AS day,
           extract(epoch FROM next_at - at) AS seconds
    FROM changes
    WHERE to_status IN ('on_site', 'en_route') AND next_at IS NOT NULL AND technician_id IS NOT NULL
      AND at >= %(start)s AND at < %(end)s
), work AS (
    SELECT technician_id, day,
           sum(seconds) FILTER (WHERE to_status = 'on_site') AS on_site_s,
           sum(seconds) FILTER (WHERE to_status = 'en_route') AS travel_s
    FROM intervals GROUP BY technician_id, day
)
SELECT {key} AS key,
    sum(coalesce(w.on_site_s, 0)) / nullif(sum(shift.seconds), 0),
    sum(coalesce(w.travel_s, 0)) / nullif(sum(shift.seconds), 0)
FROM work w JOIN technicians t ON t.id = w.technician_id
CROSS JOIN LATERAL (SELECT extract(epoch FROM t.shift_end - t.shift_start) - coalesce(
    nullif(t.break_duration_s, 0), extract(epoch FROM t.break_end - t.break_start), 0) AS seconds) AS shift
GROUP BY 1 ORDER BY 1
"""


def kpis(conn: psycopg.Connection, start: datetime, end: datetime, by: str = "all") -> list[KpiRow]:
    """KPI rows for ``[start, end)`` grouped ``by`` one of all, day, region, technician, model."""
    if by not in _JOB_KEYS:
        raise ServiceError("by", f"must be one of {', '.join(GROUPINGS)}")
    if end <= start:
        raise ServiceError("end", "must be after start")
    params = {"start": start, "end": end, "ftf": FTF_WINDOW_DAYS}
    rows: dict[str | None, dict] = {}
    for r in conn.execute(sql.SQL(_JOB_SQL).format(key=sql.SQL(_JOB_KEYS[by])), params):
        rows[r[0]] = {
            "jobs": r[1], "response_compliance": _f(r[2]), "resolution_compliance": _f(r[3]),
            "first_time_fix_rate": _f(r[4]), "mttr_s": _f(r[5]), "mean_response_s": _f(r[6]),
            "proactive_precision": _f(r[7]), "satisfaction": _f(r[8]),
        }
    if by in _WORK_KEYS:
        for key, utilisation, travel in conn.execute(sql.SQL(_WORK_SQL).format(key=sql.SQL(_WORK_KEYS[by])), params):
            rows.setdefault(key, {})
            rows[key].update(utilisation=_f(utilisation), travel_share=_f(travel))
    return [KpiRow(key, **values) for key, values in sorted(rows.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]


def _f(value: object) -> float | None:
    return None if value is None else float(value)
