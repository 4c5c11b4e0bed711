"""Simulated technicians: sign in, fetch today's route, drive it, report every status change.

They talk to fieldops only through :class:`JobsClient`: :class:`simulators.web_client.WebJobsClient`
signs in to the web API like a phone (the default), :class:`InProcessJobsClient` calls the service
layer directly. Driving follows the straight line between stops at road speed (a detour factor on
the geodesic distance, slower in town), posting positions every few real seconds. A job whose parts
the plan reserved at a warehouse is driven to via that warehouse, where the technician collects
them into the van. On site a technician finds what is really wrong with the device (the
simulator's hidden state), fits the parts from the van, or reports the job unresolved when a part
is missing (the service opens the follow-up). Service times are drawn around the job's estimate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
from geopy.distance import geodesic

from fieldops import events
from fieldops.clock import Clock
from fieldops.db.pool import connect
from fieldops.db.repo import catalog
from fieldops.domain import GeoPoint, JobStatus, PartQuantity, Technician
from fieldops.service import jobs, parts
from fieldops.service.errors import ConflictError, ServiceError
from simulators import store

log = logging.getLogger(__name__)

DETOUR = 1.3  # road distance over geodesic distance
TOWN_SPEED_M_S = 25 / 3.6  # short trips
ROAD_SPEED_M_S = 50 / 3.6  # longer trips, partly on the Autobahn
WEAR_VISIBLE = 0.3  # health above which a technician finds the wear on inspection
FOUND_WORN = "fault_confirmed"
PICKUP_S = 600.0  # time at a warehouse collecting a job's parts (as dispatch plans it)
SIGN_IN_RETRY_S = 4 * 3600.0  # simulated seconds before a refused technician tries again


@dataclass(frozen=True, slots=True)
class Stop:
    job_id: int
    version: int
    status: JobStatus
    device_id: int | None
    location: GeoPoint
    planned_arrival: datetime | None
    estimated_duration_s: int
    failure_mode: str | None
    required_parts: tuple[PartQuantity, ...]
    preventive: bool
    pickups: tuple[parts.Pickup, ...] = ()  # parts reserved at warehouses: collected on the way


class SignInError(RuntimeError):
    """The technician's account was refused; they stay off until the next shift check."""


class JobsClient(Protocol):
    """What a technician's phone can do (the web API's technician endpoints)."""

    def sign_in(self, technician_id: int) -> Technician: ...
    def route(self, technician_id: int, day: date) -> list[Stop]: ...
    def post_position(self, technician_id: int, at: datetime, where: GeoPoint) -> None: ...
    def change_status(self, technician_id: int, stop: Stop, to: JobStatus, at: datetime, where: GeoPoint,
                      *, finding: str | None = None, finding_mode: str | None = None,
                      parts_used: tuple[PartQuantity, ...] = (), note: str | None = None) -> Stop: ...
    def van_stock(self, technician_id: int) -> dict[str, int]: ...
    def collect_parts(self, technician_id: int, stop: Stop, pickup: parts.Pickup,
                      at: datetime) -> list[PartQuantity]: ...
    def inspect(self, device_id: int) -> tuple[str | None, dict[str, float]]: ...
    def mode_parts(self, device_id: int, mode: str) -> tuple[PartQuantity, ...]: ...


class SimWorld:
    """What a technician learns by being there, not through the API: the device's real state,
    what is in the van, and which parts a failure mode needs (the simulator's own records)."""

    def __init__(self, conninfo: str) -> None:
        self.conn = connect(conninfo)
        self._models = catalog.device_models(self.conn)
        self._device_models = {d.id: d.model_code for d in catalog.devices(self.conn)}
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def technicians(self) -> list[Technician]:
        found = catalog.technicians(self.conn)
        self.conn.commit()
        return found

    def van_stock(self, technician_id: int) -> dict[str, int]:
        van = parts.van_of(self.conn, technician_id)
        stock = {lvl.sku: lvl.quantity for lvl in parts.levels(self.conn, van)} if van is not None else {}
        self.conn.commit()
        return stock

    def inspect(self, device_id: int) -> tuple[str | None, dict[str, float]]:
        state = store.device_state(self.conn, device_id)
        self.conn.commit()
        return state

    def mode_parts(self, device_id: int, mode: str) -> tuple[PartQuantity, ...]:
        model = self._models.get(self._device_models.get(device_id, ""))
        fm = model.failure_mode(mode) if model else None
        return fm.parts if fm else ()


