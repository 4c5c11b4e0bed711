"""Who may call which endpoint: every registered endpoint must appear in ROUTES."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.web.conftest import NOON, csrf_of, login
from web import store
from web.security import new_tracking_token

ANON, ADA, BOB, DORA, ROOT = "anonymous", "ada", "bob", "dora", "root"
EVERYONE = {ANON, ADA, BOB, DORA, ROOT}
USERS = {ADA, BOB, DORA, ROOT}
STAFF = {DORA, ROOT}
ADA_OR_STAFF = {ADA, DORA, ROOT}  # the URLs name Ada's job or route
TECHS = {ADA, BOB}

# endpoint: (method, url template, JSON body or None, who may)
ROUTES = {
    "auth.index": ("GET", "/", None, EVERYONE),
    "auth.login": ("GET", "/login", None, EVERYONE),
    "auth.logout": ("POST", "/logout", None, EVERYONE),
    "technician.page": ("GET", "/tech/", None, TECHS),
    "technician.job": ("GET", "/tech/jobs/{ada_job}", None, ADA_OR_STAFF),
    "dispatcher.console": ("GET", "/console/", None, STAFF),
    "dispatcher.device": ("GET", "/console/devices/{device}", None, STAFF),
    "tracking.page": ("GET", "/track/{token}", None, EVERYONE),
    "tracking.status": ("GET", "/track/{token}/status.json", None, EVERYONE),
    "tracking.feedback": ("POST", "/track/{token}/feedback", {"rating": 9}, EVERYONE),
    "live.user_events": ("GET", "/events", None, USERS),
    "live.tracking_events": ("GET", "/track/{token}/events", None, EVERYONE),
    "api.openapi": ("GET", "/api/openapi.json", None, EVERYONE),
    "api.me": ("GET", "/api/me", None, USERS),
    "api.list_jobs": ("GET", "/api/jobs", None, USERS),
    "api.get_job": ("GET", "/api/jobs/{ada_job}", None, ADA_OR_STAFF),
    "api.transition": ("POST", "/api/jobs/{ada_job}/transitions", {"to_status": "on_site"}, ADA_OR_STAFF),
    "api.pickup": ("POST", "/api/jobs/{ada_job}/pickup", {"location_id": 1}, {ADA}),
    "api.create_tracking_link": ("POST", "/api/jobs/{ada_job}/tracking-links", {}, STAFF),
    "api.technicians": ("GET", "/api/technicians", None, STAFF),
    "api.route": ("GET", "/api/technicians/{ada_tech}/route", None, ADA_OR_STAFF),
    "api.post_position": ("POST", "/api/positions", {"lat": 48.1, "lon": 11.5}, TECHS),
    "api.parts": ("GET", "/api/parts", None, USERS),
    "api.devices": ("GET", "/api/devices", None, STAFF),
    "api.device": ("GET", "/api/devices/{device}", None, STAFF),
    "api.device_telemetry": ("GET", "/api/devices/{device}/telemetry", None, STAFF),
    "api.device_jobs": ("GET", "/api/devices/{device}/jobs", None, STAFF),
    "api.create_override": ("POST", "/api/overrides", {"action": "bogus"}, STAFF),
    "api.kpis": ("GET", "/api/kpis", None, STAFF),
    "api.plan": ("GET", "/api/plan", None, STAFF),
    "api.predictions": ("GET", "/api/predictions", None, STAFF),
    "api.device_predictions": ("GET", "/api/devices/{device}/predictions", None, STAFF),
    "api.models": ("GET", "/api/models", None, STAFF),
    "dispatcher.model": ("GET", "/console/model", None, STAFF),
    "dispatcher.plot": ("GET", "/console/model/plots/pr_curve.png", None, STAFF),
    "api.plan_preview": ("POST", "/api/plan/preview", {}, STAFF),
    "api.plan_apply": ("POST", "/api/plan/apply", {}, STAFF),
}


def test_every_endpoint_is_in_the_route_table(app):
    assert set(app.view_functions) - {"static"} == set(ROUTES)


def _denied(resp) -> bool:
    if resp.status_code in (401, 403):
        return True
    return resp.status_code == 302 and "/login?next=" in resp.headers.get("Location", "")


@pytest.fixture
def cases(live_app, work, people, db):
    token = new_tracking_token()
    store.store_tracking_token(db, token, work.ada_job_id, NOON + timedelta(days=1))
    db.commit()
    clients = {}
    for who in sorted(EVERYONE):
        client = live_app.test_client()
        clients[who] = (client, csrf_of(client) if who == ANON else login(client, who))
    names = {"ada_job": work.ada_job_id, "device": work.device_id, "token": token,
             "ada_tech": people.ada_technician_id}
    return clients, names


@pytest.mark.parametrize("endpoint", sorted(ROUTES))
def test_only_allowed_roles_get_through(cases, endpoint):
    clients, names = cases
    method, template, payload, allowed = ROUTES[endpoint]
    url = template.format(**names)
    outcome = {}
    for who, (client, token) in clients.items():
        kwargs = {"headers": {"X-CSRF-Token": token}}
        if payload is not None:
            kwargs["json"] = payload
        elif method == "POST":
            kwargs["data"] = {"csrf_token": token}
        resp = client.open(url, method=method, buffered=False, **kwargs)
        outcome[who] = not _denied(resp)
        resp.close()
    assert {who for who, through in outcome.items() if through} == allowed
