from __future__ import annotations

import pytest

from fieldops.db.repo import catalog
from fieldops.domain import GeoPoint, StockKind
from fieldops.service import jobs, parts
from tests.web.conftest import prediction


def test_technician_route_lists_own_stops_in_order_with_address(signed_in, work, people):
    client, _ = signed_in("ada")
    route = client.get(f"/api/technicians/{people.ada_technician_id}/route").get_json()
    assert [s["id"] for s in route["stops"]] == [work.ada_job_id]
    assert route["stops"][0]["address"] == "Plant A street 1, Munich"


def test_technician_job_list_holds_only_own_jobs(signed_in, work):
    client, _ = signed_in("ada")
    assert [j["id"] for j in client.get("/api/jobs").get_json()] == [work.ada_job_id]


def test_transition_moves_own_job_en_route(signed_in, work, db):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions", json={"to_status": "en_route"},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 200
    assert jobs.get_job(db, work.ada_job_id).status == "en_route"


def test_retried_transition_with_same_idempotency_key_is_applied_once(signed_in, work, db):
    client, token = signed_in("ada")
    headers = {"X-CSRF-Token": token, "Idempotency-Key": "retry-key-0001"}
    url = f"/api/jobs/{work.ada_job_id}/transitions"
    first = client.post(url, json={"to_status": "en_route"}, headers=headers)
    second = client.post(url, json={"to_status": "en_route"}, headers=headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.headers["Idempotent-Replay"] == "true"
    assert [e.to_status for e in jobs.job_events(db, work.ada_job_id)].count("en_route") == 1


def test_refused_request_does_not_use_up_its_idempotency_key(signed_in, work):
    client, token = signed_in("ada")
    headers = {"X-CSRF-Token": token, "Idempotency-Key": "retry-key-0002"}
    url = f"/api/jobs/{work.ada_job_id}/transitions"
    assert client.post(url, json={"to_status": "on_site"}, headers=headers).status_code == 409
    assert client.post(url, json={"to_status": "en_route"}, headers=headers).status_code == 200


def test_invalid_transition_names_the_field(signed_in, work):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions", json={"to_status": "completed"},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 409
    assert resp.get_json()["field"] == "to_status"


def test_stale_expected_version_is_a_conflict_on_version(signed_in, work):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions",
                       json={"to_status": "en_route", "expected_version": 1}, headers={"X-CSRF-Token": token})
    assert resp.status_code == 409
    assert resp.get_json()["field"] == "version"


@pytest.mark.parametrize("version", [0, -1])
def test_expected_version_below_1_is_bad_input_saying_versions_start_at_1(signed_in, work, version):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions",
                       json={"to_status": "en_route", "expected_version": version},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 400 and resp.get_json()["field"] == "expected_version"
    assert "versions start at 1" in resp.get_json()["error"]


def test_openapi_documents_that_versions_start_at_1(app):
    doc = app.test_client().get("/api/openapi.json").get_json()
    schema = doc["paths"]["/api/jobs/{job_id}/transitions"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["properties"]["expected_version"]["minimum"] == 1


def test_technician_may_not_cancel(signed_in, work):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions", json={"to_status": "cancelled"},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 403


def test_position_outside_range_names_lat(signed_in, people):
    client, token = signed_in("ada")
    resp = client.post("/api/positions", json={"lat": 91, "lon": 11.5}, headers={"X-CSRF-Token": token})
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "must be between -90 and 90", "field": "lat"}


def test_position_is_stored_for_own_technician(signed_in, people, db):
    client, token = signed_in("ada")
    client.post("/api/positions", json={"lat": 48.11, "lon": 11.52}, headers={"X-CSRF-Token": token})
    row = db.execute("SELECT last_lat, last_lon FROM technicians WHERE id = %s",
                     (people.ada_technician_id,)).fetchone()
    assert row == (48.11, 11.52)


def test_non_object_body_names_body(signed_in, people):
    client, token = signed_in("ada")
    resp = client.post("/api/positions", data="[1]", content_type="application/json",
                       headers={"X-CSRF-Token": token})
    assert resp.get_json()["field"] == "body"


