import paho.mqtt.client as mqtt
import pytest

from fieldops.runtime import postgres
from ingest.broker_config import hash_password, verify_password


def _connect(port, user=None, password=None):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if user:
        client.username_pw_set(user, password)
    result = {}
    client.on_connect = lambda c, u, f, rc, p: result.setdefault("rc", rc)
    client.connect("127.0.0.1", port)
    for _ in range(50):
        client.loop(0.1)
        if "rc" in result:
            break
    client.disconnect()
    return result["rc"]


def test_broker_refuses_anonymous_clients(mqtt_broker):
    assert _connect(mqtt_broker.port).is_failure


def test_broker_accepts_the_ingest_account(mqtt_broker):
    assert not _connect(mqtt_broker.port, mqtt_broker.ingest_user, mqtt_broker.ingest_password).is_failure


def test_broker_refuses_a_wrong_password(mqtt_broker):
    assert _connect(mqtt_broker.port, mqtt_broker.ingest_user, "wrong").is_failure


def test_password_hash_round_trip():
    hashed = hash_password("s3cret")
    assert hashed.startswith("$7$101$")
    assert verify_password("s3cret", hashed) and not verify_password("other", hashed)


def test_missing_postgres_binary_says_how_to_install(tmp_path):
    with pytest.raises(postgres.MissingBinary, match="apt-get install"):
        postgres.find_pg_bin("initdb", search_path=str(tmp_path), lib_root=str(tmp_path))
