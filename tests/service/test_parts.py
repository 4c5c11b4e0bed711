"""Stock: reservations, consumption on completion, transfers, reorder suggestions, concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from fieldops.db.repo import catalog
from fieldops.domain import GeoPoint, JobSource, JobStatus, PartQuantity, StockKind
from fieldops.service import jobs, parts
from fieldops.service.errors import ServiceError
from tests import factories
from tests.factories import T0
from tests.service.conftest import World, make_world

H = timedelta(hours=1)


def warehouse(db: psycopg.Connection, bearings: int, minimum: int = 0) -> int:
    loc = catalog.create_stock_location(db, StockKind.WAREHOUSE, "Central", GeoPoint(48.2, 11.6))
    catalog.set_stock(db, loc.id, catalog.parts_by_sku(db)["BRG-1"].id, bearings, minimum)
    return loc.id


def van(db: psycopg.Connection, technician_id: int, bearings: int) -> int:
    loc = catalog.create_stock_location(db, StockKind.VAN, "Van", technician_id=technician_id)
    catalog.set_stock(db, loc.id, catalog.parts_by_sku(db)["BRG-1"].id, bearings)
    return loc.id


def bearing_job(db: psycopg.Connection, world: World, serial: str | None = None, quantity: int = 1) -> jobs.Job:
    device_id = world.device.id if serial is None else factories.device(db, serial, site_id=world.site.id).id
    return jobs.create_job(db, jobs.JobRequest(
        source=JobSource.CUSTOMER, device_id=device_id, failure_mode="bearing_wear",
        required_parts=(PartQuantity("BRG-1", quantity),)), actor="cc", now=T0)


def test_reserve_moves_quantity_to_reserved(db: psycopg.Connection, world: World) -> None:
    loc = warehouse(db, 5)
    job = bearing_job(db, world, quantity=2)
    assert parts.reserve_for_job(db, job.id, loc, actor="d", now=T0) == 2
    level = parts.level(db, loc, "BRG-1")
    assert (level.quantity, level.reserved, level.available) == (5, 2, 3)
    assert parts.reserved_for_job(db, job.id) == {(loc, "BRG-1"): 2}


def test_reserve_twice_reserves_only_whats_missing(db: psycopg.Connection, world: World) -> None:
    loc = warehouse(db, 5)
    job = bearing_job(db, world, quantity=2)
    parts.reserve_for_job(db, job.id, loc, actor="d", now=T0)
    assert parts.reserve_for_job(db, job.id, loc, actor="d", now=T0) == 0


def test_over_reservation_is_refused(db: psycopg.Connection, world: World) -> None:
    loc = warehouse(db, 1)
    job = bearing_job(db, world, quantity=2)
    with pytest.raises(parts.InsufficientStock) as err:
        parts.reserve_for_job(db, job.id, loc, actor="d", now=T0)
    assert err.value.field == "parts_location_id"
    assert parts.level(db, loc, "BRG-1").reserved == 0


def test_negative_quantity_names_quantity(db: psycopg.Connection, world: World) -> None:
    loc = warehouse(db, 1)
    job = bearing_job(db, world)
    with pytest.raises(ServiceError) as err:
        parts.reserve(db, job.id, loc, "BRG-1", -1, now=T0)
    assert err.value.field == "quantity"


def test_concurrent_over_reservation_refused(db_url: str) -> None:
    with psycopg.connect(db_url) as setup:
        world = make_world(setup)
        loc = warehouse(setup, 1)
        first_job = bearing_job(setup, world)
        second_job = bearing_job(setup, world, serial="pump-0002")
        setup.commit()
    results: dict[str, object] = {}
    with psycopg.connect(db_url) as one, psycopg.connect(db_url) as two:
        parts.reserve_for_job(one, first_job.id, loc, actor="d1", now=T0)  # holds the stock row lock

        def race() -> None:
            try:
                results["two"] = parts.reserve_for_job(two, second_job.id, loc, actor="d2", now=T0)
                two.commit()
            except parts.InsufficientStock as exc:
                results["two"] = exc
                two.rollback()

        thread = threading.Thread(target=race)
        thread.start()
        thread.join(0.3)  # the second reservation waits on the row lock
        one.commit()
        thread.join(10)
    assert isinstance(results["two"], parts.InsufficientStock)
    with psycopg.connect(db_url) as check:
        level = parts.level(check, loc, "BRG-1")
        assert (level.quantity, level.reserved) == (1, 1)


def test_assign_reserves_from_van_when_it_has_the_parts(db: psycopg.Connection, world: World) -> None:
    loc = van(db, world.technician.id, 2)
    job = bearing_job(db, world)
    jobs.assign(db, job.id, world.technician.id, T0 + H, now=T0)
    assert parts.reserved_for_job(db, job.id) == {(loc, "BRG-1"): 1}


def test_assign_reserves_at_given_pickup_location(db: psycopg.Connection, world: World) -> None:
    van(db, world.technician.id, 0)
    loc = warehouse(db, 3)
    job = bearing_job(db, world)
    jobs.assign(db, job.id, world.technician.id, T0 + H, now=T0, parts_location_id=loc)
    assert parts.reserved_for_job(db, job.id) == {(loc, "BRG-1"): 1}


def test_cancel_releases_reservation(db: psycopg.Connection, world: World) -> None:
    loc = warehouse(db, 3)
    job = jobs.assign(db, bearing_job(db, world).id, world.technician.id, T0 + H, now=T0, parts_location_id=loc)
    jobs.transition(db, job.id, JobStatus.CANCELLED, expected_version=job.version, actor="cc", now=T0)
    assert parts.level(db, loc, "BRG-1").reserved == 0


def test_completion_consumes_reserved_parts(db: psycopg.Connection, world: World) -> None:
    loc = van(db, world.technician.id, 2)
    job = jobs.assign(db, bearing_job(db, world).id, world.technician.id, T0 + H, now=T0)
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        job = jobs.transition(db, job.id, status, expected_version=job.version, actor="t", now=T0 + H)
    jobs.transition(db, job.id, JobStatus.COMPLETED, expected_version=job.version, actor="t", now=T0 + 2 * H,
                    finding="fault_confirmed", parts_used=(PartQuantity("BRG-1", 1),))
    level = parts.level(db, loc, "BRG-1")
    assert (level.quantity, level.reserved) == (1, 0)
    assert parts.parts_used(db, job.id) == [PartQuantity("BRG-1", 1)]


def test_completion_using_more_than_van_holds_is_refused(db: psycopg.Connection, world: World) -> None:
    van(db, world.technician.id, 1)
    job = jobs.assign(db, bearing_job(db, world).id, world.technician.id, T0 + H, now=T0)
    for status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE):
        job = jobs.transition(db, job.id, status, expected_version=job.version, actor="t", now=T0 + H)
    with pytest.raises(parts.InsufficientStock) as err:
        jobs.transition(db, job.id, JobStatus.COMPLETED, expected_version=job.version, actor="t", now=T0 + 2 * H,
                        finding="fault_confirmed", parts_used=(PartQuantity("BRG-1", 3),))
    assert err.value.field == "parts_used"


def test_transfer_moves_unreserved_stock(db: psycopg.Connection, world: World) -> None:
    src = warehouse(db, 4)
    dst = van(db, world.technician.id, 0)
    parts.transfer(db, src, dst, "BRG-1", 3, actor="store", now=T0)
    assert (parts.level(db, src, "BRG-1").quantity, parts.level(db, dst, "BRG-1").quantity) == (1, 3)


def test_transfer_cannot_take_reserved_stock(db: psycopg.Connection, world: World) -> None:
    src = warehouse(db, 2)
    dst = van(db, world.technician.id, 0)
    parts.reserve_for_job(db, bearing_job(db, world, quantity=2).id, src, actor="d", now=T0)
    with pytest.raises(parts.InsufficientStock):
        parts.transfer(db, src, dst, "BRG-1", 1, actor="store", now=T0)


def test_transfer_for_job_carries_its_reservation(db: psycopg.Connection, world: World) -> None:
    src = warehouse(db, 2)
    dst = van(db, world.technician.id, 0)
    job = bearing_job(db, world)
    parts.reserve_for_job(db, job.id, src, actor="d", now=T0)
    parts.transfer(db, src, dst, "BRG-1", 1, actor="tech", now=T0, job_id=job.id)
    assert parts.reserved_for_job(db, job.id) == {(dst, "BRG-1"): 1}
    assert (parts.level(db, src, "BRG-1").reserved, parts.level(db, dst, "BRG-1").reserved) == (0, 1)


def assigned_bearing_job(db: psycopg.Connection, world: World, src: int) -> jobs.Job:
    job = bearing_job(db, world)
    return jobs.assign(db, job.id, world.technician.id, T0 + H, actor="d", now=T0, parts_location_id=src)


def test_pickups_list_the_warehouse_parts_reserved_for_a_job(db: psycopg.Connection, world: World) -> None:
    src = warehouse(db, 2)
    job = assigned_bearing_job(db, world, src)
    (pickup,) = parts.pickups_for_job(db, job.id)
    assert (pickup.location_id, pickup.name, pickup.parts) == (src, "Central", (PartQuantity("BRG-1", 1),))


def test_parts_reserved_in_the_van_are_no_pickup(db: psycopg.Connection, world: World) -> None:
    own = van(db, world.technician.id, 1)
    job = assigned_bearing_job(db, world, own)
    assert parts.pickups_for_job(db, job.id) == []


def test_collecting_moves_the_reserved_parts_into_the_van(db: psycopg.Connection, world: World) -> None:
    src = warehouse(db, 2)
    dst = van(db, world.technician.id, 0)
    job = assigned_bearing_job(db, world, src)
    moved = parts.collect_for_job(db, job.id, src, world.technician.id, actor="tech", now=T0)
    assert moved == [PartQuantity("BRG-1", 1)]
    assert parts.reserved_for_job(db, job.id) == {(dst, "BRG-1"): 1}
    assert (parts.level(db, src, "BRG-1").quantity, parts.level(db, dst, "BRG-1").quantity) == (1, 1)


def test_collecting_twice_moves_nothing_the_second_time(db: psycopg.Connection, world: World) -> None:
    src = warehouse(db, 2)
    van(db, world.technician.id, 0)
    job = assigned_bearing_job(db, world, src)
    parts.collect_for_job(db, job.id, src, world.technician.id, actor="tech", now=T0)
    assert parts.collect_for_job(db, job.id, src, world.technician.id, actor="tech", now=T0) == []
    assert parts.level(db, src, "BRG-1").quantity == 1


def test_only_the_assigned_technician_collects(db: psycopg.Connection, world: World) -> None:
    src = warehouse(db, 2)
    other = factories.technician(db, "Other")
    van(db, other.id, 0)
    job = assigned_bearing_job(db, world, src)
    with pytest.raises(ServiceError, match="not assigned"):
        parts.collect_for_job(db, job.id, src, other.id, actor="tech", now=T0)


def test_reorder_suggestion_below_minimum(db: psycopg.Connection, world: World) -> None:
    loc = warehouse(db, 3, minimum=5)
    (suggestion,) = parts.reorder_suggestions(db)
    assert (suggestion.location_id, suggestion.sku, suggestion.quantity, suggestion.suggested) == (loc, "BRG-1", 3, 7)


def test_no_reorder_at_minimum(db: psycopg.Connection, world: World) -> None:
    warehouse(db, 5, minimum=5)
    assert parts.reorder_suggestions(db) == []


def test_reserved_total_matches_reservation_rows(db: psycopg.Connection, world: World) -> None:
    loc = warehouse(db, 5)
    for n in range(3):
        parts.reserve_for_job(db, bearing_job(db, world, serial=f"pump-r{n}").id, loc, actor="d", now=T0)
    (rows_total,) = db.execute("SELECT sum(quantity) FROM stock_reservations WHERE location_id = %s", (loc,)).fetchone()
    assert parts.level(db, loc, "BRG-1").reserved == rows_total == 3
