"""The model registry: versions, parameters, training window, metrics, artifact and its hash.

A new model becomes active only if it is at least as good as the active one on the new model's
own hold-out (the caller evaluates the active model on that hold-out and passes its metrics).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, fields
from datetime import datetime

import psycopg
from psycopg import sql

from predict.model import FailureModel, at_least_as_good, public

log = logging.getLogger(__name__)


class ArtifactMismatch(RuntimeError):
    """A stored artifact does not match its recorded hash."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One registry row without its artifact; its fields are the columns it is read from."""

    version: int
    estimator: str
    metrics: dict
    sha256: str
    active: bool
    created_at: datetime
    params: dict
    train_start: datetime | None
    train_end: datetime | None

    @property
    def readings_per_hour(self) -> float | None:
        """The data rate of the history it learned from (None: not recorded)."""
        return self.params.get("readings_per_hour")


ENTRY_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(Entry))


def json_safe(obj: object) -> object:
    """JSON-safe copy: NaN becomes null, numpy scalars become floats."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, str | bool | int) or obj is None:
        return obj
    value = float(obj)  # type: ignore[arg-type]
    return None if math.isnan(value) or math.isinf(value) else value


def active(conn: psycopg.Connection) -> tuple[Entry, FailureModel] | None:
    return _fetch(conn, sql.SQL("active"), ())


def load(conn: psycopg.Connection, version: int) -> tuple[Entry, FailureModel]:
    found = _fetch(conn, sql.SQL("version = %s"), (version,))
    if found is None:
        raise LookupError(f"model version {version} is not in the registry")
    return found


def _fetch(conn: psycopg.Connection, where: sql.Composable, params: tuple) -> tuple[Entry, FailureModel] | None:
    """The entry matching ``where`` with its model, the artifact checked against its hash."""
    row = conn.execute(
        sql.SQL("SELECT {}, artifact FROM model_registry WHERE {}").format(ENTRY_COLUMNS, where), params
    ).fetchone()
    if row is None:
        return None
    entry, artifact = Entry(*row[:-1]), row[-1]
    if hashlib.sha256(artifact).hexdigest() != entry.sha256:
        raise ArtifactMismatch(f"model version {entry.version}: artifact hash does not match")
    return entry, FailureModel.from_bytes(bytes(artifact))


def register(conn: psycopg.Connection, model: FailureModel, *, params: dict,
             train_start: datetime | None, train_end: datetime | None,
             active_version: int | None = None, active_metrics: dict | None = None) -> tuple[int, bool]:
    """Store ``model``; make it active when there is none or it is at least as good as the
    active one (``active_metrics``: the active model on the same hold-out). Returns
    (version, promoted)."""
    blob = model.to_bytes()
    metrics = public(model.metrics)
    promote = active_metrics is None or at_least_as_good(model.metrics, active_metrics)
    compared = None if active_metrics is None else public(active_metrics)
    if promote:
        conn.execute("UPDATE model_registry SET active = false WHERE active")
    (version,) = conn.execute(
        "INSERT INTO model_registry (estimator, params, train_start, train_end, horizon_h, metrics, "
        "compared_with, compared_metrics, artifact, sha256, active, promoted_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) "
        "RETURNING version",
        (model.estimator, json.dumps(json_safe(params)), train_start, train_end, model.horizon,
         json.dumps(json_safe(metrics)), active_version,
         None if compared is None else json.dumps(json_safe(compared)),
         blob, hashlib.sha256(blob).hexdigest(), promote, promote),
    ).fetchone()
    log.info("model version %d registered (%s)", version, "active" if promote else "not promoted")
    return version, promote


def entries(conn: psycopg.Connection) -> list[Entry]:
    rows = conn.execute(
        sql.SQL("SELECT {} FROM model_registry ORDER BY version").format(ENTRY_COLUMNS)
    ).fetchall()
    return [Entry(*r) for r in rows]
