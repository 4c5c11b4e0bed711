"""Opening connections: every failure is DatabaseUnavailable with one line of reason."""

import time

import pytest

from fieldops.db.pool import DatabaseUnavailable, wait_ready


def test_waiting_for_an_unreachable_server_ends_in_database_unavailable():
    with pytest.raises(DatabaseUnavailable, match="^cannot connect to the database: .*refused"):
        wait_ready("postgresql://127.0.0.1:1/fieldops", timeout_s=0.3)


def test_waiting_on_a_malformed_url_fails_at_once():
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="garbage"):
        wait_ready("garbage", timeout_s=30)
    assert time.monotonic() - started < 5
