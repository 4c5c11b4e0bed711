"""Telemetry and its hourly rollup, on TimescaleDB or plain PostgreSQL (see fieldops.db.schema)."""

from fieldops.db import schema


def apply(conn, ctx) -> None:
    chosen = schema.detect_flavor(conn)
    schema.create_telemetry(
        conn,
        chosen,
        retention_days=ctx.settings.telemetry_retention_days,
        compress_after_days=ctx.settings.telemetry_compress_after_days,
    )
