"""Real flows in headless Chromium against a live server (marker ``browser``)."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from fieldops.db.repo import catalog
from fieldops.domain import GeoPoint, StockKind
from fieldops.service import jobs, parts
from tests.web.conftest import NOON, PASSWORD, prediction
from web import store
from web.security import new_tracking_token

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 1000}
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (make system-deps)"),
]


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` on a threaded werkzeug server; yields its base URL. Its access log stays off for
    the session: a page's poll still being answered after its test ended would log into
    pytest's closed capture stream."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


@pytest.fixture
def base_url(live_app) -> Iterator[str]:
    with serving(live_app) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module; each test works in contexts of its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def browser(chromium):
    """The module's Chromium; the contexts (cookies, storage, pages) a test opens are closed after it."""
    yield chromium
    for context in chromium.contexts:
        context.close()


@pytest.fixture
def shoot(artifacts_dir):
    """``shoot(page, name)`` saves a screenshot to tests/artifacts and docs/screenshots."""

    def save(page, name: str) -> None:
        path = artifacts_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / path.name)

    return save


def sign_in(browser, base_url, username, viewport, **context_args):
    context = browser.new_context(viewport=viewport, base_url=base_url, **context_args)
    page = context.new_page()
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def test_technician_completes_a_job_on_a_phone(browser, base_url, work, people, db, shoot):
    van = catalog.create_stock_location(db, StockKind.VAN, "Ada's van", technician_id=people.ada_technician_id)
    catalog.set_stock(db, van.id, catalog.parts_by_sku(db)["BRG-1"].id, 2)
    db.commit()
    page = sign_in(browser, base_url, "ada", PHONE, geolocation={"latitude": 48.12, "longitude": 11.52},
                   permissions=["geolocation"])
    stop = page.locator(f"li.stop[data-job-id='{work.ada_job_id}']")
    stop.get_by_text("Plant A street 1, Munich").wait_for()
    shoot(page, "technician-route")
    stop.get_by_role("button", name="Start travel").click()
    stop.get_by_role("button", name="Arrived").click()
    stop.locator("select[name=finding]").select_option("fault_confirmed")
    stop.locator("select[name=part]").select_option("BRG-1")
    stop.locator("textarea[name=note]").fill("Replaced the bearing")
    shoot(page, "technician-complete-form")
    stop.get_by_role("button", name="Completed").click()
    stop.locator(".status", has_text="completed").wait_for()
    page.wait_for_function("() => JSON.parse(localStorage.getItem('fieldops.queue') || '[]').length === 0")
    shoot(page, "technician-done")
    assert jobs.get_job(db, work.ada_job_id).status == "completed"


def test_technician_collects_the_jobs_parts_at_the_warehouse(browser, base_url, work, people, db, shoot):
    bearing = catalog.parts_by_sku(db)["BRG-1"].id
    depot = catalog.create_stock_location(db, StockKind.WAREHOUSE, "North depot", GeoPoint(48.3, 11.6))
    catalog.set_stock(db, depot.id, bearing, 3)
    van = catalog.create_stock_location(db, StockKind.VAN, "Ada's van", technician_id=people.ada_technician_id)
    parts.reserve_for_job(db, work.ada_job_id, depot.id, actor="test", now=NOON)
    db.commit()
    page = sign_in(browser, base_url, "ada", PHONE)
    stop = page.locator(f"li.stop[data-job-id='{work.ada_job_id}']")
    stop.get_by_text("Collect at North depot: 1 × BRG-1").wait_for()
    shoot(page, "technician-pickup")
    stop.get_by_role("button", name="Collected").click()
    page.wait_for_function("() => JSON.parse(localStorage.getItem('fieldops.queue') || '[]').length === 0")
    stop.locator(".pickups").wait_for(state="detached")
    assert parts.reserved_for_job(db, work.ada_job_id) == {(van.id, "BRG-1"): 1}


