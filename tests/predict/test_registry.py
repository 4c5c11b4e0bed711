"""The registry's promotion rule: a new model is active only if at least as good as the active one."""

from __future__ import annotations

import hashlib

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