def test_override_assigns_job_to_other_technician(signed_in, work, people, db):
    client, token = signed_in("dora")
    resp = client.post("/api/overrides", json={"action": "assign", "job_id": work.new_job_id,
                                                "technician_id": people.bob_technician_id},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 200
    assert jobs.get_job(db, work.new_job_id).technician_id == people.bob_technician_id


def test_override_to_technician_without_skill_is_refused_naming_technician(signed_in, work, db):
    from tests import factories

    eve = factories.technician(db, "Eve", skills=("electrical",))
    db.commit()
    client, token = signed_in("dora")
    resp = client.post("/api/overrides", json={"action": "assign", "job_id": work.new_job_id,
                                                "technician_id": eve.id},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 422
    assert resp.get_json()["field"] == "technician_id"
    assert "mechanical" in resp.get_json()["error"]


def test_override_with_unknown_action_names_action(signed_in, work):
    client, token = signed_in("dora")
    resp = client.post("/api/overrides", json={"action": "teleport", "job_id": work.new_job_id},
                       headers={"X-CSRF-Token": token})
    assert resp.get_json()["field"] == "action"


def test_device_telemetry_rejects_out_of_range_hours(signed_in, work):
    client, _ = signed_in("dora")
    resp = client.get(f"/api/devices/{work.device_id}/telemetry?hours=0")
    assert resp.status_code == 400 and resp.get_json()["field"] == "hours"


def test_device_history_lists_its_jobs(signed_in, work):
    client, _ = signed_in("dora")
    assert [j["id"] for j in client.get(f"/api/devices/{work.device_id}/jobs").get_json()] == [work.ada_job_id]


def test_openapi_documents_the_transition_body(app):
    doc = app.test_client().get("/api/openapi.json").get_json()
    post = doc["paths"]["/api/jobs/{job_id}/transitions"]["post"]
    assert "to_status" in post["requestBody"]["content"]["application/json"]["schema"]["required"]


def test_kpis_cover_the_requested_days(signed_in, work):
    client, _ = signed_in("dora")
    body = client.get("/api/kpis?days=3").get_json()
    assert body["by"] == "all" and isinstance(body["rows"], list)


def test_override_lock_without_active_plan_names_job(signed_in, work):
    client, token = signed_in("dora")
    resp = client.post("/api/overrides", json={"action": "lock", "job_id": work.ada_job_id},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 400 and resp.get_json()["field"] == "job_id"


def test_forced_override_is_kept_with_its_warning(signed_in, work, db):
    from tests import factories

    eve = factories.technician(db, "Eve", skills=("electrical",))
    db.commit()
    client, token = signed_in("dora")
    resp = client.post("/api/overrides", json={"action": "assign", "job_id": work.new_job_id,
                                                "technician_id": eve.id, "force": True},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 200 and "lacks skill" in resp.get_json()["warning"]


def test_release_hands_scheduled_job_to_the_phone(signed_in, work, people, db):
    client, token = signed_in("dora")
    headers = {"X-CSRF-Token": token}
    client.post("/api/overrides", json={"action": "assign", "job_id": work.new_job_id,
                                         "technician_id": people.bob_technician_id}, headers=headers)
    resp = client.post("/api/overrides", json={"action": "release", "job_id": work.new_job_id}, headers=headers)
    assert resp.get_json()["status"] == "dispatched"


def test_device_predictions_give_risk_history_with_explanation(signed_in, work, db):
    from tests.factories import T0

    prediction(db, work.device_id, 0.7, T0)
    client, _ = signed_in("dora")
    history = client.get(f"/api/devices/{work.device_id}/predictions").get_json()
    assert [(p["p_fail"], p["explanation"]) for p in history] == [(0.7, "vibration up 80%")]


def test_latest_predictions_keep_the_newest_per_device(signed_in, work, db):
    from datetime import timedelta

    from tests.factories import T0

    prediction(db, work.device_id, 0.2, T0)
    prediction(db, work.device_id, 0.9, T0 + timedelta(hours=1))
    client, _ = signed_in("dora")
    assert [p["p_fail"] for p in client.get("/api/predictions").get_json()] == [0.9]


def test_models_give_each_versions_training_window_and_data_rate(signed_in, db):
    db.execute("INSERT INTO model_registry (estimator, horizon_h, params, train_start, train_end, artifact, sha256) "
               "VALUES ('gb', 72, '{\"readings_per_hour\": 6.0}', '2026-09-01Z', '2026-11-30Z', 'x', %s)", ("0" * 64,))
    db.commit()
    client, _ = signed_in("dora")
    (model,) = client.get("/api/models").get_json()
    assert (model["readings_per_hour"], model["train_start"][:10], model["train_end"][:10]) == (
        6.0, "2026-09-01", "2026-11-30")


def test_device_telemetry_comes_from_the_hourly_rollup(signed_in, work, db):
    from datetime import timedelta

    from fieldops.db.repo.telemetry import TelemetryWriter
    from tests.web.conftest import NOON

    TelemetryWriter(db).write([(work.device_id, NOON - timedelta(minutes=30 + m), m, [50.0 + m, 1.0, 2.0])
                               for m in range(3)])
    db.commit()
    client, _ = signed_in("dora")
    rows = client.get(f"/api/devices/{work.device_id}/telemetry?hours=2&metric=0").get_json()
    assert [(r["n"], r["min"], r["max"]) for r in rows] == [(3, 50.0, 52.0)]


def test_times_are_iso_8601(signed_in, work):
    client, _ = signed_in("dora")
    job = client.get(f"/api/jobs/{work.ada_job_id}").get_json()
    assert job["planned_arrival"] == "2026-03-02T13:00:00+00:00"


def test_kpis_by_unknown_grouping_names_by(signed_in, work):
    client, _ = signed_in("dora")
    resp = client.get("/api/kpis?by=moon")
    assert resp.status_code == 400 and resp.get_json()["field"] == "by"


def test_openapi_lists_every_override_action(app):
    from web.api import OVERRIDE_ACTIONS

    doc = app.test_client().get("/api/openapi.json").get_json()
    schema = doc["paths"]["/api/overrides"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["action"]["enum"] == list(OVERRIDE_ACTIONS)


def test_openapi_documents_that_apply_needs_a_preview_id(app):
    doc = app.test_client().get("/api/openapi.json").get_json()
    schema = doc["paths"]["/api/plan/apply"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["preview_id"]


def warehouse_pickup(db, work, people) -> int:
    """Ada's job's bearing reserved at a warehouse, and an empty van for Ada; the warehouse id."""
    bearing = catalog.parts_by_sku(db)["BRG-1"].id
    store_id = catalog.create_stock_location(db, StockKind.WAREHOUSE, "North depot", GeoPoint(48.3, 11.6)).id
    catalog.set_stock(db, store_id, bearing, 3)
    catalog.create_stock_location(db, StockKind.VAN, "Ada's van", technician_id=people.ada_technician_id)
    parts.reserve_for_job(db, work.ada_job_id, store_id, actor="test", now=jobs.get_job(db, work.ada_job_id).created_at)
    db.commit()
    return store_id


def test_route_shows_where_to_collect_the_jobs_parts(signed_in, work, people, db):
    store_id = warehouse_pickup(db, work, people)
    client, _ = signed_in("ada")
    (stop,) = client.get(f"/api/technicians/{people.ada_technician_id}/route").get_json()["stops"]
    assert [(p["location_id"], p["location"], p["sku"], p["quantity"]) for p in stop["pickups"]] == [
        (store_id, "North depot", "BRG-1", 1)]


def test_pickup_moves_the_reserved_parts_into_the_technicians_van(signed_in, work, people, db):
    store_id = warehouse_pickup(db, work, people)
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/pickup", json={"location_id": store_id},
                       headers={"X-CSRF-Token": token})
    assert resp.get_json()["collected"] == [{"sku": "BRG-1", "quantity": 1}]
    db.commit()
    assert parts.reserved_for_job(db, work.ada_job_id) == {(parts.van_of(db, people.ada_technician_id), "BRG-1"): 1}


def test_pickup_needs_a_location(signed_in, work):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/pickup", json={}, headers={"X-CSRF-Token": token})
    assert (resp.status_code, resp.get_json()["field"]) == (400, "location_id")
