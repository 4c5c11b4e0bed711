from __future__ import annotations

from datetime import UTC, datetime

from tests.web.conftest import PASSWORD, csrf_of, login
from web import store
from web.security import hash_password, verify_password


def test_password_hash_verifies_only_the_right_password():
    encoded = hash_password("s3cret-enough")
    assert encoded.startswith("scrypt$")
    assert verify_password("s3cret-enough", encoded)
    assert not verify_password("s3cret-enougH", encoded)


def test_malformed_hash_never_verifies():
    assert not verify_password("x", "bcrypt$nonsense")


def test_login_sets_httponly_samesite_cookie(app, people):
    client = app.test_client()
    token = csrf_of(client)
    resp = client.post("/login", data={"username": "dora", "password": PASSWORD, "csrf_token": token})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_session_cookie_is_secure_outside_development(app):
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_login_without_csrf_token_is_refused(app, people):
    client = app.test_client()
    resp = client.post("/login", data={"username": "dora", "password": PASSWORD})
    assert resp.status_code == 403


def test_wrong_password_is_refused(app, people):
    client = app.test_client()
    token = csrf_of(client)
    resp = client.post("/login", data={"username": "dora", "password": "nope", "csrf_token": token})
    assert resp.status_code == 401


def _fail_logins(client, username):
    token = csrf_of(client)
    for _ in range(store.LOGIN_MAX_FAILURES):
        client.post("/login", data={"username": username, "password": "nope", "csrf_token": token})
    return token


def test_sixth_attempt_after_five_failures_is_rate_limited_even_with_right_password(app, people):
    client = app.test_client()
    token = _fail_logins(client, "dora")
    resp = client.post("/login", data={"username": "dora", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 429


def test_rate_limit_is_per_user(app, people):
    client = app.test_client()
    _fail_logins(client, "dora")
    assert login(client, "root")


def test_old_failures_do_not_count(db, people):
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    for _ in range(store.LOGIN_MAX_FAILURES):
        store.record_failure(db, "dora", "10.0.0.1", now - store.LOGIN_WINDOW)
    assert store.recent_failures(db, "dora", "10.0.0.1", now) == 0


def test_api_post_without_csrf_header_is_refused_naming_the_header(signed_in):
    client, _ = signed_in("ada")
    resp = client.post("/api/positions", json={"lat": 48.1, "lon": 11.5})
    assert resp.status_code == 403
    assert resp.get_json()["field"] == "X-CSRF-Token"


def test_logout_ends_the_session(signed_in):
    client, token = signed_in("dora")
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/api/me").status_code == 401


def test_deactivated_user_loses_access_at_once(signed_in, db):
    client, _ = signed_in("dora")
    db.execute("UPDATE users SET active = false WHERE username = 'dora'")
    db.commit()
    assert client.get("/api/me").status_code == 401


def test_next_parameter_cannot_redirect_off_site(app, people):
    client = app.test_client()
    token = csrf_of(client)
    resp = client.post("/login", data={"username": "dora", "password": PASSWORD, "csrf_token": token,
                                       "next": "//evil.example/"})
    assert resp.headers["Location"] == "/console/"
