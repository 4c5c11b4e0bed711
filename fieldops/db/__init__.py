"""Database access: connection pool, migrations, the telemetry storage decision, repositories."""

from fieldops.db.pool import DatabaseUnavailable, connect, make_pool

__all__ = ["DatabaseUnavailable", "connect", "make_pool"]
