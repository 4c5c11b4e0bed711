from datetime import UTC, datetime, timedelta

from fieldops.clock import Clock


def test_accelerated_clock_runs_speed_times_faster():
    real = datetime(2026, 1, 1, tzinfo=UTC)
    sim = datetime(2025, 6, 1, tzinfo=UTC)
    clock = Clock(speed=60.0, real_anchor=real, sim_anchor=sim)
    shared = Clock.from_settings(60.0, clock.anchor_string())
    assert shared == clock
    now = clock.now()
    elapsed_real = datetime.now(UTC) - real
    assert abs((now - sim) - elapsed_real * 60) < timedelta(seconds=60)


def test_real_clock_without_anchor():
    assert abs(Clock().now() - datetime.now(UTC)) < timedelta(seconds=1)
