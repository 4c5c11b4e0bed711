"""The technicians' phones over HTTP: sign in through the login form, then the JSON API.

Each technician has a session of its own (cookie jar + CSRF token from the page's meta tag).
State changes carry an ``Idempotency-Key`` and are retried with the same key on transient
failures (no connection, timeouts, 429 and 5xx answers), so a retried update is applied once. An
expired session signs in again. 4xx answers become the service layer's errors, which the
simulator handles as "the job changed under me". What the phone cannot know (the device's real
state, the van's shelves) comes from :class:`simulators.technicians.SimWorld`.

Scheduled jobs are not yet released to the phone; with ``dispatcher`` credentials a small
dispatcher desk releases a technician's next scheduled job when that technician asks for work,
as a person at the console would; without them the technician waits for a human dispatcher.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fieldops.domain import GeoPoint, JobStatus, PartQuantity, Technician
from fieldops.service.errors import ConflictError, NotFoundError, ServiceError, TransitionError
from fieldops.service.parts import Pickup, group_pickups
from simulators.technicians import ROUTE_STATUSES, SignInError, SimWorld, Stop, route_order

log = logging.getLogger(__name__)

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
TRANSIENT_STATUS = frozenset({429})  # and every 5xx
LOGIN_TRANSIENT_STATUS = frozenset({502, 503, 504})  # 429 at sign-in is the rate limit: give up
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
ERROR_BY_STATUS = {404: NotFoundError, 409: ConflictError}


class WebUnavailable(OSError):
    """The web API did not answer (or kept failing transiently) after every retry."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


