"""Bad input gets a clear 4xx answer, never a 500: text the database cannot store, deep JSON."""

from __future__ import annotations

import pytest

from fieldops.service import jobs
from tests.web.conftest import NOON, csrf_of, route_running


def test_login_with_nul_in_user_name_is_refused_with_a_page(app, people):
    client = app.test_client()
    token = csrf_of(client)
    resp = client.post("/login", data={"username": "a\x00b", "password": "x", "csrf_token": token})
    assert resp.status_code == 400 and "username" in resp.get_data(as_text=True)


def test_note_with_nul_is_refused_naming_note(signed_in, work):
    client, token = signed_in("dora")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions",
                       json={"to_status": "dispatched", "note": "a\x00b"}, headers={"X-CSRF-Token": token})
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "must not contain NUL characters", "field": "note"}


def test_note_with_lone_surrogate_is_refused_naming_note(signed_in, work):
    client, token = signed_in("dora")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions",
                       data='{"to_status": "dispatched", "note": "\\ud800"}', content_type="application/json",
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 400 and resp.get_json()["field"] == "note"


def test_nul_nested_inside_a_list_is_refused_naming_its_top_level_field(signed_in, work, db):
    for status in ("en_route", "on_site"):
        jobs.transition(db, work.ada_job_id, status, expected_version=None, actor="t", now=NOON)
    db.commit()
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/transitions",
                       json={"to_status": "completed", "finding": "fault_confirmed",
                             "parts_used": [{"sku": "a\x00", "quantity": 1}]},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 400 and resp.get_json()["field"] == "parts_used"


def test_query_argument_with_nul_is_refused_naming_it(signed_in, work):
    client, _ = signed_in("dora")
    resp = client.get("/api/jobs?status=%00")
    assert resp.status_code == 400 and resp.get_json()["field"] == "status"


def test_deeply_nested_json_body_is_refused_naming_body(signed_in, people):
    client, token = signed_in("ada")
    resp = client.post("/api/positions", data="[" * 100_000, content_type="application/json",
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"


def test_idempotency_key_with_nul_is_refused_naming_it(signed_in, people):
    client, token = signed_in("ada")
    resp = client.post("/api/positions", json={"lat": 48.1, "lon": 11.5},
                       headers={"X-CSRF-Token": token, "Idempotency-Key": "key-\x00-0001"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "Idempotency-Key"


def test_device_id_beyond_the_integer_range_is_not_found(signed_in, work):
    client, _ = signed_in("dora")
    resp = client.get("/api/devices/99999999999999")
    assert resp.status_code == 404 and set(resp.get_json()) == {"error"}


def test_route_of_technician_id_beyond_the_integer_range_is_not_found(signed_in, work):
    client, _ = signed_in("dora")
    assert client.get("/api/technicians/99999999999/route").status_code == 404


def test_device_page_id_beyond_the_integer_range_is_an_html_not_found_page(signed_in, work):
    client, _ = signed_in("dora")
    resp = client.get("/console/devices/99999999999")
    assert resp.status_code == 404 and resp.mimetype == "text/html"


def test_override_position_beyond_the_integer_range_is_refused_naming_position(signed_in, work, people):
    client, token = signed_in("dora")
    resp = client.post("/api/overrides", json={"action": "move", "job_id": work.ada_job_id,
                                                "technician_id": people.ada_technician_id, "position": 2**31},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 400 and resp.get_json()["field"] == "position"


def test_pickup_location_beyond_the_integer_range_is_refused_naming_location(signed_in, work):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/pickup", json={"location_id": 2**70},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 400 and resp.get_json()["field"] == "location_id"


def test_value_the_database_refuses_is_a_400_json_error_as_a_last_resort(app):
    route_running(app, "/api/overflow", "SELECT 2147483647::int + 1")
    resp = app.test_client().get("/api/overflow")
    assert resp.status_code == 400 and "integer out of range" in resp.get_json()["error"]


def test_database_error_that_is_not_about_a_value_stays_a_500(app):
    route_running(app, "/api/broken", "SELECT no_such_column FROM jobs")
    assert app.test_client().get("/api/broken").status_code == 500


def test_unknown_job_status_filter_is_refused_naming_the_allowed_ones(signed_in, work):
    client, _ = signed_in("dora")
    resp = client.get("/api/jobs?status=bogus")
    assert resp.status_code == 400 and resp.get_json()["field"] == "status"
    assert "en_route" in resp.get_json()["error"]


def test_pickup_at_unknown_location_is_not_found(signed_in, work):
    client, token = signed_in("ada")
    resp = client.post(f"/api/jobs/{work.ada_job_id}/pickup", json={"location_id": 999},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 404 and resp.get_json()["field"] == "location_id"


@pytest.mark.parametrize(("path", "field"), [
    ("/api/devices/999/jobs", "device_id"),
    ("/api/devices/999/predictions", "device_id"),
    ("/api/technicians/999/route", "technician_id"),
])
def test_what_belongs_to_an_unknown_device_or_technician_is_not_found(signed_in, work, path, field):
    client, _ = signed_in("dora")
    resp = client.get(path)
    assert resp.status_code == 404 and resp.get_json()["field"] == field


def test_idempotent_replay_gives_times_in_the_same_iso_format_as_the_first_answer(signed_in, people):
    client, token = signed_in("ada")
    headers = {"X-CSRF-Token": token, "Idempotency-Key": "position-key-0001"}
    first = client.post("/api/positions", json={"lat": 48.1, "lon": 11.5}, headers=headers)
    replay = client.post("/api/positions", json={"lat": 48.1, "lon": 11.5}, headers=headers)
    assert replay.headers["Idempotent-Replay"] == "true"
    assert replay.get_json()["at"] == first.get_json()["at"]


def test_method_not_allowed_on_an_api_path_is_a_json_error(signed_in, people):
    client, token = signed_in("dora")
    resp = client.delete("/api/jobs", headers={"X-CSRF-Token": token})
    assert resp.status_code == 405 and set(resp.get_json()) == {"error"}


@pytest.mark.parametrize("path", ["/api/jobs", "/console/"])
def test_method_not_allowed_names_the_allowed_methods(signed_in, people, path):
    client, token = signed_in("dora")
    resp = client.delete(path, headers={"X-CSRF-Token": token})
    assert resp.status_code == 405 and "GET" in resp.headers.get("Allow", "")


def test_bare_api_path_is_a_json_not_found(app):
    resp = app.test_client().get("/api")
    assert resp.status_code == 404 and set(resp.get_json()) == {"error"}
