"""What ``fieldops up`` finds prepared: devices, history, an active model."""

from fieldops.db.repo import prepared, telemetry
from tests import factories
from tests.factories import T0


def _model(db, *, active: bool) -> None:
    db.execute("INSERT INTO model_registry (estimator, horizon_h, artifact, sha256, active) "
               "VALUES ('random_forest', 72, '\\x00', repeat('0', 64), %s)", (active,))


def test_an_empty_database_has_no_devices_history_or_active_model(db):
    assert (prepared.has_devices(db), prepared.has_telemetry(db), prepared.has_active_model(db)) == (
        False, False, False)


def test_one_device_is_devices(db):
    factories.device(db)
    assert prepared.has_devices(db)


def test_one_reading_is_history(db):
    pump = factories.device(db)
    telemetry.TelemetryWriter(db).write([(pump.id, T0, 0, [20.0, 1.0, None])])
    assert prepared.has_telemetry(db)


def test_an_inactive_model_is_not_an_active_model(db):
    _model(db, active=False)
    assert not prepared.has_active_model(db)


def test_an_active_model_is_an_active_model(db):
    _model(db, active=True)
    assert prepared.has_active_model(db)


def test_settling_marks_only_unhandled_events_of_the_code_handled(db):
    from datetime import timedelta

    from fieldops.db.repo import prepared
    from tests import factories
    from tests.factories import T0

    dev = factories.device(db)
    for k, (code, handled) in enumerate((("offline", None), ("offline", T0), ("E42", None))):
        db.execute("INSERT INTO device_events (device_id, ts, severity, code, handled_at) VALUES (%s, %s, 'fault', %s, %s)",
                   (dev.id, T0 - timedelta(minutes=k), code, handled))
    assert prepared.settle_unhandled_events(db, "offline", T0 + timedelta(hours=1)) == 1
    rows = db.execute("SELECT code, handled_at FROM device_events ORDER BY id").fetchall()
    assert rows == [("offline", T0 + timedelta(hours=1)), ("offline", T0), ("E42", None)]
