import pytest

from fieldops.config import ConfigError, documented_settings, load_settings


def test_reads_prefixed_variables_with_types():
    s = load_settings({"FIELDOPS_MQTT_PORT": "1999", "FIELDOPS_MQTT_TLS": "yes", "FIELDOPS_CLOCK_SPEED": "60"})
    assert (s.mqtt_port, s.mqtt_tls, s.clock_speed) == (1999, True, 60.0)


def test_malformed_number_is_named():
    with pytest.raises(ConfigError, match="FIELDOPS_MQTT_PORT"):
        load_settings({"FIELDOPS_MQTT_PORT": "many"})


def test_default_secret_refused_in_production():
    with pytest.raises(ConfigError, match="FIELDOPS_SECRET_KEY"):
        load_settings({"FIELDOPS_ENV": "production"})


def test_short_secret_refused_in_production():
    with pytest.raises(ConfigError, match="FIELDOPS_SECRET_KEY"):
        load_settings({"FIELDOPS_ENV": "production", "FIELDOPS_SECRET_KEY": "abc123"})


def test_strong_secret_accepted_in_production():
    s = load_settings({"FIELDOPS_ENV": "production", "FIELDOPS_SECRET_KEY": "x" * 40})
    assert s.env == "production"


def test_default_secret_allowed_in_development():
    assert load_settings({}).env == "development"


def test_unknown_env_refused():
    with pytest.raises(ConfigError, match="FIELDOPS_ENV"):
        load_settings({"FIELDOPS_ENV": "staging"})


def test_every_setting_is_documented():
    assert all(doc for _, _, doc in documented_settings())


def test_readme_documents_every_setting():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert [var for var, _, _ in documented_settings() if f"`{var}`" not in readme] == []
