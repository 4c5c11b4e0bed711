"""Web bench: 200 technicians and 5 dispatcher consoles on SSE against gunicorn.

``python -m bench.web [--technicians 200] [--consoles 5] [--duration 30] [--workers 2]``
starts a private PostgreSQL (or uses FIELDOPS_DATABASE_URL), seeds one account and two
dispatched jobs per technician, serves the app with ``fieldops web`` (gunicorn, gthread) and
drives it over HTTP: each technician fetches its route (every 15 s, from a random start), posts a position
every 5 s and moves its first job en route, on site and completed. Prints one JSON line: latency
percentiles per request type, errors, and fan-out latency (status change sent -> received by
every console).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from fieldops.config import Settings
from fieldops.db.migrate import migrate
from fieldops.db.pool import connect, wait_ready
from fieldops.db.repo import catalog
from fieldops.domain import GeoPoint, Shift
from fieldops.runtime.postgres import LocalPostgres, free_port
from fieldops.service import jobs
from web import store
from web.security import hash_password
from web.sse_client import messages, open_stream

PASSWORD = "bench-password-1"
CENTRE = (48.137, 11.575)


class Client:
    """One keep-alive HTTP connection with the session cookie and CSRF token of one user."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""
        self.csrf = ""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        all_headers = {"Cookie": self.cookie, **(headers or {})}
        if method != "GET":
            all_headers["X-CSRF-Token"] = self.csrf
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        cookie = resp.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return resp.status, data

    def json(self, method: str, path: str, payload: object, **headers: str) -> tuple[int, bytes]:
        return self.request(method, path, json.dumps(payload).encode(),
                            {"Content-Type": "application/json", **headers})

    def login(self, username: str) -> None:
        _, page = self.request("GET", "/login")
        token = re.search(rb'name="csrf-token" content="([^"]+)"', page).group(1).decode()
        form = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrf_token": token})
        status, _ = self.request("POST", "/login", form.encode(),
                                 {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302:
            raise RuntimeError(f"login of {username} failed: HTTP {status}")
        _, page = self.request("GET", "/login")
        self.csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page).group(1).decode()


def seed(url: str, technicians: int, consoles: int, now: datetime, rng: random.Random) -> dict[int, list[int]]:
    """Technicians with accounts and two dispatched jobs each; returns technician id -> job ids."""
    encoded = hash_password(PASSWORD)
    plan: dict[int, list[int]] = {}
    with connect(url) as conn:
        for c in range(consoles):
            store.create_user(conn, f"dispatcher{c}", PASSWORD, "dispatcher", password_hash=encoded)
        for t in range(technicians):
            home = GeoPoint(CENTRE[0] + rng.uniform(-0.1, 0.1), CENTRE[1] + rng.uniform(-0.15, 0.15))
            tech = catalog.create_technician(conn, f"Tech {t}", ("mechanical",), home,
                                             Shift(dtime(0), dtime(23, 59), None, None, 0))
            store.create_user(conn, f"tech{t}", PASSWORD, "technician", tech.id, password_hash=encoded)
            plan[tech.id] = []
            for k in range(2):
                where = GeoPoint(CENTRE[0] + rng.uniform(-0.1, 0.1), CENTRE[1] + rng.uniform(-0.15, 0.15))
                customer = catalog.create_customer(conn, f"Customer {t}-{k}")
                site = catalog.create_site(conn, customer.id, f"Site {t}-{k}", f"Street {t}-{k}", where)
                job = jobs.create_job(conn, jobs.JobRequest(source="customer", type="inspection",
                                                            site_id=site.id, estimated_duration_s=1800),
                                      actor="bench", now=now)
                jobs.assign(conn, job.id, tech.id, now + timedelta(hours=1 + k), now=now)
                jobs.transition(conn, job.id, "dispatched", expected_version=None, actor="bench", now=now)
                plan[tech.id].append(job.id)
        conn.commit()
    return plan


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.sent: dict[tuple[int, str], float] = {}
        self.received: dict[tuple[int, str], list[float]] = defaultdict(list)

    def timed(self, kind: str, call, ok=(200, 201)) -> int:
        started = time.perf_counter()
        try:
            status, _ = call()
        except Exception:
            status = 0
        elapsed = (time.perf_counter() - started) * 1000
        with self.lock:
            self.latency[kind].append(elapsed)
            if status not in ok:
                self.errors[kind] += 1
        return status


def technician(client: Client, tech_id: int, job_ids: list[int], rec: Recorder, deadline: dict,
               rng: random.Random, ready: threading.Barrier) -> None:
    ready.wait()
    route = f"/api/technicians/{tech_id}/route"
    steps = [("en_route", {}), ("on_site", {}), ("completed", {"finding": "other", "note": "bench"})]
    next_step = time.monotonic() + rng.uniform(1, 8)
    next_position = time.monotonic() + rng.uniform(0, 5)
    next_route = time.monotonic() + rng.uniform(0, 15)  # pages opened at different moments
    lat, lon = CENTRE[0] + rng.uniform(-0.1, 0.1), CENTRE[1] + rng.uniform(-0.1, 0.1)
    while time.monotonic() < deadline["at"]:
        now = time.monotonic()
        if now >= next_position:
            lat, lon = lat + rng.uniform(-0.001, 0.001), lon + rng.uniform(-0.001, 0.001)
            position = {"lat": lat, "lon": lon}
            rec.timed("position", lambda p=position: client.json(
                "POST", "/api/positions", p, **{"Idempotency-Key": secrets.token_hex(12)}))
            next_position = now + 5
        if steps and now >= next_step:
            to_status, extra = steps.pop(0)
            key = (job_ids[0], to_status)
            with rec.lock:
                rec.sent[key] = time.time()
            change = {"to_status": to_status, **extra}
            rec.timed("status", lambda c=change: client.json(
                "POST", f"/api/jobs/{job_ids[0]}/transitions", c,
                **{"Idempotency-Key": secrets.token_hex(12)}))
            next_step = now + rng.uniform(3, 8)
        if now >= next_route:
            rec.timed("route", lambda: client.request("GET", route))
            next_route = now + 15
        wake = min(next_position, next_route, next_step if steps else deadline["at"], deadline["at"])
        time.sleep(max(0.0, wake - time.monotonic()))


def console(client: Client, rec: Recorder, deadline: dict, ready: threading.Barrier) -> None:
    resp = open_stream("127.0.0.1", client.port, "/events", cookie=client.cookie, timeout_s=5)
    ready.wait()
    try:
        for message in messages(resp):
            if message.event == "job.status":
                payload = message.data["payload"]
                with rec.lock:
                    rec.received[(payload["job_id"], payload["to"])].append(time.time())
            if time.monotonic() > deadline["at"] + 2:
                return
    except (TimeoutError, OSError):
        return


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 99
    return {"n": len(ordered), "p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1),
            "p99_ms": round(cuts[98], 1), "max_ms": round(ordered[-1], 1)}


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    cluster = None
    base = os.environ.get("FIELDOPS_DATABASE_URL")
    tmp = tempfile.TemporaryDirectory(prefix="bench-web-")
    if not base:
        cluster = LocalPostgres(Path(tmp.name) / "pg", fast_unsafe=True).start()
        base = cluster.url
    dbname = f"bench_web_{os.getpid()}"
    with connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    url = base.rsplit("/", 1)[0] + "/" + dbname
    server = None
    try:
        wait_ready(url)
        migrate(url, Settings(env="test"))
        now = datetime.now(UTC)
        plan = seed(url, args.technicians, args.consoles, now, rng)
        port = free_port()
        env = {**os.environ, "FIELDOPS_DATABASE_URL": url, "FIELDOPS_ENV": "test",
               "FIELDOPS_SECRET_KEY": secrets.token_hex(32), "FIELDOPS_DB_POOL_MAX": str(args.pool),
               "FIELDOPS_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen(
            [sys.executable, "-m", "fieldops.cli", "web", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--threads", str(args.threads)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                Client(port).request("GET", "/api/openapi.json")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        from concurrent.futures import ThreadPoolExecutor

        def signed_in(name: str) -> Client:
            client = Client(port)
            client.login(name)
            return client

        login_started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            console_clients = list(pool.map(signed_in, [f"dispatcher{c}" for c in range(args.consoles)]))
            tech_clients = list(pool.map(signed_in, [f"tech{i}" for i in range(args.technicians)]))
        login_s = time.monotonic() - login_started
        rec = Recorder()
        ready = threading.Barrier(args.technicians + args.consoles + 1)
        deadline = {"at": float("inf")}  # set once everyone is signed in
        consoles = [threading.Thread(target=console, args=(c, rec, deadline, ready), daemon=True)
                    for c in console_clients]
        techs = [threading.Thread(target=technician, daemon=True, args=(
                    tech_clients[i], tech_id, job_ids, rec, deadline, random.Random(args.seed * 1000 + i), ready))
                 for i, (tech_id, job_ids) in enumerate(sorted(plan.items()))]
        for t in consoles + techs:
            t.start()
        ready.wait(timeout=60)
        t0 = time.monotonic()
        deadline["at"] = t0 + args.duration
        for t in techs:
            t.join(timeout=args.duration + 60)
        elapsed = time.monotonic() - t0
        time.sleep(2.0)  # let the last events reach the consoles
        fanout, missed = [], 0
        with rec.lock:
            for key, sent in rec.sent.items():
                got = rec.received.get(key, [])
                if len(got) < args.consoles:
                    missed += 1
                    continue
                fanout.append((max(got) - sent) * 1000)
        return {
            "bench": "web", "technicians": args.technicians, "consoles": args.consoles,
            "gunicorn": {"workers": args.workers, "threads": args.threads},
            "duration_s": round(elapsed, 1), "sign_in_s": round(login_s, 1),
            "requests": {kind: percentiles(v) for kind, v in sorted(rec.latency.items())},
            "requests_per_s": round(sum(len(v) for v in rec.latency.values()) / max(elapsed, 1e-9), 1),
            "errors": dict(rec.errors), "error_count": sum(rec.errors.values()),
            "fanout_ms": percentiles(fanout), "status_changes_missed_by_a_console": missed,
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if cluster is not None:
            cluster.stop("immediate")
        tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--technicians", type=int, default=200)
    parser.add_argument("--consoles", type=int, default=5)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load after sign-in")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--pool", type=int, default=16, help="database connections per worker")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
