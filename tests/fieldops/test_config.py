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


@pytest.mark.parametrize("speed", ["nan", "inf", "-inf", "0", "-2"])
def test_clock_speed_must_be_a_finite_positive_number(speed):
    with pytest.raises(ConfigError, match="FIELDOPS_CLOCK_SPEED"):
        load_settings({"FIELDOPS_CLOCK_SPEED": speed})


@pytest.mark.parametrize("anchor", ["garbage", "2025-01-01T00:00:00", "2025-01-01T00:00:00+00:00/nonsense"])
def test_malformed_clock_anchor_is_refused_at_load(anchor):
    with pytest.raises(ConfigError, match="FIELDOPS_CLOCK_ANCHOR"):
        load_settings({"FIELDOPS_CLOCK_ANCHOR": anchor})


def test_clock_anchor_near_the_end_of_time_is_refused():
    with pytest.raises(ConfigError, match="FIELDOPS_CLOCK_ANCHOR"):
        load_settings({"FIELDOPS_CLOCK_ANCHOR": "2025-01-01T00:00:00+00:00/9999-12-31T00:00:00+00:00"})


def test_valid_clock_anchor_pair_is_accepted():
    anchor = "2025-01-01T00:00:00+00:00/2024-06-01T08:00:00+02:00"
    assert load_settings({"FIELDOPS_CLOCK_ANCHOR": anchor}).clock_anchor == anchor


def test_partitions_ahead_days_is_bounded():
    with pytest.raises(ConfigError, match="FIELDOPS_PARTITIONS_AHEAD_DAYS"):
        load_settings({"FIELDOPS_PARTITIONS_AHEAD_DAYS": "100000"})


def test_unknown_log_level_is_refused():
    with pytest.raises(ConfigError, match="FIELDOPS_LOG_LEVEL"):
        load_settings({"FIELDOPS_LOG_LEVEL": "bogus"})


@pytest.mark.parametrize("variable", ["FIELDOPS_WEB_PORT", "FIELDOPS_MQTT_PORT"])
@pytest.mark.parametrize("port", ["0", "99999"])
def test_port_outside_tcp_range_is_refused(variable, port):
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: port})


@pytest.mark.parametrize("seconds", ["nan", "inf", "0", "-1", "301"])
def test_web_pool_timeout_must_be_positive_finite_and_bounded(seconds):
    with pytest.raises(ConfigError, match="FIELDOPS_WEB_POOL_TIMEOUT_S"):
        load_settings({"FIELDOPS_WEB_POOL_TIMEOUT_S": seconds})