def route_order(stop: Stop) -> tuple:
    """Work already started first, then by planned arrival, then by job id."""
    far = datetime.max.replace(tzinfo=UTC)
    return (stop.status not in (JobStatus.ON_SITE, JobStatus.EN_ROUTE), stop.planned_arrival or far, stop.job_id)


ROUTE_STATUSES = (JobStatus.SCHEDULED, JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE)


class InProcessJobsClient(SimWorld):
    """The client over the service layer in this process, one transaction per call."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(conninfo)
        self._sites: dict[int, GeoPoint] = {}

    def sign_in(self, technician_id: int) -> Technician:
        found = next((t for t in catalog.technicians(self.conn) if t.id == technician_id), None)
        self.conn.commit()
        if found is None:
            raise LookupError(f"technician_id: {technician_id} is not an active technician")
        return found

    def _site(self, site_id: int) -> GeoPoint:
        if site_id not in self._sites:
            self._sites[site_id] = catalog.get_site(self.conn, site_id).location
        return self._sites[site_id]

    def route(self, technician_id: int, day: date) -> list[Stop]:
        mine = [j for j in jobs.open_jobs(self.conn, technician_id=technician_id)
                if j.status in ROUTE_STATUSES and (j.planned_arrival is None or j.planned_arrival.date() <= day)]
        stops = [Stop(j.id, j.version, j.status, j.device_id, self._site(j.site_id), j.planned_arrival,
                      j.estimated_duration_s, j.failure_mode, j.required_parts, j.type == "preventive",
                      tuple(parts.pickups_for_job(self.conn, j.id)))
                 for j in mine]
        self.conn.commit()
        return sorted(stops, key=route_order)

    def post_position(self, technician_id: int, at: datetime, where: GeoPoint) -> None:
        store.record_position(self.conn, technician_id, where.lat, where.lon, at)
        events.publish(self.conn, events.TECHNICIAN_POSITION,
                       {"technician_id": technician_id, "lat": where.lat, "lon": where.lon, "at": at},
                       technician_id=technician_id)
        self.conn.commit()

    def collect_parts(self, technician_id: int, stop: Stop, pickup: parts.Pickup,
                      at: datetime) -> list[PartQuantity]:
        try:
            moved = parts.collect_for_job(self.conn, stop.job_id, pickup.location_id, technician_id,
                                          actor=f"technician:{technician_id}", now=at)
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return moved

    def change_status(self, technician_id: int, stop: Stop, to: JobStatus, at: datetime, where: GeoPoint,
                      *, finding: str | None = None, finding_mode: str | None = None,
                      parts_used: tuple[PartQuantity, ...] = (), note: str | None = None) -> Stop:
        version = stop.version
        for attempt in range(2):
            try:
                job = jobs.transition(self.conn, stop.job_id, to, expected_version=version,
                                      actor=f"technician:{technician_id}", now=at, lat=where.lat, lon=where.lon,
                                      finding=finding, finding_mode=finding_mode, parts_used=parts_used,
                                      note=note)
                self.conn.commit()
                break
            except ConflictError:
                # Re-planned meanwhile (a new version): like the phone, reload and retry if still ours.
                self.conn.rollback()
                current = jobs.get_job(self.conn, stop.job_id)
                self.conn.commit()
                if attempt or current.status != stop.status or current.technician_id != technician_id:
                    raise
                version = current.version
            except Exception:
                self.conn.rollback()
                raise
        return Stop(job.id, job.version, job.status, stop.device_id, stop.location, job.planned_arrival,
                    job.estimated_duration_s, job.failure_mode, stop.required_parts, stop.preventive,
                    stop.pickups)

def travel_s(a: GeoPoint, b: GeoPoint) -> float:
    """Road travel time between two points: detoured distance at town or road speed."""
    metres = geodesic((a.lat, a.lon), (b.lat, b.lon)).meters * DETOUR
    return metres / (TOWN_SPEED_M_S if metres < 8000 else ROAD_SPEED_M_S)


@dataclass
class _Tech:
    info: Technician
    tz: ZoneInfo
    where: GeoPoint
    state: str = "off"  # off, idle, driving, on_site, break, home
    next_at: float = 0.0
    stop: Stop | None = None
    leg: tuple[GeoPoint, GeoPoint, float, float] | None = None  # from, to, depart_ts, arrive_ts
    break_taken: date | None = None
    posted_at: float = 0.0
    done: list[int] = field(default_factory=list)
    pickup: parts.Pickup | None = None  # where the current leg ends: a warehouse, then the job


class TechnicianSim:
    """All technicians, stepped on the shared clock from one thread."""

    def __init__(self, client: JobsClient, technicians: list[Technician], clock: Clock, *, seed: int = 7,
                 position_every_s: float = 3.0, idle_poll_s: float = 300.0,
                 offline_retry_s: float = 60.0) -> None:
        self.client, self.clock = client, clock
        self.offline_retry_s = offline_retry_s
        self.rng = np.random.default_rng(seed)
        self.position_every_s = position_every_s
        self.idle_poll_s = idle_poll_s
        self.techs = [_Tech(t, ZoneInfo("Europe/Berlin"), t.home) for t in technicians]

    def _local(self, tech: _Tech, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, tech.tz)

    def _on_shift(self, tech: _Tech, ts: float) -> bool:
        local = self._local(tech, ts)
        return local.weekday() < 5 and tech.info.shift.start <= local.time() < tech.info.shift.end

    def step(self) -> None:
        now = self.clock.now().timestamp()
        for tech in self.techs:
            guard = 0
            while tech.next_at <= now and guard < 20:
                guard += 1
                try:
                    self._act(tech, tech.next_at if tech.next_at > 0 else now, now)
                except ServiceError as exc:  # the job changed under us: drop it, fetch the route again
                    log.warning("technician %s: %s; back to the route", tech.info.name, exc)
                    if tech.stop is not None:
                        tech.done.append(tech.stop.job_id)
                    tech.stop, tech.pickup, tech.state, tech.next_at = None, None, "idle", now + 60.0
                except SignInError as exc:
                    log.error("technician %s cannot sign in: %s", tech.info.name, exc)
                    tech.state, tech.next_at = "off", now + SIGN_IN_RETRY_S
                except OSError as exc:  # no network: keep the state, try the same step again later
                    log.warning("technician %s: %s; retrying later", tech.info.name, exc)
                    tech.next_at = now + self.offline_retry_s
            if tech.state == "driving" and time.monotonic() - tech.posted_at >= self.position_every_s:
                tech.posted_at = time.monotonic()
                try:
                    self.client.post_position(tech.info.id, self.clock.now(), self._position(tech, now))
                except OSError as exc:
                    log.warning("technician %s: position not sent: %s", tech.info.name, exc)

    def run(self, duration_s: float | None = None) -> None:
        end = None if duration_s is None else time.monotonic() + duration_s
        while end is None or time.monotonic() < end:
            self.step()
            time.sleep(0.1)

    def _position(self, tech: _Tech, ts: float) -> GeoPoint:
        a, b, t0, t1 = tech.leg
        f = min(1.0, max(0.0, (ts - t0) / max(t1 - t0, 1.0)))
        return GeoPoint(a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f)

    def _at(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.clock.now().tzinfo)

    def _act(self, tech: _Tech, ts: float, now: float) -> None:
        tid = tech.info.id
        if tech.state in ("off", "home"):
            if self._on_shift(tech, now):
                self.client.sign_in(tid)
                tech.state, tech.next_at = "idle", now
                log.info("technician %s signed in", tech.info.name)
            else:
                tech.next_at = now + self.idle_poll_s
            return
        if tech.state == "idle":
            self._next_job(tech, now)
        elif tech.state == "driving":
            tech.where = tech.leg[1]
            self.client.post_position(tid, self._at(ts), tech.where)
            if tech.stop is None:  # drove home
                tech.state, tech.next_at = "home", ts + self.idle_poll_s
                return
            if tech.pickup is not None:  # at the warehouse: collect the job's parts, drive on
                pickup, tech.pickup = tech.pickup, None
                moved = self.client.collect_parts(tid, tech.stop, pickup, self._at(ts))
                log.info("technician %s: collected %s at %s for job %d", tech.info.name,
                         ", ".join(f"{p.quantity} x {p.sku}" for p in moved) or "nothing", pickup.name,
                         tech.stop.job_id)
                self._drive(tech, tech.stop, tech.stop.location, ts + PICKUP_S)
                return
            tech.stop = self.client.change_status(tid, tech.stop, JobStatus.ON_SITE, self._at(ts), tech.where)
            service = tech.stop.estimated_duration_s * float(self.rng.lognormal(0.0, 0.25))
            tech.state, tech.next_at = "on_site", ts + service
        elif tech.state == "on_site":
            self._finish(tech, ts)
            local = self._local(tech, ts)
            shift = tech.info.shift
            if (shift.break_start and tech.break_taken != local.date()
                    and shift.break_start <= local.time() < shift.break_end):
                tech.break_taken = local.date()
                tech.state, tech.next_at = "break", ts + shift.break_duration_s
            else:
                tech.state, tech.next_at = "idle", ts
        elif tech.state == "break":
            tech.state, tech.next_at = "idle", ts

    def _next_job(self, tech: _Tech, now: float) -> None:
        tid = tech.info.id
        if not self._on_shift(tech, now):
            self._drive(tech, None, tech.info.home, now)
            return
        route = self.client.route(tid, self._local(tech, now).date())
        stop = next((s for s in route if s.job_id not in tech.done), None)
        if stop is None:
            tech.next_at = now + self.idle_poll_s
            return
        if stop.status is JobStatus.ON_SITE:  # resumed after a restart
            tech.stop, tech.state, tech.next_at = stop, "on_site", now
            return
        if stop.status is JobStatus.SCHEDULED:
            stop = self.client.change_status(tid, stop, JobStatus.DISPATCHED, self._at(now), tech.where,
                                             note="accepted on the phone")
        if stop.status is JobStatus.DISPATCHED:
            stop = self.client.change_status(tid, stop, JobStatus.EN_ROUTE, self._at(now), tech.where)
        if stop.pickups:  # the plan sends the parts from a warehouse: via there
            tech.pickup = stop.pickups[0]
            self._drive(tech, stop, GeoPoint(tech.pickup.lat, tech.pickup.lon), now)
            return
        self._drive(tech, stop, stop.location, now)

    def _drive(self, tech: _Tech, stop: Stop | None, to: GeoPoint, now: float) -> None:
        arrive = now + travel_s(tech.where, to)
        tech.stop, tech.leg = stop, (tech.where, to, now, arrive)
        tech.state, tech.next_at, tech.posted_at = "driving", arrive, 0.0

    def _finish(self, tech: _Tech, ts: float) -> None:
        tid, stop = tech.info.id, tech.stop
        at = self._at(ts)
        tech.done.append(stop.job_id)
        failed, health = self.client.inspect(stop.device_id) if stop.device_id else (None, {})
        worn = max(health, key=health.get) if health else None
        found = failed or (worn if worn and health[worn] >= WEAR_VISIBLE else None)
        if found is None:
            finding = "other" if stop.preventive else "no_fault_found"
            tech.stop = self.client.change_status(tid, stop, JobStatus.COMPLETED, at, tech.where, finding=finding,
                                                  note="preventive maintenance done" if stop.preventive else None)
            return
        needed = self.client.mode_parts(stop.device_id, found)
        van = self.client.van_stock(tid)
        missing = [p.sku for p in needed if van.get(p.sku, 0) < p.quantity]
        if missing:
            self.client.change_status(tid, stop, JobStatus.UNRESOLVED, at, tech.where,
                                      note=f"found {found}; part missing: {', '.join(missing)}")
            log.info("technician %s: job %d unresolved, missing %s", tech.info.name, stop.job_id, missing)
            return
        self.client.change_status(tid, stop, JobStatus.COMPLETED, at, tech.where, finding=FOUND_WORN,
                                  finding_mode=found, parts_used=needed, note=f"repaired {found}")
        log.info("technician %s: job %d completed (%s)", tech.info.name, stop.job_id, found)


def run_technicians(client: JobsClient, technicians: list[Technician], clock: Clock, *,
                    duration_s: float | None, seed: int, position_every_s: float, today: datetime) -> None:
    sim = TechnicianSim(client, technicians, clock, seed=seed, position_every_s=position_every_s)
    log.info("technicians: %d simulated from %s", len(sim.techs), today.isoformat())
    sim.run(duration_s)

