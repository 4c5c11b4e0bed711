import json
import subprocess
import sys
import threading
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fieldops.cli import main
from fieldops.db.repo import ingest as repo
from fieldops.runtime.mosquitto import LocalMosquitto, broker_user, share_with_broker
from fieldops.runtime.postgres import free_port
from ingest.broker_config import verify_password
from ingest.provision import (
    ServiceAccount,
    broker_files_writer,
    provision,
    write_broker_files_from_db,
)
from ingest.topics import Channel, topic
from tests import factories

INSTALLED = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def plant(db):
    factories.pump_model(db)
    site = factories.site(db)
    db.commit()
    return site


def test_new_devices_get_passwords_stored_only_as_hashes(db, plant):
    passwords = provision(db, ["p-1", "p-2"], model_code="pump", site_id=plant.id, installed_at=INSTALLED)
    hashes = repo.password_hashes(db)
    assert set(passwords) == {"p-1", "p-2"}
    assert all(verify_password(passwords[s], hashes[s]) for s in passwords)
    assert passwords["p-1"] not in hashes["p-1"]


def test_existing_password_is_kept_unless_rotated(db, plant):
    provision(db, ["p-1"], model_code="pump", site_id=plant.id, installed_at=INSTALLED)
    assert provision(db, ["p-1"]) == {}
    assert set(provision(db, ["p-1"], rotate=True)) == {"p-1"}


def test_unknown_device_without_model_is_an_error_naming_it(db):
    with pytest.raises(ValueError, match="device p-9 does not exist"):
        provision(db, ["p-9"])


def test_invalid_serial_is_refused(db):
    with pytest.raises(ValueError, match="serial"):
        provision(db, ["bad/serial"])


@pytest.fixture
def private_broker(db, plant, tmp_path):
    """A broker whose files come from this test's database: devices p-1 and p-2 plus ingest."""
    passwords = provision(db, ["p-1", "p-2"], model_code="pump", site_id=plant.id, installed_at=INSTALLED)
    db.commit()
    port = free_port()
    directory = tmp_path / "mosquitto"
    config = write_broker_files_from_db(db, directory, port=port, run_as=broker_user(),
                                        services=[ServiceAccount("ingest", "ingest-pw")])
    for path in [directory, directory / "data", *directory.iterdir()]:
        share_with_broker(path)
    broker = LocalMosquitto(config, port).start()
    yield port, passwords
    broker.stop()


def _reason_code(client, callback: str, action) -> object:
    """Run ``action`` and return the reason code the named callback reports (rc is its 4th argument)."""
    got = []
    done = threading.Event()
    setattr(client, callback, lambda *args: (got.append(args[3]), done.set()))
    action()
    assert done.wait(10), f"no {callback}"
    return got[0]


def _connect(port, user, password):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password)
    rc = _reason_code(client, "on_connect", lambda: (client.connect("127.0.0.1", port), client.loop_start()))
    return client, rc


def _publish_reason(client, topic_name):
    return _reason_code(client, "on_publish", lambda: client.publish(topic_name, b"{}", qos=1))


def test_device_may_publish_under_its_own_prefix(private_broker):
    port, passwords = private_broker
    client, rc = _connect(port, "p-1", passwords["p-1"])
    try:
        assert not rc.is_failure
        assert not _publish_reason(client, topic("p-1", Channel.TELEMETRY)).is_failure
    finally:
        client.disconnect()
        client.loop_stop()


def test_device_may_not_publish_as_another_device(private_broker):
    port, passwords = private_broker
    client, _ = _connect(port, "p-1", passwords["p-1"])
    try:
        assert _publish_reason(client, topic("p-2", Channel.TELEMETRY)).getName() == "Not authorized"
    finally:
        client.disconnect()
        client.loop_stop()


def test_anonymous_clients_are_refused(private_broker):
    port, _ = private_broker
    client, rc = _connect(port, None, None)
    client.loop_stop()
    assert rc.is_failure


def test_wrong_password_is_refused(private_broker):
    port, _ = private_broker
    client, rc = _connect(port, "p-1", "wrong")
    client.loop_stop()
    assert rc.is_failure


