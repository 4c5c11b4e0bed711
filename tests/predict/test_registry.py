"""The registry's promotion rule: a new model is active only if at least as good as the active one."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from predict import features as F
from predict import registry
from predict.model import FailureModel


def tiny_model(pr_auc: float, recall: float = 0.9, precision: float = 0.85) -> FailureModel:
    x = np.array([[0.0], [1.0], [0.1], [0.9]])
    y = np.array([0, 1, 0, 1])
    clf = LogisticRegression().fit(x, y)
    return FailureModel(
        spec=F.FeatureSpec(n_slots=1), classifier=clf, regressor=clf, mode_classifier=None, modes=[],
        threshold=0.5, horizon=72.0, rul_cap=144.0, estimator="logistic_regression",
        metrics={"pr_auc": pr_auc, "recall": recall, "precision": precision},
    )


def active_version(db) -> int | None:
    current = registry.active(db)
    return None if current is None else current[0].version


def test_the_first_model_becomes_active(db):
    version, promoted = registry.register(db, tiny_model(0.7), params={}, train_start=None, train_end=None)
    assert promoted and active_version(db) == version


def test_a_worse_model_is_stored_but_not_promoted(db):
    first, _ = registry.register(db, tiny_model(0.8), params={}, train_start=None, train_end=None)
    second, promoted = registry.register(
        db, tiny_model(0.7), params={}, train_start=None, train_end=None,
        active_version=first, active_metrics={"pr_auc": 0.75, "recall": 0.9, "precision": 0.85})
    assert not promoted
    assert active_version(db) == first
    assert [e.version for e in registry.entries(db)] == [first, second]


def test_an_equally_good_model_replaces_the_active_one(db):
    first, _ = registry.register(db, tiny_model(0.8), params={}, train_start=None, train_end=None)
    second, promoted = registry.register(
        db, tiny_model(0.8), params={}, train_start=None, train_end=None,
        active_version=first, active_metrics={"pr_auc": 0.8, "recall": 0.9, "precision": 0.85})
    assert promoted and active_version(db) == second


def test_the_artifact_is_stored_with_its_hash_and_loads_back(db):
    version, _ = registry.register(db, tiny_model(0.8), params={"a": 1}, train_start=None, train_end=None)
    blob, sha = db.execute("SELECT artifact, sha256 FROM model_registry WHERE version = %s", (version,)).fetchone()
    assert hashlib.sha256(blob).hexdigest() == sha
    _, model = registry.load(db, version)
    assert model.classifier.predict_proba([[1.0]])[0, 1] > 0.5


def test_a_tampered_artifact_is_refused(db):
    version, _ = registry.register(db, tiny_model(0.8), params={}, train_start=None, train_end=None)
    db.execute("UPDATE model_registry SET artifact = artifact || '\\x00'::bytea WHERE version = %s", (version,))
    with pytest.raises(registry.ArtifactMismatch):
        registry.load(db, version)


def test_an_entry_carries_its_training_window_and_data_rate(db):
    start, end = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
    registry.register(db, tiny_model(0.8), params={"readings_per_hour": 6.0}, train_start=start, train_end=end)
    (entry,) = registry.entries(db)
    assert (entry.train_start, entry.train_end, entry.readings_per_hour) == (start, end, 6.0)
    assert registry.active(db)[0] == entry


def test_an_entry_without_a_recorded_data_rate_has_none(db):
    registry.register(db, tiny_model(0.8), params={}, train_start=None, train_end=None)
    assert registry.entries(db)[0].readings_per_hour is None


def test_the_models_command_lists_each_version_with_its_window_and_data_rate(db, db_url, monkeypatch, capsys):
    from fieldops.cli import main

    start, end = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
    first, _ = registry.register(db, tiny_model(0.8), params={"readings_per_hour": 6.0},
                                 train_start=start, train_end=end)
    second, _ = registry.register(db, tiny_model(0.7), params={}, train_start=None, train_end=None,
                                  active_version=first, active_metrics={"pr_auc": 0.8, "recall": 0.9, "precision": 0.85})
    db.commit()
    monkeypatch.setenv("FIELDOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("FIELDOPS_ENV", "test")
    assert main(["predict", "models"]) == 0
    active_line, other_line = capsys.readouterr().out.splitlines()
    assert active_line.startswith(f"v{first} * ") and "trained=2026-09-01..2026-11-30 readings_per_hour=6 " in active_line
    assert other_line.startswith(f"v{second}   ") and "trained=- readings_per_hour=- " in other_line