def test_stop_address_opens_navigation_with_a_geo_link(browser, base_url, work):
    page = sign_in(browser, base_url, "ada", PHONE)
    href = page.locator(f"li.stop[data-job-id='{work.ada_job_id}'] .address").get_attribute("href")
    assert href.startswith("geo:48.")


def test_could_not_complete_needs_a_reason_and_records_it(browser, base_url, work, db):
    page = sign_in(browser, base_url, "ada", PHONE)
    stop = page.locator(f"li.stop[data-job-id='{work.ada_job_id}']")
    stop.get_by_role("button", name="Start travel").click()
    stop.get_by_role("button", name="Arrived").click()
    stop.get_by_role("button", name="Could not complete").click()
    stop.locator("textarea[placeholder='Why could it not be completed?']").fill("Customer not on site")
    stop.get_by_role("button", name="Could not complete").click()
    stop.locator(".status", has_text="unresolved").wait_for()
    page.wait_for_function("() => JSON.parse(localStorage.getItem('fieldops.queue') || '[]').length === 0")
    job = jobs.get_job(db, work.ada_job_id)
    assert (job.status, "Customer not on site" in (job.notes or "")) == ("unresolved", True)


def test_typed_notes_survive_a_live_plan_change(browser, base_url, work, people, db):
    page = sign_in(browser, base_url, "ada", PHONE)
    stop = page.locator(f"li.stop[data-job-id='{work.ada_job_id}']")
    stop.get_by_role("button", name="Start travel").click()
    stop.get_by_role("button", name="Arrived").click()
    page.wait_for_function("() => JSON.parse(localStorage.getItem('fieldops.queue') || '[]').length === 0")
    stop.locator("textarea[name=note]").fill("Bearing replaced, waiting for")
    jobs.assign(db, work.new_job_id, people.ada_technician_id, NOON.replace(hour=16), now=NOON)
    store.announce_plan_change(db, work.new_job_id, None, people.ada_technician_id, "assign")
    db.commit()
    page.locator("#notice", has_text="New stop").wait_for()
    assert stop.locator("textarea[name=note]").input_value() == "Bearing replaced, waiting for"


def test_dispatcher_override_reaches_technician_page_live(browser, base_url, work, people, shoot):
    tech = sign_in(browser, base_url, "ada", PHONE)
    tech.locator(f"li.stop[data-job-id='{work.ada_job_id}']").wait_for()
    console = sign_in(browser, base_url, "dora", DESKTOP)
    console.locator(f"#assign-job option[value='{work.new_job_id}']").wait_for(state="attached")
    console.select_option("#assign-job", str(work.new_job_id))
    console.select_option("#assign-tech", str(people.ada_technician_id))
    console.select_option("#assign-action", "assign")
    console.get_by_role("button", name="Apply").click()
    console.locator("#assign-message", has_text="Applied").wait_for()
    shoot(console, "dispatcher-console")
    notice = tech.locator("#notice", has_text="New stop: Plant C")
    notice.wait_for(timeout=5000)
    tech.locator(f"li.stop[data-job-id='{work.new_job_id}']").wait_for()
    shoot(tech, "technician-plan-changed")


def test_console_lists_jobs_at_risk_of_missing_their_sla(browser, base_url, work, db):
    db.execute("UPDATE jobs SET at_risk = true WHERE id = %s", (work.bob_job_id,))
    db.commit()
    console = sign_in(browser, base_url, "dora", DESKTOP)
    console.locator("#at-risk li", has_text=f"Job {work.bob_job_id}").wait_for()
    assert console.locator("#at-risk li").count() == 1


def test_console_map_follows_a_technicians_position_live(browser, base_url, live_app, work, people):
    from tests.web.conftest import login

    console = sign_in(browser, base_url, "dora", DESKTOP)
    marker = f"#map path.technician-{people.ada_technician_id}"
    console.locator(marker).wait_for()
    console.wait_for_load_state("networkidle")
    before = console.locator(marker).get_attribute("d")
    phone = live_app.test_client()
    token = login(phone, "ada")
    phone.post("/api/positions", json={"lat": 48.18, "lon": 11.62}, headers={"X-CSRF-Token": token})
    console.wait_for_function("([sel, d]) => document.querySelector(sel).getAttribute('d') !== d",
                              arg=[marker, before])