class _LoopbackSecurePolicy(http.cookiejar.DefaultCookiePolicy):
    """Send Secure cookies to loopback over plain HTTP, as browsers do for localhost."""

    def return_ok_secure(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        host = urllib.parse.urlsplit(request.get_full_url()).hostname
        return host in LOOPBACK or super().return_ok_secure(cookie, request)


class WebSession:
    """One signed-in user: cookies, the CSRF token, JSON requests with retries."""

    def __init__(self, base_url: str, credentials: Credentials, *, timeout_s: float = 10.0,
                 attempts: int = 5, backoff_s: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s
        jar = http.cookiejar.CookieJar(policy=_LoopbackSecurePolicy())
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.csrf: str | None = None
        self.me: dict[str, Any] | None = None

    def _open(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with self._opener.open(request, timeout=self.timeout_s) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _exchange(self, method: str, path: str, data: bytes | None = None,
                  headers: dict[str, str] | None = None, transient: frozenset[int] = TRANSIENT_STATUS,
                  ) -> tuple[int, bytes]:
        """One request, sent again (unchanged) while there is no answer or a transient status."""
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                status, raw = self._open(urllib.request.Request(self.base_url + path, data=data, method=method,
                                                                headers=headers or {}))
            except OSError as exc:  # refused, reset, timed out
                problem = f"{method} {path}: {exc}"
            else:
                if status not in transient and status < 500:
                    return status, raw
                problem = f"{method} {path}: HTTP {status}"
            if attempt < self.attempts:
                log.info("%s; retry %d in %.1fs", problem, attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise WebUnavailable(f"{problem} (after {self.attempts} attempts)")

    def _page_csrf(self) -> str:
        status, page = self._exchange("GET", "/login")
        found = CSRF_META.search(page.decode(errors="replace"))
        if status != 200 or found is None:
            raise WebUnavailable(f"GET /login answered {status} without a CSRF token")
        return found.group(1)

    def sign_in(self) -> dict[str, Any]:
        """Post the login form like a browser; return ``/api/me``."""
        form = urllib.parse.urlencode({"username": self.credentials.username,
                                       "password": self.credentials.password,
                                       "csrf_token": self._page_csrf()}).encode()
        status, _ = self._exchange("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"},
                                   transient=LOGIN_TRANSIENT_STATUS)
        if status != 200:  # a good sign-in redirects to the home page, which is followed
            raise SignInError(f"{self.credentials.username}: sign-in refused (HTTP {status})")
        self.csrf = self._page_csrf()  # a new session, a new token
        self.me = self.request("GET", "/api/me")
        log.info("%s signed in to %s", self.credentials.username, self.base_url)
        return self.me

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None, *,
                idempotency_key: str | None = None) -> Any:
        """JSON request; transient failures are retried (same key), an expired session signs in again."""
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        status, raw = self._exchange(method, path, data, self._with_csrf(method, headers))
        if status == 401 or (status == 403 and b"CSRF" in raw):  # the session expired: sign in, once
            self.sign_in()
            status, raw = self._exchange(method, path, data, self._with_csrf(method, headers))
        if status >= 400:
            raise _api_error(status, raw)
        return json.loads(raw) if raw else None

    def _with_csrf(self, method: str, headers: dict[str, str]) -> dict[str, str]:
        return headers if method == "GET" else {**headers, "X-CSRF-Token": self.csrf or ""}


def _api_error(status: int, raw: bytes) -> ServiceError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    field, message = body.get("field") or "request", body.get("error") or f"HTTP {status}"
    if status == 409:
        cls = ConflictError if field == "version" else TransitionError
    else:
        cls = ERROR_BY_STATUS.get(status, ServiceError)
    return cls(field, message)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def stop_of(job: dict[str, Any]) -> Stop:
    """A route stop from the API's job view."""
    return Stop(job["id"], job["version"], JobStatus(job["status"]), job["device_id"],
                GeoPoint(job["lat"], job["lon"]), _time(job["planned_arrival"]),
                job["estimated_duration_s"], job["failure_mode"], (), job["type"] == "preventive",
                pickups_of(job.get("pickups") or []))


def pickups_of(items: list[dict[str, Any]]) -> tuple[Pickup, ...]:
    """The job view's pickup items (one per part and warehouse), one ``Pickup`` per warehouse."""
    return tuple(group_pickups((it["location_id"], it["location"], it["lat"], it["lon"], it["sku"],
                                it["quantity"]) for it in items))


class WebJobsClient(SimWorld):
    """:class:`simulators.technicians.JobsClient` over the web API, one session per technician."""

    def __init__(self, base_url: str, conninfo: str, password: str, *, username_format: str = "tech{id}",
                 dispatcher: Credentials | None = None, attempts: int = 5, backoff_s: float = 0.5) -> None:
        super().__init__(conninfo)
        self.base_url, self.password, self.username_format = base_url, password, username_format
        self._options = {"attempts": attempts, "backoff_s": backoff_s}
        self._sessions: dict[int, WebSession] = {}
        self._desk = WebSession(base_url, dispatcher, **self._options) if dispatcher else None
        self._technicians = {t.id: t for t in self.technicians()}

    def _session(self, technician_id: int) -> WebSession:
        if technician_id not in self._sessions:
            credentials = Credentials(self.username_format.format(id=technician_id), self.password)
            self._sessions[technician_id] = WebSession(self.base_url, credentials, **self._options)
        return self._sessions[technician_id]

    def sign_in(self, technician_id: int) -> Technician:
        me = self._session(technician_id).sign_in()
        if me.get("technician_id") != technician_id:
            raise SignInError(f"technician_id: account {me.get('username')} is not technician {technician_id}")
        return self._technicians[technician_id]

    def route(self, technician_id: int, day: date) -> list[Stop]:
        found = self._session(technician_id).request("GET", f"/api/technicians/{technician_id}/route")
        statuses = ROUTE_STATUSES if self._desk else tuple(s for s in ROUTE_STATUSES if s is not JobStatus.SCHEDULED)
        stops = [stop_of(j) for j in found["stops"] if j["status"] in statuses]
        return sorted(stops, key=route_order)

    def post_position(self, technician_id: int, at: datetime, where: GeoPoint) -> None:
        self._session(technician_id).request("POST", "/api/positions", {"lat": where.lat, "lon": where.lon},
                                             idempotency_key=uuid.uuid4().hex)

    def collect_parts(self, technician_id: int, stop: Stop, pickup: Pickup, at: datetime) -> list[PartQuantity]:
        found = self._session(technician_id).request(
            "POST", f"/api/jobs/{stop.job_id}/pickup", {"location_id": pickup.location_id},
            idempotency_key=uuid.uuid4().hex)
        return [PartQuantity(p["sku"], p["quantity"]) for p in found["collected"]]

    def _release(self, stop: Stop) -> Stop:
        if self._desk.csrf is None:
            self._desk.sign_in()
        job = self._desk.request("POST", "/api/overrides", {"action": "release", "job_id": stop.job_id},
                                 idempotency_key=uuid.uuid4().hex)
        return _updated(stop, job)

    def change_status(self, technician_id: int, stop: Stop, to: JobStatus, at: datetime, where: GeoPoint,
                      *, finding: str | None = None, finding_mode: str | None = None,
                      parts_used: tuple[PartQuantity, ...] = (), note: str | None = None) -> Stop:
        """Post the transition with a fresh ``Idempotency-Key``; a stale version is reloaded once.

        ``finding_mode`` is sent and, when it differs from the job's failure mode, also written
        into the note: the API (web/api.py) does not read ``finding_mode`` yet and records the
        job's failure mode for a confirmed fault.
        """
        if to is JobStatus.DISPATCHED and self._desk is not None:
            return self._release(stop)
        session = self._session(technician_id)
        if finding_mode and finding_mode != stop.failure_mode:
            note = f"{note}; found {finding_mode}" if note else f"found {finding_mode}"
        body: dict[str, Any] = {"to_status": to.value, "expected_version": stop.version,
                                "lat": where.lat, "lon": where.lon, "note": note, "finding": finding,
                                "finding_mode": finding_mode,
                                "parts_used": [{"sku": p.sku, "quantity": p.quantity} for p in parts_used]}
        try:
            return self._transition(session, stop, body)
        except ConflictError:
            # Re-planned meanwhile, or our own update landed but its answer was lost: reload.
            current = stop_of(session.request("GET", f"/api/jobs/{stop.job_id}"))
            if current.status is to:
                return current
            if current.status != stop.status:
                raise
            body["expected_version"] = current.version
            return self._transition(session, stop, body)

    @staticmethod
    def _transition(session: WebSession, stop: Stop, body: dict[str, Any]) -> Stop:
        job = session.request("POST", f"/api/jobs/{stop.job_id}/transitions", body,
                              idempotency_key=uuid.uuid4().hex)
        return _updated(stop, job)


def _updated(stop: Stop, job: dict[str, Any]) -> Stop:
    return Stop(job["id"], job["version"], JobStatus(job["status"]), stop.device_id, stop.location,
                _time(job["planned_arrival"]), stop.estimated_duration_s, stop.failure_mode,
                stop.required_parts, stop.preventive, stop.pickups)
