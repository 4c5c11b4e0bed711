"""Spare parts: stock per location, reservations for jobs, consumption, transfers, reorder suggestions.

Available = quantity - reserved. Every change is one guarded ``UPDATE stock ... WHERE quantity -
reserved >= n`` (the row lock serialises concurrent callers, the guard is re-checked after the
wait), backed by the CHECK constraints on ``stock``: quantities never go negative and a
reservation never exceeds what is on hand. ``stock_reservations`` itemises ``stock.reserved``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from fieldops.domain import PartQuantity
from fieldops.service.errors import NotFoundError, ServiceError

log = logging.getLogger(__name__)


class InsufficientStock(ServiceError):
    """Not enough unreserved stock at a location."""


@dataclass(frozen=True, slots=True)
class StockLevel:
    location_id: int
    part_id: int
    sku: str
    quantity: int
    reserved: int
    min_quantity: int

    @property
    def available(self) -> int:
        return self.quantity - self.reserved


@dataclass(frozen=True, slots=True)
class ReorderSuggestion:
    location_id: int
    location_name: str
    sku: str
    quantity: int
    min_quantity: int
    suggested: int  # brings the location back to twice its minimum


def _positive(quantity: int, field: str = "quantity") -> None:
    if not isinstance(quantity, int) or quantity <= 0:
        raise ServiceError(field, f"must be a positive integer, got {quantity!r}")


def part_id(conn: psycopg.Connection, sku: str) -> int:
    row = conn.execute("SELECT id FROM parts WHERE sku = %s", (sku,)).fetchone()
    if row is None:
        raise NotFoundError("sku", f"unknown part {sku}")
    return int(row[0])


def _check_location(conn: psycopg.Connection, location_id: int, field: str = "location_id") -> None:
    if conn.execute("SELECT 1 FROM stock_locations WHERE id = %s", (location_id,)).fetchone() is None:
        raise NotFoundError(field, f"stock location {location_id} does not exist")


def van_of(conn: psycopg.Connection, technician_id: int) -> int | None:
    row = conn.execute("SELECT id FROM stock_locations WHERE technician_id = %s", (technician_id,)).fetchone()
    return None if row is None else int(row[0])


def levels(conn: psycopg.Connection, location_id: int | None = None) -> list[StockLevel]:
    rows = conn.execute(
        "SELECT s.location_id, s.part_id, p.sku, s.quantity, s.reserved, s.min_quantity FROM stock s "
        "JOIN parts p ON p.id = s.part_id WHERE %(loc)s::int IS NULL OR s.location_id = %(loc)s "
        "ORDER BY s.location_id, p.sku",
        {"loc": location_id},
    ).fetchall()
    return [StockLevel(*r) for r in rows]


def level(conn: psycopg.Connection, location_id: int, sku: str) -> StockLevel:
    found = [s for s in levels(conn, location_id) if s.sku == sku]
    if not found:
        return StockLevel(location_id, part_id(conn, sku), sku, 0, 0, 0)
    return found[0]


def receive(conn: psycopg.Connection, location_id: int, sku: str, quantity: int, *, actor: str,
            now: datetime) -> None:
    """Add delivered stock to a location."""
    _positive(quantity)
    _check_location(conn, location_id)
    pid = part_id(conn, sku)
    conn.execute(
        "INSERT INTO stock (location_id, part_id, quantity) VALUES (%s, %s, %s) "
        "ON CONFLICT (location_id, part_id) DO UPDATE SET quantity = stock.quantity + excluded.quantity",
        (location_id, pid, quantity),
    )
    _movement(conn, pid, None, location_id, quantity, None, actor, now)


_RESERVE = (
    "UPDATE stock SET reserved = reserved + %(q)s "
    "WHERE location_id = %(loc)s AND part_id = %(pid)s AND quantity - reserved >= %(q)s RETURNING quantity"
)
_REMOVE = (
    "UPDATE stock SET quantity = quantity - %(q)s "
    "WHERE location_id = %(loc)s AND part_id = %(pid)s AND quantity - reserved >= %(q)s RETURNING quantity"
)


def _take_available(conn: psycopg.Connection, location_id: int, pid: int, quantity: int, *, reserve: bool,
                    field: str) -> None:
    """Reserve (or remove) ``quantity`` unreserved units, or raise InsufficientStock."""
    row = conn.execute(
        _RESERVE if reserve else _REMOVE, {"q": quantity, "loc": location_id, "pid": pid}
    ).fetchone()
    if row is None:
        have = conn.execute(
            "SELECT quantity - reserved FROM stock WHERE location_id = %s AND part_id = %s", (location_id, pid)
        ).fetchone()
        raise InsufficientStock(
            field, f"location {location_id} has {have[0] if have else 0} unreserved of part {pid}, need {quantity}"
        )


def reserve(conn: psycopg.Connection, job_id: int, location_id: int, sku: str, quantity: int, *,
            now: datetime) -> None:
    """Promise ``quantity`` of a part at a location to a job."""
    _positive(quantity)
    _check_location(conn, location_id)
    pid = part_id(conn, sku)
    _take_available(conn, location_id, pid, quantity, reserve=True, field="quantity")
    conn.execute(
        "INSERT INTO stock_reservations (job_id, location_id, part_id, quantity, created_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id, location_id, part_id) "
        "DO UPDATE SET quantity = stock_reservations.quantity + excluded.quantity",
        (job_id, location_id, pid, quantity, now),
    )


def reserved_for_job(conn: psycopg.Connection, job_id: int) -> dict[tuple[int, str], int]:
    """{(location id, sku): quantity} reserved for a job."""
    rows = conn.execute(
        "SELECT r.location_id, p.sku, r.quantity FROM stock_reservations r JOIN parts p ON p.id = r.part_id "
        "WHERE r.job_id = %s", (job_id,)
    ).fetchall()
    return {(loc, sku): qty for loc, sku, qty in rows}


def _missing(conn: psycopg.Connection, job_id: int) -> list[tuple[int, int]]:
    """(part id, quantity) the job needs beyond what is already reserved for it anywhere."""
    return conn.execute(
        "SELECT jp.part_id, jp.quantity - coalesce(sum(r.quantity), 0) FROM job_parts jp "
        "LEFT JOIN stock_reservations r ON r.job_id = jp.job_id AND r.part_id = jp.part_id "
        "WHERE jp.job_id = %s GROUP BY jp.part_id, jp.quantity "
        "HAVING jp.quantity > coalesce(sum(r.quantity), 0) ORDER BY jp.part_id",
        (job_id,),
    ).fetchall()


def covers(conn: psycopg.Connection, location_id: int, job_id: int) -> bool:
    """Whether the location holds, unreserved, every part the job still needs."""
    for pid, qty in _missing(conn, job_id):
        row = conn.execute(
            "SELECT quantity - reserved FROM stock WHERE location_id = %s AND part_id = %s", (location_id, pid)
        ).fetchone()
        if row is None or row[0] < qty:
            return False
    return True


def reserve_for_job(conn: psycopg.Connection, job_id: int, location_id: int, *, actor: str,
                    now: datetime) -> int:
    """Reserve at ``location_id`` every required part of the job not yet reserved; all or nothing.

    Returns the number of units reserved.
    """
    _check_location(conn, location_id)
    total = 0
    with conn.transaction():
        for pid, qty in _missing(conn, job_id):
            _take_available(conn, location_id, pid, qty, reserve=True, field="parts_location_id")
            conn.execute(
                "INSERT INTO stock_reservations (job_id, location_id, part_id, quantity, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id, location_id, part_id) "
                "DO UPDATE SET quantity = stock_reservations.quantity + excluded.quantity",
                (job_id, location_id, pid, qty, now),
            )
            total += qty
    if total:
        log.debug("job %d: %d part(s) reserved at location %d by %s", job_id, total, location_id, actor)
    return total


def release_job(conn: psycopg.Connection, job_id: int, *, actor: str, now: datetime) -> int:
    """Give back every reservation of a job; returns the units released."""
    rows = conn.execute(
        "DELETE FROM stock_reservations WHERE job_id = %s RETURNING location_id, part_id, quantity", (job_id,)
    ).fetchall()
    for loc, pid, qty in rows:
        conn.execute(
            "UPDATE stock SET reserved = reserved - %s WHERE location_id = %s AND part_id = %s", (qty, loc, pid)
        )
    total = sum(r[2] for r in rows)
    if total:
        log.debug("job %d: %d reserved part(s) released by %s at %s", job_id, total, actor, now.isoformat())
    return total


def consume_for_job(conn: psycopg.Connection, job_id: int, used: Iterable[PartQuantity], *,
                    technician_id: int | None, actor: str, now: datetime) -> None:
    """Take the parts used on a job out of stock: its reservations first, then the technician's van.

    Records them in ``job_parts_used`` (the maintenance history). Raises InsufficientStock
    (field ``parts_used``) when neither holds enough.
    """
    van = van_of(conn, technician_id) if technician_id is not None else None
    for item in used:
        _positive(item.quantity, "parts_used")
        pid = part_id(conn, item.sku)
        left = item.quantity
        reservations = conn.execute(
            "SELECT location_id, quantity FROM stock_reservations WHERE job_id = %s AND part_id = %s "
            "ORDER BY location_id = %s DESC, location_id FOR UPDATE",
            (job_id, pid, van),
        ).fetchall()
        for loc, qty in reservations:
            if left == 0:
                break
            take = min(left, qty)
            conn.execute(
                "UPDATE stock SET quantity = quantity - %(t)s, reserved = reserved - %(t)s "
                "WHERE location_id = %(loc)s AND part_id = %(pid)s",
                {"t": take, "loc": loc, "pid": pid},
            )
            if take == qty:
                conn.execute("DELETE FROM stock_reservations WHERE job_id = %s AND location_id = %s AND part_id = %s",
                             (job_id, loc, pid))
            else:
                conn.execute("UPDATE stock_reservations SET quantity = quantity - %s WHERE job_id = %s "
                             "AND location_id = %s AND part_id = %s", (take, job_id, loc, pid))
            _used(conn, job_id, pid, loc, take, actor, now)
            left -= take
        if left:
            if van is None:
                raise InsufficientStock("parts_used", f"part {item.sku}: {left} not reserved and no van to take from")
            _take_available(conn, van, pid, left, reserve=False, field="parts_used")
            _used(conn, job_id, pid, van, left, actor, now)


def _used(conn: psycopg.Connection, job_id: int, pid: int, location_id: int, quantity: int, actor: str,
          now: datetime) -> None:
    conn.execute(
        "INSERT INTO job_parts_used (job_id, part_id, location_id, quantity, recorded_at) VALUES (%s, %s, %s, %s, %s)",
        (job_id, pid, location_id, quantity, now),
    )
    _movement(conn, pid, location_id, None, quantity, job_id, actor, now)


def parts_used(conn: psycopg.Connection, job_id: int) -> list[PartQuantity]:
    rows = conn.execute(
        "SELECT p.sku, sum(u.quantity)::int FROM job_parts_used u JOIN parts p ON p.id = u.part_id "
        "WHERE u.job_id = %s GROUP BY p.sku ORDER BY p.sku", (job_id,)
    ).fetchall()
    return [PartQuantity(sku, qty) for sku, qty in rows]


def transfer(conn: psycopg.Connection, from_location_id: int, to_location_id: int, sku: str, quantity: int, *,
             actor: str, now: datetime, job_id: int | None = None) -> None:
    """Move unreserved stock between locations (e.g. warehouse to a van), in one transaction.

    With ``job_id``, the job's reservation at the source moves with it (a planned pickup).
    """
    _positive(quantity)
    if from_location_id == to_location_id:
        raise ServiceError("to_location_id", "must differ from from_location_id")
    _check_location(conn, from_location_id, "from_location_id")
    _check_location(conn, to_location_id, "to_location_id")
    pid = part_id(conn, sku)
    with conn.transaction():
        moved_reservation = 0
        if job_id is not None:
            row = conn.execute(
                "DELETE FROM stock_reservations WHERE job_id = %s AND location_id = %s AND part_id = %s "
                "RETURNING quantity", (job_id, from_location_id, pid)
            ).fetchone()
            moved_reservation = min(row[0], quantity) if row else 0
            if row:
                conn.execute("UPDATE stock SET reserved = reserved - %s WHERE location_id = %s AND part_id = %s",
                             (row[0], from_location_id, pid))
                if row[0] > moved_reservation:
                    reserve(conn, job_id, from_location_id, sku, row[0] - moved_reservation, now=now)
        _take_available(conn, from_location_id, pid, quantity, reserve=False, field="quantity")
        conn.execute(
            "INSERT INTO stock (location_id, part_id, quantity) VALUES (%s, %s, %s) "
            "ON CONFLICT (location_id, part_id) DO UPDATE SET quantity = stock.quantity + excluded.quantity",
            (to_location_id, pid, quantity),
        )
        if moved_reservation:
            reserve(conn, job_id, to_location_id, sku, moved_reservation, now=now)
        _movement(conn, pid, from_location_id, to_location_id, quantity, job_id, actor, now)


COLLECTING_STATUSES = ("scheduled", "dispatched", "en_route", "on_site")


@dataclass(frozen=True, slots=True)
class Pickup:
    """Parts reserved for a job at a warehouse: the technician collects them on the way there."""

    location_id: int
    name: str
    lat: float
    lon: float
    parts: tuple[PartQuantity, ...]


def pickups_for_job(conn: psycopg.Connection, job_id: int) -> list[Pickup]:
    """The warehouses holding parts reserved for the job, with those parts (by location id)."""
    return group_pickups(conn.execute(
        "SELECT l.id, l.name, l.lat, l.lon, p.sku, r.quantity FROM stock_reservations r "
        "JOIN stock_locations l ON l.id = r.location_id JOIN parts p ON p.id = r.part_id "
        "WHERE r.job_id = %s AND l.kind = 'warehouse' ORDER BY l.id, p.sku", (job_id,)
    ).fetchall())


def group_pickups(items: Iterable[tuple[int, str, float, float, str, int]]) -> list[Pickup]:
    """(location id, name, lat, lon, sku, quantity) per reserved part as one Pickup per location."""
    found: dict[int, Pickup] = {}
    for loc, name, lat, lon, sku, qty in items:
        prev = found.get(loc)
        found[loc] = Pickup(loc, name, lat, lon, (*(prev.parts if prev else ()), PartQuantity(sku, qty)))
    return list(found.values())


def collect_for_job(conn: psycopg.Connection, job_id: int, location_id: int, technician_id: int, *,
                    actor: str, now: datetime) -> list[PartQuantity]:
    """Move the parts reserved for a job at ``location_id`` into the technician's van, reservations
    and all (the planned pickup); returns what moved, nothing when nothing is reserved there."""
    job = conn.execute("SELECT technician_id, status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    if job is None:
        raise NotFoundError("job_id", f"no job {job_id}")
    if job[0] != technician_id:
        raise ServiceError("job_id", f"job {job_id} is not assigned to technician {technician_id}")
    if job[1] not in COLLECTING_STATUSES:
        raise ServiceError("job_id", f"job {job_id} is {job[1]}; parts are collected for jobs under way")
    van = van_of(conn, technician_id)
    if van is None:
        raise ServiceError("technician_id", f"technician {technician_id} has no van")
    if van == location_id:
        raise ServiceError("location_id", "the parts are already in the van")
    moved = [p for pk in pickups_for_job(conn, job_id) if pk.location_id == location_id for p in pk.parts]
    with conn.transaction():
        for p in moved:
            transfer(conn, location_id, van, p.sku, p.quantity, actor=actor, now=now, job_id=job_id)
    if moved:
        log.info("job %d: %s collected from location %d into van %d by %s", job_id,
                 ", ".join(f"{p.quantity} x {p.sku}" for p in moved), location_id, van, actor)
    return moved


def _movement(conn: psycopg.Connection, pid: int, src: int | None, dst: int | None, quantity: int,
              job_id: int | None, actor: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO stock_movements (part_id, from_location_id, to_location_id, quantity, job_id, actor, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (pid, src, dst, quantity, job_id, actor, now),
    )


def reorder_suggestions(conn: psycopg.Connection) -> list[ReorderSuggestion]:
    """Locations whose unreserved stock of a part is below its minimum, with a quantity to order."""
    rows = conn.execute(
        "SELECT s.location_id, l.name, p.sku, s.quantity - s.reserved, s.min_quantity FROM stock s "
        "JOIN stock_locations l ON l.id = s.location_id JOIN parts p ON p.id = s.part_id "
        "WHERE s.quantity - s.reserved < s.min_quantity ORDER BY s.location_id, p.sku"
    ).fetchall()
    return [ReorderSuggestion(loc, name, sku, avail, mn, 2 * mn - avail) for loc, name, sku, avail, mn in rows]
