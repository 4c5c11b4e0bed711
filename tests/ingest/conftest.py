from __future__ import annotations

import pytest

from tests import factories
from tests.ingest.helpers import publisher


@pytest.fixture
def pump(db):
    """One pump device (installed 2025-01-01) committed to this test's database."""
    dev = factories.device(db)
    db.commit()
    return dev


@pytest.fixture
def operator(mqtt_broker):
    """An MQTT v5 client of the operator account (may publish on every device topic)."""
    client = publisher(mqtt_broker.port, mqtt_broker.admin_user, mqtt_broker.admin_password)
    yield client
    client.disconnect()
    client.loop_stop()
