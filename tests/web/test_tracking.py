from __future__ import annotations

from datetime import timedelta

from fieldops.service import jobs
from tests.web.conftest import NOON
from web import store


def _link(signed_in, job_id):
    client, token = signed_in("dora")
    return client.post(f"/api/jobs/{job_id}/tracking-links", json={}, headers={"X-CSRF-Token": token}).get_json()


def test_tracking_token_carries_at_least_128_bits(signed_in, work):
    assert len(_link(signed_in, work.ada_job_id)["token"]) >= 43  # 32 random bytes, base64url


def test_only_the_hash_of_a_token_is_stored(signed_in, work, db):
    token = _link(signed_in, work.ada_job_id)["token"]
    stored = db.execute("SELECT token_hash FROM tracking_tokens").fetchone()[0]
    assert token.encode() not in bytes(stored)


def test_tracking_page_shows_first_name_only(signed_in, work, app):
    token = _link(signed_in, work.ada_job_id)["token"]
    page = app.test_client().get(f"/track/{token}").get_data(as_text=True)
    assert "Ada" in page and "Lovelace" not in page


def test_unknown_token_gets_polite_page_without_details(app, work):
    resp = app.test_client().get("/track/not-a-token")
    assert resp.status_code == 404
    assert "not valid" in resp.get_data(as_text=True) and "Plant" not in resp.get_data(as_text=True)


def test_expired_token_gets_the_same_page(app, work, db):
    store.store_tracking_token(db, "expired-token-xyz", work.ada_job_id, NOON - timedelta(seconds=1))
    db.commit()
    resp = app.test_client().get("/track/expired-token-xyz")
    assert resp.status_code == 404


def test_position_on_the_way_is_coarse(signed_in, work, people, db):
    token = _link(signed_in, work.ada_job_id)["token"]
    jobs.transition(db, work.ada_job_id, "en_route", expected_version=None, actor="t", now=NOON)
    store.record_position(db, people.ada_technician_id, 48.123456, 11.543219, NOON)
    db.commit()
    client, _ = signed_in(None)
    assert client.get(f"/track/{token}/status.json").get_json()["position"] == {"lat": 48.12, "lon": 11.54}


def _complete(db, job_id: int) -> None:
    for status in ("en_route", "on_site"):
        jobs.transition(db, job_id, status, expected_version=None, actor="t", now=NOON)
    jobs.transition(db, job_id, "completed", expected_version=None, actor="t", now=NOON, finding="fault_confirmed")
    db.commit()


def test_feedback_after_completion_is_stored(signed_in, work, db):
    token = _link(signed_in, work.ada_job_id)["token"]
    _complete(db, work.ada_job_id)
    client, csrf = signed_in(None)
    resp = client.post(f"/track/{token}/feedback", json={"rating": 5, "comment": "quick"},
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 201
    assert db.execute("SELECT rating FROM feedback").fetchone()[0] == 5


def test_feedback_before_the_visit_is_refused_naming_job(signed_in, work):
    token = _link(signed_in, work.ada_job_id)["token"]
    client, csrf = signed_in(None)
    resp = client.post(f"/track/{token}/feedback", json={"rating": 5}, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 400 and resp.get_json()["field"] == "job_id"


def test_feedback_comment_with_nul_is_refused_naming_comment(signed_in, work, db):
    token = _link(signed_in, work.ada_job_id)["token"]
    _complete(db, work.ada_job_id)
    client, csrf = signed_in(None)
    resp = client.post(f"/track/{token}/feedback", json={"rating": 4, "comment": "a\x00"},
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 400 and resp.get_json()["field"] == "comment"