def test_console_live_updates_resume_after_the_event_stream_answered_503(browser, base_url, live_app, work, people):
    from flask import request

    from tests.web.conftest import login

    streams = []

    @live_app.before_request
    def database_down_for_the_first_two_streams():
        if request.path == "/events":
            streams.append(request.args.get("last_event_id"))
            if len(streams) <= 2:
                return {"error": "database unavailable, retry shortly"}, 503, {"Retry-After": "5"}
        return None

    console = sign_in(browser, base_url, "dora", DESKTOP)
    marker = f"#map path.technician-{people.ada_technician_id}"
    console.locator(marker).wait_for()
    hub = live_app.extensions["fieldops"].hub
    deadline = time.monotonic() + 20  # the page waits 1 s, then 2 s, before its third try
    while hub.subscriber_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(streams) == 3 and hub.subscriber_count() == 1
    before = console.locator(marker).get_attribute("d")
    phone = live_app.test_client()
    token = login(phone, "ada")
    phone.post("/api/positions", json={"lat": 48.18, "lon": 11.62}, headers={"X-CSRF-Token": token})
    console.wait_for_function("([sel, d]) => document.querySelector(sel).getAttribute('d') !== d",
                              arg=[marker, before])


def test_dispatcher_applies_the_previewed_replan(browser, base_url, work, people, db, shoot):
    depot = catalog.create_stock_location(db, StockKind.WAREHOUSE, "Depot", GeoPoint(48.14, 11.56))
    catalog.set_stock(db, depot.id, catalog.parts_by_sku(db)["BRG-1"].id, 10)
    db.commit()
    console = sign_in(browser, base_url, "dora", DESKTOP)
    console.get_by_role("button", name="Re-plan preview").click()
    console.locator("#replan-result li", has_text=f"job {work.new_job_id} (Plant C) would go to").wait_for()
    shoot(console, "dispatcher-replan-preview")
    console.get_by_role("button", name="Apply re-plan").click()
    console.locator("#replan-result", has_text="Re-plan applied").wait_for()
    assert jobs.get_job(db, work.new_job_id).technician_id is not None


def test_dispatcher_sees_validation_message_for_unskilled_technician(browser, base_url, work, db):
    from tests import factories

    eve = factories.technician(db, "Eve", skills=("electrical",))
    db.commit()
    console = sign_in(browser, base_url, "dora", DESKTOP)
    _choose_override(console, work.new_job_id, eve.id, "assign")
    console.get_by_role("button", name="Apply").click()
    console.locator("#assign-message", has_text="lacks skill").wait_for()


def _choose_override(console, job_id, technician_id, action):
    console.locator(f"#assign-tech option[value='{technician_id}']").wait_for(state="attached")
    console.select_option("#assign-job", str(job_id))
    console.select_option("#assign-tech", str(technician_id))
    console.select_option("#assign-action", action)


def _override(db, job_id):
    """The standing override of ``job_id`` as (technician id, position)."""
    return db.execute("SELECT technician_id, position FROM dispatch_overrides WHERE job_id = %s",
                      (job_id,)).fetchone()


def test_dispatcher_moves_a_job_to_a_position_in_a_route(browser, base_url, work, people, db, shoot):
    console = sign_in(browser, base_url, "dora", DESKTOP)
    _choose_override(console, work.new_job_id, people.ada_technician_id, "move")
    console.fill("#assign-position", "1")
    shoot(console, "dispatcher-move-to-position")
    console.get_by_role("button", name="Apply").click()
    console.locator("#assign-message", has_text="to position 1").wait_for()
    assert _override(db, work.new_job_id) == (people.ada_technician_id, 0)


