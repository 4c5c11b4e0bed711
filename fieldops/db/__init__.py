"""Database access: connection pool, migrations, the telemetry storage decision, repositories."""

from fieldops.db.pool import DatabaseUnavailable, connect, make_pool

MAX_ID = 2**31 - 1  # the largest value of an ``integer`` id column (jobs, devices, technicians, ...)

__all__ = ["MAX_ID", "DatabaseUnavailable", "connect", "make_pool"]
