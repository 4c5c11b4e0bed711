"""Database access: connection pool, migrations, the telemetry storage decision, repositories."""

from fieldops.db.pool import connect, make_pool

__all__ = ["connect", "make_pool"]
