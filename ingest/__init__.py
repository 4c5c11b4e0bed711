"""Ingest: device telemetry, status and events over MQTT into PostgreSQL, at least once, never lost."""
