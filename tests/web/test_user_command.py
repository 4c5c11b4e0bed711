"""``fieldops web-user``: mistakes in the request are clear messages with exit 2, never database errors."""

from __future__ import annotations

import pytest

from tests import factories
from tests.web.test_server import web_user
from web import commands, store


def _refused_at_parse(monkeypatch, db_url, capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        web_user(monkeypatch, db_url, *argv, password="long-enough-pw")
    assert exit_.value.code == 2
    return capsys.readouterr().err


def _refused(monkeypatch, db_url, capsys, *argv, password="long-enough-pw") -> str:
    assert web_user(monkeypatch, db_url, *argv, password=password) == 2
    return capsys.readouterr().err


def test_technician_account_needs_a_technician_id(db_url, monkeypatch, capsys):
    assert "--technician-id" in _refused(monkeypatch, db_url, capsys, "tina", "--role", "technician")


def test_staff_account_may_not_name_a_technician(db, db_url, monkeypatch, capsys):
    ada = factories.technician(db, "Ada")
    db.commit()
    err = _refused(monkeypatch, db_url, capsys, "root", "--role", "admin", "--technician-id", str(ada.id))
    assert "--technician-id" in err


def test_unknown_technician_is_named(db_url, monkeypatch, capsys):
    err = _refused(monkeypatch, db_url, capsys, "tina", "--role", "technician", "--technician-id", "999")
    assert "no technician 999" in err


def test_technician_id_beyond_the_id_column_is_refused(db_url, monkeypatch, capsys):
    assert "--technician-id" in _refused_at_parse(
        monkeypatch, db_url, capsys, "tina", "--role", "technician", "--technician-id", str(10**12))


@pytest.mark.parametrize("name", ["", "   ", "x" * 5000])
def test_empty_or_overlong_name_is_refused(name, db_url, monkeypatch, capsys):
    assert "username" in _refused_at_parse(monkeypatch, db_url, capsys, name, "--role", "dispatcher")


def test_taken_name_is_refused(db_url, monkeypatch, capsys):
    assert web_user(monkeypatch, db_url, "dora", "--role", "dispatcher", password="long-enough-pw") == 0
    assert "already exists" in _refused(monkeypatch, db_url, capsys, "dora", "--role", "admin")


def test_unset_password_variable_without_a_terminal_is_refused(db_url, monkeypatch, capsys):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    err = _refused(monkeypatch, db_url, capsys, "dora", "--role", "dispatcher", "--password-env", "NO_SUCH_VAR",
                   password=None)
    assert "NO_SUCH_VAR" in err


def test_second_account_for_a_technician_is_refused_naming_the_technician(db, db_url, monkeypatch, capsys):
    ada = factories.technician(db, "Ada")
    db.commit()
    first = ("tina", "--role", "technician", "--technician-id", str(ada.id))
    assert web_user(monkeypatch, db_url, *first, password="long-enough-pw") == 0
    err = _refused(monkeypatch, db_url, capsys, "tina2", "--role", "technician", "--technician-id", str(ada.id))
    assert f"technician {ada.id} (Ada) already has an account: 'tina'" in err


def test_store_refuses_a_second_account_for_a_technician_with_a_clear_error(db):
    ada = factories.technician(db, "Ada")
    store.create_user(db, "tina", "long-enough-pw", "technician", ada.id)
    with pytest.raises(store.AccountExists, match=f"technician {ada.id} already has an account"):
        store.create_user(db, "tina2", "long-enough-pw", "technician", ada.id)


def test_store_refuses_a_taken_name_with_a_clear_error(db):
    store.create_user(db, "dora", "long-enough-pw", "dispatcher")
    with pytest.raises(store.AccountExists, match="an account named 'dora' already exists"):
        store.create_user(db, "dora", "long-enough-pw", "admin")


def test_account_made_after_the_check_is_refused_with_exit_2(db, db_url, monkeypatch, capsys):
    ada = factories.technician(db, "Ada")
    db.commit()
    argv = ("--role", "technician", "--technician-id", str(ada.id))
    assert web_user(monkeypatch, db_url, "tina", *argv, password="long-enough-pw") == 0
    capsys.readouterr()
    monkeypatch.setattr(commands, "_user_problem", lambda conn, args: None)  # as if the check ran first
    err = _refused(monkeypatch, db_url, capsys, "tina2", *argv)
    assert err == (f"fieldops web-user: technician_id: technician {ada.id} already has an account "
                   "(one account per technician)\n")