def test_dispatcher_drags_an_unassigned_job_to_the_end_of_a_timeline(browser, base_url, work, people, db):
    console = sign_in(browser, base_url, "dora", DESKTOP)
    job = console.locator(f"#unassigned li[data-job-id='{work.new_job_id}']")
    bar = console.locator(f"#timelines .row[data-technician-id='{people.bob_technician_id}'] .bar")
    bar.locator(".seg").wait_for()
    box = bar.bounding_box()
    # HTML5 drag events with one DataTransfer, as a drag gesture produces them (dropped near the end)
    carried = console.evaluate_handle("() => new DataTransfer()")
    job.dispatch_event("dragstart", {"dataTransfer": carried})
    bar.dispatch_event("dragover", {"dataTransfer": carried})
    bar.dispatch_event("drop", {"dataTransfer": carried, "clientX": box["x"] + box["width"] - 5,
                                "clientY": box["y"] + box["height"] / 2})
    console.locator("#assign-message", has_text="to position 2").wait_for()
    assert _override(db, work.new_job_id) == (people.bob_technician_id, 1)


def test_move_without_a_position_gets_a_message_naming_position(browser, base_url, work, people, db):
    console = sign_in(browser, base_url, "dora", DESKTOP)
    _choose_override(console, work.new_job_id, people.ada_technician_id, "move")
    console.get_by_role("button", name="Apply").click()
    console.locator("#assign-message", has_text="(position)").wait_for()
    assert db.execute("SELECT count(*) FROM dispatch_overrides").fetchone()[0] == 0


def test_forced_assignment_from_the_console_shows_its_warning(browser, base_url, work, db):
    from tests import factories

    eve = factories.technician(db, "Eve", skills=("electrical",))
    db.commit()
    console = sign_in(browser, base_url, "dora", DESKTOP)
    _choose_override(console, work.new_job_id, eve.id, "assign")
    console.check("#assign-force")
    console.get_by_role("button", name="Apply").click()
    console.locator("#assign-message", has_text="warning: technician").wait_for()


def test_customer_follows_tracking_link_and_leaves_feedback(browser, base_url, work, people, db, shoot):
    token = new_tracking_token()
    store.store_tracking_token(db, token, work.ada_job_id, NOON + timedelta(days=1))
    jobs.transition(db, work.ada_job_id, "en_route", expected_version=None, actor="t", now=NOON)
    store.record_position(db, people.ada_technician_id, 48.1234, 11.5432, NOON)
    db.commit()
    context = browser.new_context(viewport=PHONE, base_url=base_url)
    page = context.new_page()
    page.goto(f"/track/{token}")
    page.locator("#steps li.current", has_text="On the way").wait_for()
    page.get_by_text("Your technician: Ada").wait_for()
    shoot(page, "tracking-on-the-way")
    jobs.transition(db, work.ada_job_id, "on_site", expected_version=None, actor="t", now=NOON)
    jobs.transition(db, work.ada_job_id, "completed", expected_version=None, actor="t", now=NOON,
                    finding="fault_confirmed")
    db.commit()
    page.locator("#steps li.current", has_text="Done").wait_for(timeout=5000)
    page.select_option("#rating", "4")
    page.fill("#comment", "Friendly and quick")
    page.get_by_role("button", name="Send feedback").click()
    page.get_by_text("Thank you for your feedback.").wait_for()
    shoot(page, "tracking-feedback")
    assert db.execute("SELECT rating, comment FROM feedback").fetchone() == (4, "Friendly and quick")


def test_technician_cannot_open_another_technicians_job(browser, base_url, work, shoot):
    page = sign_in(browser, base_url, "ada", PHONE)
    response = page.goto(f"/tech/jobs/{work.bob_job_id}")
    assert response.status == 403
    page.get_by_text("This job is not assigned to you.").wait_for()
    shoot(page, "technician-forbidden")


