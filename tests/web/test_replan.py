"""Re-plan from the console: the preview lists the changes, apply commits exactly that plan."""

from __future__ import annotations

import pytest

from fieldops.service import jobs
from tests.factories import T0


def _warehouse_with_bearings(db):
    from fieldops.db.repo import catalog
    from fieldops.domain import GeoPoint, StockKind

    depot = catalog.create_stock_location(db, StockKind.WAREHOUSE, "Depot", GeoPoint(48.14, 11.56))
    catalog.set_stock(db, depot.id, catalog.parts_by_sku(db)["BRG-1"].id, 10)
    db.commit()


@pytest.fixture
def dora(signed_in):
    """``post(url, body, **headers)`` as Dora, with her CSRF token."""
    client, token = signed_in("dora")

    def post(url, body, **headers):
        return client.post(url, json=body, headers={"X-CSRF-Token": token, **headers})

    return post


def test_preview_assigns_the_new_job_without_committing(dora, work, db):
    _warehouse_with_bearings(db)
    post = dora
    change = {c["job_id"]: c for c in post("/api/plan/preview", {}).get_json()["changes"]}[work.new_job_id]
    assert change["from"] is None and change["to"] is not None
    assert jobs.get_job(db, work.new_job_id).technician_id is None


def test_preview_gives_the_reason_a_job_stays_unassigned(dora, work):
    post = dora
    reasons = {u["job_id"]: u["reason"] for u in post("/api/plan/preview", {}).get_json()["unassigned"]}
    assert "out of stock" in reasons[work.new_job_id]


def test_apply_commits_the_previewed_plan_not_a_new_solve(dora, work, db):
    _warehouse_with_bearings(db)
    post = dora
    preview = post("/api/plan/preview", {}).get_json()
    applied = post("/api/plan/apply", {"preview_id": preview["preview_id"]})
    solved_in = db.execute("SELECT (plan -> 'solution' ->> 'solve_time_s')::float FROM plan_previews").fetchone()[0]
    committed = db.execute("SELECT solve_time_s FROM plans WHERE id = %s", (applied.get_json()["plan_id"],)).fetchone()
    assert applied.status_code == 201 and committed[0] == solved_in


def test_apply_gives_the_job_the_previewed_technician(dora, work, db):
    _warehouse_with_bearings(db)
    post = dora
    preview = post("/api/plan/preview", {}).get_json()
    to = {c["job_id"]: c["to"] for c in preview["changes"]}[work.new_job_id]
    post("/api/plan/apply", {"preview_id": preview["preview_id"]})
    assert jobs.get_job(db, work.new_job_id).technician_id == to


def test_apply_after_a_job_changed_is_refused_asking_to_preview_again(dora, work, db):
    post = dora
    preview = post("/api/plan/preview", {}).get_json()
    jobs.transition(db, work.ada_job_id, "en_route", expected_version=None, actor="test", now=T0)
    db.commit()
    resp = post("/api/plan/apply", {"preview_id": preview["preview_id"]})
    assert resp.status_code == 409 and "preview the re-plan again" in resp.get_json()["error"]


def test_apply_after_an_override_changed_is_refused(dora, work, db):
    post = dora
    preview = post("/api/plan/preview", {}).get_json()
    post("/api/overrides", {"action": "unassign", "job_id": work.new_job_id})
    assert post("/api/plan/apply", {"preview_id": preview["preview_id"]}).status_code == 409


def test_refused_apply_commits_no_plan(dora, work, db):
    post = dora
    preview = post("/api/plan/preview", {}).get_json()
    post("/api/overrides", {"action": "unassign", "job_id": work.new_job_id})
    post("/api/plan/apply", {"preview_id": preview["preview_id"]})
    assert db.execute("SELECT count(*) FROM plans").fetchone()[0] == 0


def test_applying_a_preview_twice_is_refused(dora, work):
    post = dora
    preview = post("/api/plan/preview", {}).get_json()
    post("/api/plan/apply", {"preview_id": preview["preview_id"]})
    resp = post("/api/plan/apply", {"preview_id": preview["preview_id"]})
    assert resp.status_code == 409 and resp.get_json()["field"] == "preview_id"


def test_retried_apply_with_the_same_idempotency_key_gets_the_first_answer(dora, work):
    post = dora
    preview_id = post("/api/plan/preview", {}).get_json()["preview_id"]
    headers = {"Idempotency-Key": "apply-0001"}
    first = post("/api/plan/apply", {"preview_id": preview_id}, **headers)
    again = post("/api/plan/apply", {"preview_id": preview_id}, **headers)
    assert (again.status_code, again.get_json()) == (first.status_code, first.get_json())


def test_expired_preview_is_refused(dora, work, db):
    post = dora
    preview_id = post("/api/plan/preview", {}).get_json()["preview_id"]
    db.execute("UPDATE plan_previews SET created_at = created_at - interval '1 hour'")
    db.commit()
    resp = post("/api/plan/apply", {"preview_id": preview_id})
    assert resp.status_code == 409 and "expired" in resp.get_json()["error"]


def test_apply_without_preview_names_preview_id(dora, work):
    post = dora
    resp = post("/api/plan/apply", {})
    assert resp.status_code == 400 and resp.get_json()["field"] == "preview_id"


def test_unknown_preview_is_not_found(dora, work):
    post = dora
    assert post("/api/plan/apply", {"preview_id": "x" * 22}).status_code == 404
