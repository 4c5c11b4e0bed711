"""Backfilled maintenance visits as completed jobs, through the service layer.

Each repair visit becomes a reactive job (source fault_event) that runs the whole lifecycle at
the visit's times: scheduled to a technician with the skill, dispatched, en route, on site, then
completed with the finding and parts used, or unresolved (part missing) with the follow-up the
service opens, which the next visit completes. Preventive visits become preventive jobs. The
parts a historical repair used are received into the van first, so history leaves stock as it was.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import psycopg

from fieldops.db.repo import catalog
from fieldops.domain import JobSource, JobStatus, JobType, PartQuantity, Priority
from fieldops.service import jobs, parts
from simulators import store
from simulators.backfill import Visit
from simulators.models import MODEL_SPECS

log = logging.getLogger(__name__)

ACTOR = "simulator-backfill"
PM_SKILL = {"chiller": "refrigeration", "air_compressor": "mechanical", "elevator_drive": "elevator"}


class JobHistory:
    """A :data:`simulators.backfill.RepairRecorder` that writes completed jobs."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.technicians = catalog.technicians(conn)
        if not self.technicians:
            raise ValueError("technicians: backfilling jobs needs at least one technician")
        self._turn = 0

    def _technician(self, skills: frozenset[str]) -> int:
        able = [t for t in self.technicians if skills <= t.skills] or self.technicians
        self._turn += 1
        return able[self._turn % len(able)].id

    def __call__(self, conn: psycopg.Connection, visits: list[Visit]) -> int:
        open_for: dict[datetime, int] = {}  # failure time -> the job that answers it
        truths = []
        for v in sorted(visits, key=lambda v: v.end):
            job_id = self._visit(conn, v, open_for)
            truths.append(store.RepairTruth(v.device_id, v.end, v.finding, v.parts, v.preventive,
                                            v.restored_mode, "backfill", job_id))
        store.record_repairs(conn, truths)
        return len(visits)

    def _visit(self, conn: psycopg.Connection, v: Visit, open_for: dict[datetime, int]) -> int:
        if v.preventive:
            created = v.start - timedelta(days=3)
            job = jobs.create_job(conn, jobs.JobRequest(
                source=JobSource.PREVENTIVE_SCHEDULE, type=JobType.PREVENTIVE, device_id=v.device_id,
                priority=Priority.LOW, required_skills=frozenset({PM_SKILL[v.model_code]}),
                estimated_duration_s=3600, explanation="preventive maintenance (history)",
            ), actor=ACTOR, now=created)
        elif v.failure_ts in open_for:
            job = jobs.get_job(conn, open_for.pop(v.failure_ts))
            created = job.created_at
        else:
            created = v.failure_ts + timedelta(minutes=2)
            spec = MODEL_SPECS[v.model_code]
            code = spec.modes[spec.mode_index(v.finding)].fault_code
            job = jobs.create_job(conn, jobs.JobRequest(
                source=JobSource.FAULT_EVENT, type=JobType.REPAIR, device_id=v.device_id,
                failure_mode=v.finding, priority=Priority.HIGH, explanation=f"fault {code} (history)",
            ), actor=ACTOR, now=created)
        tech = self._technician(job.required_skills)
        van = parts.van_of(conn, tech)
        used = tuple(PartQuantity(sku, q) for sku, q in sorted(v.parts.items()))
        if van is None:
            used = ()  # nowhere to take them from: the history keeps finding and notes only
        for p in used:
            parts.receive(conn, van, p.sku, p.quantity, actor=ACTOR, now=created)
        lead = v.start - created
        jobs.assign(conn, job.id, tech, v.start, actor=ACTOR, now=created + lead * 0.25)
        for status, share in ((JobStatus.DISPATCHED, 0.5), (JobStatus.EN_ROUTE, 0.8)):
            jobs.transition(conn, job.id, status, expected_version=None, actor=ACTOR, now=created + lead * share)
        jobs.transition(conn, job.id, JobStatus.ON_SITE, expected_version=None, actor=ACTOR, now=v.start)
        if v.preventive:
            done = jobs.transition(conn, job.id, JobStatus.COMPLETED, expected_version=None, actor=ACTOR,
                                   now=v.end, finding="other", note=v.note)
        elif v.restored_mode is None and not used:
            done = jobs.transition(conn, job.id, JobStatus.UNRESOLVED, expected_version=None, actor=ACTOR,
                                   now=v.end, note=v.note)
            open_for[v.failure_ts] = done.follow_up_job_id
        else:
            done = jobs.transition(conn, job.id, JobStatus.COMPLETED, expected_version=None, actor=ACTOR,
                                   now=v.end, finding="fault_confirmed", finding_mode=v.finding,
                                   parts_used=used, note=v.note)
        return done.id
