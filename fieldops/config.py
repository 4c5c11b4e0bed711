"""Typed settings, read once from ``FIELDOPS_*`` environment variables and passed down explicitly."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PREFIX = "FIELDOPS_"
UNSAFE_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "development-only-secret"})
DEV_SECRET = "development-only-secret"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_CLOCK_SPEED = 1_000_000.0
MAX_RETENTION_DAYS = 36_500
MAX_PARTITIONS_AHEAD_DAYS = 366
MAX_WEB_POOL_TIMEOUT_S = 300.0  # a request waiting longer for a connection has lost its client anyway
ANCHOR_YEARS = range(1970, 3000)  # far from datetime's limits, which "now" arithmetic would overflow


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every runtime setting of fieldops. Field ``x`` is read from ``FIELDOPS_X``."""

    env: str = field(default="development", metadata={"doc": "development, test or production"})
    database_url: str = field(
        default="", metadata={"doc": "PostgreSQL URL; empty: `fieldops up` manages a local cluster"}
    )
    db_pool_min: int = field(default=1, metadata={"doc": "connection pool minimum size"})
    db_pool_max: int = field(default=10, metadata={"doc": "connection pool maximum size"})
    web_pool_timeout_s: float = field(
        default=10.0, metadata={"doc": "seconds a web request waits for a database connection before its 503"}
    )
    telemetry_retention_days: int = field(
        default=365, metadata={"doc": "raw telemetry older than this is dropped"}
    )
    telemetry_compress_after_days: int = field(
        default=7, metadata={"doc": "TimescaleDB only: compress chunks older than this"}
    )
    partitions_ahead_days: int = field(
        default=7, metadata={"doc": "plain PostgreSQL: daily partitions created ahead of time"}
    )
    mqtt_host: str = field(default="", metadata={"doc": "broker host; empty: `fieldops up` manages one"})
    mqtt_port: int = field(default=1883, metadata={"doc": "broker port"})
    mqtt_username: str = field(default="ingest", metadata={"doc": "ingest account user name"})
    mqtt_password: str = field(default="", metadata={"doc": "ingest account password"})
    mqtt_tls: bool = field(default=False, metadata={"doc": "connect to the broker over TLS"})
    data_dir: str = field(default="var", metadata={"doc": "local state: clusters, models, plots, logs"})
    secret_key: str = field(default=DEV_SECRET, metadata={"doc": "web session signing key"})
    web_host: str = field(default="127.0.0.1", metadata={"doc": "web server bind address"})
    web_port: int = field(default=8000, metadata={"doc": "web server port"})
    map_tile_url: str = field(
        default="", metadata={"doc": "map tile URL template; empty: maps draw without tiles"}
    )
    clock_speed: float = field(
        default=1.0, metadata={"doc": "simulated seconds per real second (demo and simulators)"}
    )
    clock_anchor: str = field(
        default="", metadata={"doc": "`<real ISO>/<simulated ISO>` pairing shared by all processes"}
    )
    osrm_url: str = field(default="", metadata={"doc": "OSRM table endpoint; empty: geodesic travel times"})
    log_level: str = field(default="INFO", metadata={"doc": "logging level"})

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def require_database_url(self) -> str:
        """The database URL; ConfigError naming the variable when it is not set (for commands)."""
        if not self.database_url:
            raise ConfigError(f"{PREFIX}DATABASE_URL is not set: give a PostgreSQL URL "
                              "(or run the whole system with `fieldops up`)")
        return self.database_url

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)


def _coerce(name: str, raw: str, kind: type) -> object:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name.upper()}: cannot read {raw!r} as {kind.__name__}") from exc


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment and check them; raise ConfigError on bad values."""
    environ = os.environ if environ is None else environ
    kinds = {"str": str, "int": int, "float": float, "bool": bool}
    values: dict[str, object] = {}
    for f in fields(Settings):
        key = PREFIX + f.name.upper()
        if key in environ:
            values[f.name] = _coerce(f.name, environ[key], kinds[str(f.type)])
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.env not in {"development", "test", "production"}:
        raise ConfigError(f"{PREFIX}ENV: must be development, test or production, not {settings.env!r}")
    if settings.env == "production" and (
        settings.secret_key.strip().lower() in UNSAFE_SECRETS or len(settings.secret_key) < 32
    ):
        raise ConfigError(
            f"{PREFIX}SECRET_KEY: refusing an unsafe secret outside development; "
            "set at least 32 random characters (python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    if not (math.isfinite(settings.clock_speed) and 0 < settings.clock_speed <= MAX_CLOCK_SPEED):
        raise ConfigError(f"{PREFIX}CLOCK_SPEED: must be a positive number up to {MAX_CLOCK_SPEED:g}, "
                          f"not {settings.clock_speed}")
    _check_clock_anchor(settings.clock_anchor)
    if settings.db_pool_min < 0 or settings.db_pool_max < max(1, settings.db_pool_min):
        raise ConfigError(f"{PREFIX}DB_POOL_MAX: must be >= DB_POOL_MIN and >= 1")
    pool_timeout = settings.web_pool_timeout_s
    if not (math.isfinite(pool_timeout) and 0 < pool_timeout <= MAX_WEB_POOL_TIMEOUT_S):
        raise ConfigError(f"{PREFIX}WEB_POOL_TIMEOUT_S: must be a positive number of seconds up to "
                          f"{MAX_WEB_POOL_TIMEOUT_S:g}, not {pool_timeout}")
    _check_range("telemetry_retention_days", settings.telemetry_retention_days, 1, MAX_RETENTION_DAYS)
    _check_range("telemetry_compress_after_days", settings.telemetry_compress_after_days, 1, MAX_RETENTION_DAYS)
    _check_range("partitions_ahead_days", settings.partitions_ahead_days, 0, MAX_PARTITIONS_AHEAD_DAYS)
    _check_range("mqtt_port", settings.mqtt_port, 1, 65535)
    _check_range("web_port", settings.web_port, 1, 65535)
    if settings.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"{PREFIX}LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level!r}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{PREFIX}{name.upper()}: must be from {low} to {high}, not {value}")


def _check_clock_anchor(anchor: str) -> None:
    """The anchor must be ``<real ISO>[/<simulated ISO>]`` with UTC offsets, in a sane year."""
    if not anchor:
        return
    from fieldops.clock import Clock

    try:
        clock = Clock.from_settings(1.0, anchor)
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}CLOCK_ANCHOR: expected <real ISO>/<simulated ISO> with UTC offsets, "
                          f"not {anchor!r} ({exc})") from None
    if any(t.year not in ANCHOR_YEARS for t in (clock.real_anchor, clock.sim_anchor)):
        raise ConfigError(f"{PREFIX}CLOCK_ANCHOR: times must lie in the years {ANCHOR_YEARS.start} to "
                          f"{ANCHOR_YEARS.stop - 1}, not {anchor!r}")


def documented_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README's configuration table."""
    return [
        (PREFIX + f.name.upper(), repr(f.default), f.metadata.get("doc", ""))
        for f in fields(Settings)
    ]
