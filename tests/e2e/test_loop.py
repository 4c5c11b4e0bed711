"""End to end: every process of the demo running together on a fresh database (see conftest).

The tests share one running system and observe it through the database, the web API and the
processes' output. The last test stops the fleet, so it stays last in the file.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta

import psycopg
import pytest

from fieldops.domain import JobSource
from fieldops.service import jobs, kpis
from simulators.web_client import Credentials, WebSession
from tests.e2e.conftest import STARTED_AT, System

# the first test also pays for the module's preparation (seed, history, training)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _mode_catalogue(system: System, model: str, mode: str) -> tuple[str, dict[str, int]]:
    """(skill, {sku: quantity}) of a failure mode in the catalogue."""
    rows = system.query(
        "SELECT fm.skill, p.sku, fmp.quantity FROM failure_modes fm JOIN device_models m ON m.id = fm.model_id "
        "LEFT JOIN failure_mode_parts fmp ON fmp.failure_mode_id = fm.id LEFT JOIN parts p ON p.id = fmp.part_id "
        "WHERE m.code = %s AND fm.code = %s", (model, mode))
    assert rows, f"{model} has no failure mode {mode!r} in the catalogue"
    return rows[0][0], {sku: qty for _, sku, qty in rows if sku}


def _job_parts(system: System, job_id: int) -> dict[str, int]:
    return dict(system.query(
        "SELECT p.sku, jp.quantity FROM job_parts jp JOIN parts p ON p.id = jp.part_id WHERE jp.job_id = %s",
        (job_id,)))


def _parts_used(system: System, job_id: int) -> dict[str, int]:
    return dict(system.query(
        "SELECT p.sku, sum(u.quantity)::int FROM job_parts_used u JOIN parts p ON p.id = u.part_id "
        "WHERE u.job_id = %s GROUP BY p.sku", (job_id,)))


def _failure(system: System, device_id: int):
    rows = system.query("SELECT mode, failed_at FROM simulator.failures WHERE device_id = %s AND source = 'fleet' "
                        "ORDER BY failed_at LIMIT 1", (device_id,))
    return rows[0] if rows else None


def test_dispatcher_override_survives_the_next_replans(system: System) -> None:
    with psycopg.connect(system.url) as conn:
        device_id, serial = conn.execute(
            "SELECT d.id, d.serial FROM devices d JOIN device_models m ON m.id = d.model_id "
            "WHERE m.code = 'elevator_drive' ORDER BY d.id LIMIT 1").fetchone()
        job = jobs.create_job(conn, jobs.JobRequest(source=JobSource.CUSTOMER, device_id=device_id,
                                                    failure_mode="door_operator_wear", priority=4,
                                                    explanation="doors slow to close (e2e override)"),
                              actor="customer:e2e", now=system.clock.now())
        conn.commit()
        qualified = [t for (t,) in conn.execute(
            "SELECT id FROM technicians WHERE %s = ANY(skills) ORDER BY id", ("elevator",)).fetchall()]
    assert len(qualified) >= 2, f"the seeded region needs two elevator technicians, has {qualified}"

    planned = system.eventually(
        f"job {job.id} on {serial} planned by the dispatch loop",
        lambda: system.query("SELECT technician_id FROM jobs WHERE id = %s AND technician_id IS NOT NULL",
                             (job.id,)),
        timeout_s=90, observed=lambda: system.jobs_of(device_id))
    chosen = next(t for t in qualified if t != planned[0][0])

    desk = WebSession(system.web_url, Credentials("dispatcher", system.demo_password))
    desk.sign_in()
    answer = desk.request("POST", "/api/overrides", {"action": "assign", "job_id": job.id, "technician_id": chosen})
    assert answer["technician_id"] == chosen, f"override answered {answer}"
    last_plan = system.query("SELECT coalesce(max(id), 0) FROM plans")[0][0]

    later = system.eventually(
        "two re-plans after the override",
        lambda: (lambda rows: rows if len(rows) >= 2 else None)(
            system.query("SELECT id, trigger FROM plans WHERE id > %s ORDER BY id", (last_plan,))),
        timeout_s=90, observed=lambda: system.query("SELECT id, trigger FROM plans WHERE id > %s", (last_plan,)))
    elsewhere = system.query(
        "SELECT plan_id, technician_id FROM plan_visits WHERE job_id = %s AND plan_id > %s AND technician_id <> %s",
        (job.id, last_plan, chosen))
    assert elsewhere == [], f"plans {[p for p, _ in later]} moved job {job.id} away from technician {chosen}"
    now_with = system.query("SELECT technician_id, status FROM jobs WHERE id = %s", (job.id,))[0]
    assert now_with[0] == chosen, f"job {job.id} is with {now_with}, the dispatcher chose {chosen}"


def test_sudden_failure_opens_a_reactive_job_served_within_its_sla(system: System) -> None:
    fault = system.sudden
    failed = system.eventually(f"{fault.serial} fails ({fault.mode})", lambda: _failure(system, fault.device_id),
                               timeout_s=90, observed=lambda: system.jobs_of(fault.device_id))
    assert failed[0] == fault.mode

    def reactive():
        return [j for j in system.jobs_of(fault.device_id) if j["source"] == "fault_event"]

    opened = system.eventually(f"a reactive job for the fault of {fault.serial}", reactive, timeout_s=60,
                               observed=lambda: system.jobs_of(fault.device_id))[0]
    assert opened["failure_mode"] == fault.mode, f"reactive job names the wrong mode: {opened}"

    done = system.eventually(
        f"reactive job {opened['id']} completed",
        lambda: [j for j in system.jobs_of(fault.device_id) if j["id"] == opened["id"] and j["completed_at"]],
        timeout_s=180, observed=lambda: system.jobs_of(fault.device_id))[0]
    assert done["status"] == "completed", f"not completed: {done}"
    assert done["arrived_at"] <= done["response_due"], f"arrived after the response deadline: {done}"
    assert done["completed_at"] <= done["resolution_due"], f"completed after the resolution deadline: {done}"
    assert done["response_breached_at"] is None and done["resolution_breached_at"] is None, done
    # restored by this job, or by a technician who found the failure on another job there first
    system.eventually(
        f"{fault.serial} restored",
        lambda: system.query("SELECT job_id FROM simulator.repairs WHERE device_id = %s AND restored_mode = %s "
                             "AND ts >= %s", (fault.device_id, fault.mode, failed[1])),
        timeout_s=30, observed=lambda: system.jobs_of(fault.device_id))


def test_predicted_fault_is_fixed_before_it_fails_and_counts_in_the_kpis(system: System) -> None:
    fault = system.predicted
    parts = _mode_catalogue(system, fault.model, fault.mode)[1]

    def predictions():
        return system.query("SELECT scored_at, p_fail, failure_mode, job_id FROM predictions "
                            "WHERE device_id = %s ORDER BY scored_at", (fault.device_id,))

    def repaired():
        return system.query(
            "SELECT r.job_id FROM simulator.repairs r JOIN jobs j ON j.id = r.job_id WHERE r.device_id = %s "
            "AND r.restored_mode = %s AND j.created_at >= %s ORDER BY r.ts LIMIT 1",
            (fault.device_id, fault.mode, STARTED_AT))

    # The first job that repairs the injected fault must be a proactive one (the model may open
    # several on the device, one per mode it suspects).
    repair_job = system.eventually(f"{fault.serial} repaired ({fault.mode} injected)", repaired, timeout_s=240,
                                   observed=lambda: (system.jobs_of(fault.device_id), predictions()[-3:]))[0][0]
    job = next(j for j in system.jobs_of(fault.device_id) if j["id"] == repair_job)
    assert job["source"] == "prediction", (
        f"{fault.serial} was repaired by a {job['source']} job, not a proactive one: {system.jobs_of(fault.device_id)}; "
        f"latest predictions {predictions()[-3:]}")
    assert (job["status"], job["finding"], job["finding_mode"]) == ("completed", "fault_confirmed", fault.mode), job
    failure = _failure(system, fault.device_id)
    assert failure is None or job["created_at"] < failure[1], f"job {job} opened after the failure {failure}"

    skill, needs = _mode_catalogue(system, fault.model, job["failure_mode"])
    assert job["required_skills"] == [skill], f"job {job} should need {skill} for {job['failure_mode']}"
    assert _job_parts(system, job["id"]) == needs, f"job parts {_job_parts(system, job['id'])}, needs {needs}"
    assert system.query("SELECT 1 FROM plan_visits WHERE job_id = %s LIMIT 1", (job["id"],)), \
        f"job {job['id']} was never in a plan"
    assert _parts_used(system, job["id"]) == parts, f"fitted {_parts_used(system, job['id'])}, needs {parts}"

    with psycopg.connect(system.url) as conn:
        row = kpis.kpis(conn, job["created_at"] - timedelta(days=1), system.clock.now() + timedelta(hours=1))[0]
    assert row.first_time_fix_rate and row.first_time_fix_rate > 0, f"no first-time fix in {row}"
    assert row.proactive_precision and row.proactive_precision > 0, f"no confirmed prediction in {row}"

    scored = [p for p in predictions() if p[0] <= job["created_at"]]
    model = system.query("SELECT version, metrics FROM model_registry WHERE active")
    assert scored and scored[-1][1] > scored[0][1], (
        f"the model's risk for {fault.serial} did not rise while {fault.mode} developed "
        f"(first {scored[0][:2]}, at job {job['id']} {scored[-1][:2]}; model {model})")


def test_the_first_model_records_the_data_rate_of_the_history_it_learned_from(system: System) -> None:
    from predict import registry

    with psycopg.connect(system.url) as conn:
        entry, model = registry.active(conn)
    assert model.readings_per_hour == 1.0, f"model v{entry.version}: {model.readings_per_hour}"  # hourly history


def test_every_reading_the_broker_acknowledged_is_stored(system: System) -> None:
    assert system.supervisor.stop_process("fleet") == 0, system.log_tail()
    lines = [line.split("] ", 1)[1] for line in system.log_path.read_text().splitlines()
             if line.startswith("[fleet") and "fleet_stopped" in line]
    assert lines, f"the fleet printed no final count\n{system.log_tail()}"
    published = json.loads(lines[-1])["fleet_stopped"]
    assert published["readings_acked"] > 0 and published["readings_acked"] == published["readings"], published
    assert published["readings_unrouted"] == 0, f"the broker had no subscriber for some readings: {published}"

    def stored() -> int:
        return system.query("SELECT count(*) FROM telemetry")[0][0] - system.readings_before

    system.eventually(f"{published['readings_acked']} readings stored",
                      lambda: stored() >= published["readings_acked"], timeout_s=60, observed=stored)
    with urllib.request.urlopen(f"http://127.0.0.1:{system.metrics_port}/metrics", timeout=10) as answer:
        counters = [line for line in answer.read().decode().splitlines()
                    if line.startswith(("ingest_readings_", "ingest_dead_letters"))]
    assert stored() == published["readings_acked"], f"stored {stored()}, published {published}, ingest {counters}"