def test_provision_command_writes_credentials_and_broker_files(db_url, db, plant, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_MQTT_PASSWORD", "ingest-pw")
    creds = tmp_path / "creds.json"
    code = main(["devices", "provision", "--count", "2", "--prefix", "c-", "--model", "pump",
                 "--site-id", str(plant.id), "--installed-at", "2025-01-01T00:00:00+00:00",
                 "--credentials", str(creds), "--broker-dir", str(tmp_path / "broker")])
    assert code == 0
    saved = json.loads(creds.read_text())
    passwd = (tmp_path / "broker" / "passwd").read_text()
    assert set(saved) == {"c-0001", "c-0002"}
    assert {line.split(":")[0] for line in passwd.splitlines()} == {"c-0001", "c-0002", "ingest"}
    assert json.loads(capsys.readouterr().out) == {"devices": 2, "new_passwords": 2}


def test_managed_broker_writer_takes_devices_from_the_database(db_url, db, plant, tmp_path):
    provision(db, ["p-1"], model_code="pump", site_id=plant.id, installed_at=INSTALLED)
    db.commit()
    write = broker_files_writer(db_url, [ServiceAccount("ingest", "pw"), ServiceAccount("operator", "pw", "readwrite")])
    config = write(tmp_path / "broker", 18830)
    users = {line.split(":")[0] for line in (tmp_path / "broker" / "passwd").read_text().splitlines()}
    assert users == {"p-1", "ingest", "operator"}
    assert "listener 18830 127.0.0.1" in config.read_text()


def _provision_cli(db_url, monkeypatch, plant, *extra):
    """``fieldops devices provision new-1`` (a new device at ``plant``) with ``extra`` options."""
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_MQTT_PASSWORD", "ingest-pw")
    return main(["devices", "provision", "new-1", "--model", "pump", "--site-id", str(plant.id),
                 "--installed-at", "2025-01-01T00:00:00+00:00", *extra])


def _device_count(db):
    db.rollback()
    return db.execute("SELECT count(*) FROM devices").fetchone()[0]


@pytest.mark.parametrize("pid", ["-1", "0", "1"])
def test_reload_pid_that_names_a_process_group_or_init_is_refused(pid, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["devices", "provision", "p-1", "--reload-pid", pid])
    assert exit_.value.code == 2
    assert "--reload-pid" in capsys.readouterr().err


def test_reload_pid_of_no_process_is_refused_before_any_device_is_created(db_url, db, plant, monkeypatch, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert _provision_cli(db_url, monkeypatch, plant, "--reload-pid", str(gone.pid)) == 2
    assert "no such process" in capsys.readouterr().err
    assert _device_count(db) == 0


def test_reload_pid_of_a_process_that_is_not_mosquitto_is_refused_before_any_device_is_created(
        db_url, db, plant, monkeypatch, capsys):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert _provision_cli(db_url, monkeypatch, plant, "--reload-pid", str(sleeper.pid)) == 2
        assert "not mosquitto" in capsys.readouterr().err
        assert _device_count(db) == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_reload_pid_of_a_process_that_is_not_mosquitto_is_not_signalled(db_url, plant, monkeypatch):
    sleeper = subprocess.Popen(["sleep", "60"])  # SIGHUP would end it
    try:
        _provision_cli(db_url, monkeypatch, plant, "--reload-pid", str(sleeper.pid))
        with pytest.raises(subprocess.TimeoutExpired):
            sleeper.wait(timeout=0.5)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_reload_pid_of_the_broker_reloads_it(db_url, plant, mqtt_broker, monkeypatch):
    assert _provision_cli(db_url, monkeypatch, plant, "--reload-pid", str(mqtt_broker.process.pid)) == 0
    assert mqtt_broker.process.running


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"p-1": 7}'])
def test_unusable_credentials_file_is_refused_before_any_device_is_created(
        db_url, db, plant, tmp_path, monkeypatch, capsys, content):
    creds = tmp_path / "creds.json"
    creds.write_text(content)
    assert _provision_cli(db_url, monkeypatch, plant, "--credentials", str(creds)) == 2
    assert str(creds) in capsys.readouterr().err
    assert _device_count(db) == 0
    assert creds.read_text() == content


def test_broker_dir_that_cannot_be_created_is_refused_before_any_device_is_created(
        db_url, db, plant, monkeypatch, capsys):
    assert _provision_cli(db_url, monkeypatch, plant, "--broker-dir", "/proc/nope") == 2
    assert "--broker-dir" in capsys.readouterr().err
    assert _device_count(db) == 0


def test_unknown_site_is_refused_naming_it(db_url, db, plant, monkeypatch, capsys):
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    assert main(["devices", "provision", "new-1", "--model", "pump", "--site-id", "99999",
                 "--installed-at", "2025-01-01T00:00:00+00:00"]) == 2
    assert "no site 99999" in capsys.readouterr().err
    assert _device_count(db) == 0


@pytest.mark.parametrize("option", [["--chown", "abc"], ["--count", "-3"], ["--site-id", "0"]])
def test_malformed_provision_options_are_refused(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["devices", "provision", "p-1", *option])
    assert exit_.value.code == 2
    assert option[0] in capsys.readouterr().err