def _telemetry(db, device_id, hours):
    import math

    from fieldops.db.repo.telemetry import TelemetryWriter

    writer = TelemetryWriter(db)
    start = NOON - timedelta(hours=hours)
    rows = [(device_id, start + timedelta(minutes=10 * i), i,
             [60 + 5 * math.sin(i / 12), 2 + i / 100, 30.0]) for i in range(hours * 6)]
    writer.write(rows)
    db.commit()


def test_dispatcher_device_page_charts_hourly_telemetry(browser, base_url, work, db, shoot):
    _telemetry(db, work.device_id, 48)
    page = sign_in(browser, base_url, "dora", DESKTOP)
    page.goto(f"/console/devices/{work.device_id}")
    page.locator("#metric option").first.wait_for(state="attached")
    page.locator("#history li").first.wait_for()
    page.wait_for_load_state("networkidle")
    shoot(page, "dispatcher-device")
    drawn = page.evaluate("() => document.getElementById('chart').getContext('2d')"
                          ".getImageData(0, 0, 900, 260).data.some((v, i) => i % 4 === 3 && v > 0)")
    assert drawn


def test_device_page_shows_risk_history_with_explanation(browser, base_url, work, db):
    prediction(db, work.device_id, 0.7, NOON)
    page = sign_in(browser, base_url, "dora", DESKTOP)
    page.goto(f"/console/devices/{work.device_id}")
    page.locator("#risk li", has_text="failure risk 70%").wait_for()
    assert "vibration up 80%" in page.locator("#risk li").first.inner_text()


def test_technician_page_sends_the_browsers_position(browser, base_url, people, db):
    page = sign_in(browser, base_url, "ada", PHONE, geolocation={"latitude": 48.125, "longitude": 11.525},
                   permissions=["geolocation"])
    page.locator("#stops").wait_for(state="attached")
    row = None
    for _ in range(100):  # the watch fires once the page is up; give it up to 10 s
        row = db.execute("SELECT last_lat, last_lon FROM technicians WHERE id = %s",
                         (people.ada_technician_id,)).fetchone()
        if row[0] is not None:
            break
        page.wait_for_timeout(100)
    assert row == (48.125, 11.525)


def test_update_made_offline_is_queued_and_sent_once_back_online(browser, base_url, work, db, shoot):
    page = sign_in(browser, base_url, "ada", PHONE)
    stop = page.locator(f"li.stop[data-job-id='{work.ada_job_id}']")
    stop.get_by_role("button", name="Start travel").wait_for()
    page.context.set_offline(True)
    stop.get_by_role("button", name="Start travel").click()
    page.locator("#queue-state", has_text="1 update(s) waiting").wait_for()
    shoot(page, "technician-offline-queue")
    page.context.set_offline(False)
    page.evaluate("() => fo.queue.flush()")
    page.wait_for_function("() => JSON.parse(localStorage.getItem('fieldops.queue') || '[]').length === 0")
    assert [e.to_status for e in jobs.job_events(db, work.ada_job_id)].count("en_route") == 1


UNREACHABLE_TILES = "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png"  # nothing listens on port 9


def test_map_shows_stops_and_position_when_tiles_cannot_load(browser, web_settings, work, people, shoot):
    from tests.web.conftest import clock, close_promptly
    from web.app import create_app

    app = create_app(replace(web_settings, map_tile_url=UNREACHABLE_TILES), clock=clock())
    try:
        with serving(app) as url:
            page = sign_in(browser, url, "ada", PHONE, geolocation={"latitude": 48.12, "longitude": 11.52},
                           permissions=["geolocation"])
            page.locator("#map .leaflet-tooltip", has_text="1").first.wait_for()
            # one circle for the stop and one for the technician's own position
            page.wait_for_function("() => document.querySelectorAll('#map path.leaflet-interactive').length === 2")
            tile = page.locator("#map img.leaflet-tile").first.get_attribute("src")
            shoot(page, "technician-map-without-tiles")
    finally:
        close_promptly(app)
    assert tile.startswith("http://127.0.0.1:9/tiles/")
