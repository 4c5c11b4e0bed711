"""Failure models: a calibrated classifier for P(failure within the horizon), P(mode | failure) and
a remaining-useful-life regressor, chosen by measurement and evaluated on held-out devices.

The split is by device and by time: test samples come from held-out devices after ``t_cut``,
training samples from the other devices before it. Out of fold over all training devices, the
estimator is chosen (event recall at the target precision), its scores calibrated (Platt) and the
operating threshold fixed; the chosen estimator is then fitted on every training device. Every
fit weighs each failure's catch window as one bag (:func:`bag_weights`). Data too small for folds
falls back to a validation share of the training devices. The test set is touched once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields

import joblib
import numpy as np
from joblib import Parallel, delayed
from scipy.special import expit, logit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from predict import features as F

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(slots=True)
class Dataset:
    """Samples of a grid with features and labels; ``time`` is the sample's step time."""

    grid: F.Grid
    dev: np.ndarray
    step: np.ndarray
    time: np.ndarray
    labels: F.Labels
    failures: list[F.Failure]
    horizon: float

    def subset(self, mask: np.ndarray) -> Dataset:
        lab = self.labels
        return Dataset(self.grid, self.dev[mask], self.step[mask], self.time[mask],
                       F.Labels(lab.keep[mask], lab.y[mask], lab.ttf[mask], lab.mode[mask]),
                       self.failures, self.horizon)


def build_dataset(grid: F.Grid, failures: Sequence[F.Failure], repairs: Sequence[Sequence[float]],
                  horizon: float, settle: float, every: int = 1) -> Dataset:
    """Samples every ``every`` steps of every device, labelled. ``horizon`` must be a positive number."""
    if not (math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"the horizon must be a positive number, not {horizon:g}")
    d, t = grid.time.shape
    dev, step = np.meshgrid(np.arange(d), np.arange(0, t, every), indexing="ij")
    dev, step = dev.ravel(), step.ravel()
    ok = ~np.isnan(grid.time[dev, step])
    dev, step = dev[ok], step[ok]
    labels = F.make_labels(grid, dev, step, failures, repairs, horizon, settle)
    return Dataset(grid, dev, step, grid.time[dev, step], labels, list(failures), horizon)


def device_split(device_ids: np.ndarray, share: float, salt: str) -> np.ndarray:
    """Stable pseudo-random split of devices: True for about ``share`` of them."""
    return device_hash(device_ids, salt) / 2**32 < share


def device_hash(device_ids: np.ndarray, salt: str) -> np.ndarray:
    """A stable pseudo-random 32-bit number per device id (the first 4 bytes of SHA-256 of
    ``salt:id``), for splits and folds that do not move when other devices come or go."""
    return np.array([int.from_bytes(hashlib.sha256(f"{salt}:{d}".encode()).digest()[:4], "big")
                     for d in device_ids], dtype=np.int64)


def validation_devices(ds: Dataset, share: float) -> np.ndarray:
    """Per grid device: held out for validation. Stratified so that both sides get devices with
    failures when there are at least two such devices."""
    out = np.zeros(len(ds.grid.device_ids), dtype=bool)
    present = np.unique(ds.dev[ds.labels.keep])
    failing = np.unique(ds.dev[ds.labels.keep & ds.labels.y])
    for group in (failing, np.setdiff1d(present, failing)):
        if len(group) == 0:
            continue
        ordered = group[np.argsort(device_hash(ds.grid.device_ids[group], "validation"))]
        k = int(round(len(group) * share))
        k = min(max(k, 1), len(group) - 1) if len(group) >= 2 else 0
        out[ordered[:k]] = True
    return out


# ---------------------------------------------------------------- calibration


SCORE_CLIP = 1e-12  # probabilities are clipped this far from 0 and 1 before their log-odds


class CrossFitCalibrated(ClassifierMixin, BaseEstimator):
    """A binary classifier whose probabilities pass through a sigmoid of their log-odds
    (``slope * logit(p) + intercept``) fitted on out-of-fold scores of the same estimator: Platt
    scaling without setting devices aside (scikit-learn's ``CalibratedClassifierCV`` with
    ``ensemble=False`` does the same with folds by row, not by device)."""

    def __init__(self, estimator: object = None, slope: float = 1.0, intercept: float = 0.0):
        self.estimator = estimator
        self.slope = slope
        self.intercept = intercept

    @property
    def classes_(self) -> np.ndarray:
        return self.estimator.classes_

    def fit_scores(self, scores: np.ndarray, y: np.ndarray) -> CrossFitCalibrated:
        """Fit the sigmoid on out-of-fold ``scores`` (P(positive)) and labels ``y``."""
        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(self._log_odds(scores)[:, None], np.asarray(y, dtype=int))
        self.slope, self.intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated P(positive) for raw scores of the estimator."""
        return expit(self.slope * self._log_odds(scores) + self.intercept)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        q = self.calibrate(self.estimator.predict_proba(x)[:, 1])
        return np.column_stack([1.0 - q, q])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[(self.predict_proba(x)[:, 1] >= 0.5).astype(int)]

    @staticmethod
    def _log_odds(p: np.ndarray) -> np.ndarray:
        return logit(np.clip(np.asarray(p, dtype=np.float64), SCORE_CLIP, 1.0 - SCORE_CLIP))


# ---------------------------------------------------------------- the artifact


@dataclass(slots=True)
class FailureModel:
    """Everything scoring needs: feature spec, estimators, threshold, horizon and names."""

    spec: F.FeatureSpec
    classifier: object
    regressor: object
    mode_classifier: object | None
    modes: list[str]
    threshold: float
    horizon: float
    rul_cap: float
    estimator: str
    metric_names: list[list[str]] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    columns: np.ndarray | None = None  # the feature columns the estimators use
    group_modes: dict[int, list[str]] = field(default_factory=dict)  # modes seen per device model
    # the training history's data rate (median readings per device-hour of the rollup); None:
    # unknown (trained from CSV, or stored before it was recorded)
    readings_per_hour: float | None = None

    def __setstate__(self, state: tuple[None, dict]) -> None:
        """Unpickle (the state is ``(None, {slot: value})``); fields an artifact stored before
        they existed get their defaults."""
        values = state[1]
        for f in fields(self):
            if f.name in values:
                setattr(self, f.name, values[f.name])
            else:
                setattr(self, f.name, f.default_factory() if f.default_factory is not MISSING else f.default)

    def select(self, x: np.ndarray) -> np.ndarray:
        return x if self.columns is None else x[:, self.columns]

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(failure within horizon) and remaining useful life per row of ``x`` (all features)."""
        x = self.select(x)
        p = self.classifier.predict_proba(x)[:, 1]
        rul = np.clip(self.regressor.predict(x), 0.0, self.rul_cap)
        return p, rul

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(failure), RUL and the most likely failure mode per row; the mode (one more model) is
        worked out only where the risk is at least half the threshold, '' elsewhere."""
        p, rul = self.predict(x)
        mode = np.full(len(x), "", dtype=object)
        risky = np.flatnonzero(p >= self.threshold / 2)
        if self.modes and len(risky):
            proba = self.mode_proba(x[risky])
            if self.group_modes:  # only modes this device model has failed with in training
                allowed = np.zeros_like(proba, dtype=bool)
                for r, g in enumerate(x[risky, 0]):
                    allowed[r] = [m in self.group_modes.get(int(g), ()) for m in self.modes]
                proba = np.where(allowed, proba, -1.0)
                named = allowed.any(axis=1)
            else:
                named = np.ones(len(risky), dtype=bool)
            best = np.asarray(self.modes, dtype=object)[np.argmax(proba, axis=1)]
            mode[risky] = np.where(named, best, "")
        return p, rul, mode

    def mode_proba(self, x: np.ndarray) -> np.ndarray:
        """P(mode | failure) per row, columns in ``modes`` order."""
        if self.mode_classifier is None:
            return np.ones((len(x), max(len(self.modes), 1)))
        return self.mode_classifier.predict_proba(self.select(x))

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        joblib.dump(self, buf, compress=3)
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> FailureModel:
        return joblib.load(io.BytesIO(data))


def informative_columns(x: np.ndarray) -> np.ndarray:
    """Columns with at least two distinct finite values (constant or empty ones carry nothing)."""
    finite = np.isfinite(x)
    lo = np.where(finite, x, np.inf).min(axis=0)
    hi = np.where(finite, x, -np.inf).max(axis=0)
    return np.flatnonzero(finite.any(axis=0) & (hi > lo))


NEAR_HORIZONS = 3.0
NEGATIVE_SHARE = 0.3
OOF_FOLDS = 4  # folds by device for choosing the estimator out of fold


def candidates(seed: int = 0) -> dict[str, Callable[[], object]]:
    """Candidate estimators, compared out of fold (see :func:`train`); class imbalance handled by
    class weights. Gradient boosting is regularised: large leaves (>= 80 samples), an L2 penalty."""
    return {
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=80, l2_regularization=1.0,
            class_weight="balanced", early_stopping=False, random_state=seed),
        "logistic_regression": lambda: make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
            LogisticRegression(class_weight="balanced", max_iter=2000)),
        "random_forest": lambda: make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            RandomForestClassifier(n_estimators=80, min_samples_leaf=5, class_weight="balanced_subsample",
                                   n_jobs=1, random_state=seed)),
    }


# ---------------------------------------------------------------- alerts and events


THRESHOLD_TOP_SHARE = 1e-4  # the highest threshold tried leaves this share of samples above it
MIN_LEAD_FRACTION = 1.0 / 6.0  # minimum useful lead as a share of the horizon (12 h of 72 h)
EPISODE_GAP_FRACTION = 1.0 / 3.0  # alerts closer than this (24 h of 72 h) form one episode


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """One failure of the evaluated samples: whether an alert preceded it, and by how long."""

    device_index: int
    time: float
    eligible: bool  # a kept sample lies in [time - horizon, time - min_lead]: it could be caught
    caught: bool
    lead: float  # failure minus the first alert in [time - horizon, time - min_lead]; NaN if missed


def alert_events(ds: Dataset, score: np.ndarray, threshold: float, min_lead: float | None = None,
                 gap: float | None = None) -> dict:
    """Event-based figures at ``threshold``, with ``W`` the label horizon.

    Episodes: a device's alerting samples (score >= threshold, kept samples only) grouped while
    consecutive alerts are at most ``gap`` apart (default W/3) and no failure or repair lies
    between them; one episode is what one open proactive job stands for. An episode is a true
    alert when the device fails within W after the episode's first alert, a false one otherwise
    (too early counts as false). Precision = true episodes / episodes. ``early_alerts`` counts
    the false episodes that are too early: the device fails within ``NEAR_HORIZONS`` W after the
    episode's first alert (degradation seen, but more than W ahead); ``early_held_alerts`` those of
    them that went on into their failure's catch window below (the one job would have caught the
    failure), and ``job_precision`` counts them as true as well: it asks whether the job an
    episode opens meets a failure developing, not whether it came within W.

    A failure is caught when at least one alert lies in ``[f - W, f - min_lead]`` (default
    ``min_lead`` W/6, 12 h of 72 h: time to get a technician there); its lead time is the
    failure minus the first alert in that window. Recall = caught / eligible failures, eligible
    being those with a kept sample in that window (others could not have been caught from these
    samples). Returns precision, recall, median lead, counts, the leads and per-failure outcomes.
    """
    horizon = ds.horizon
    min_lead = horizon * MIN_LEAD_FRACTION if min_lead is None else min_lead
    gap = horizon * EPISODE_GAP_FRACTION if gap is None else gap
    keep = ds.labels.keep
    alert = (score >= threshold) & keep
    fail_by_dev: dict[int, list[float]] = {}
    for f in ds.failures:
        fail_by_dev.setdefault(f.device_index, []).append(f.time)
    tp = fp = early = held = 0
    outcomes: list[FailureOutcome] = []
    for i in np.unique(ds.dev):
        mine = ds.dev == i
        ftimes = np.sort(np.asarray(fail_by_dev.get(int(i), []), dtype=np.float64))
        kept_t = np.sort(ds.time[mine & keep])
        a_t = np.sort(ds.time[mine & alert])
        if len(a_t):
            resets = np.sort(np.concatenate([ftimes, np.asarray(ds.grid.resets[i], dtype=np.float64)]))
            seg = np.searchsorted(resets, a_t, side="right")
            new = np.ones(len(a_t), dtype=bool)
            new[1:] = (np.diff(a_t) > gap) | (seg[1:] != seg[:-1])
            starts = np.flatnonzero(new)
            for first, last in zip(starts, [*starts[1:], len(a_t)], strict=True):
                start = a_t[first]
                k = np.searchsorted(ftimes, start, side="right")
                ahead = ftimes[k] - start if k < len(ftimes) else np.inf
                if ahead <= horizon:
                    tp += 1
                else:
                    fp += 1
                    early += int(ahead <= NEAR_HORIZONS * horizon)
                    if k < len(ftimes):  # no reset between: the episode's alerts all precede ftimes[k]
                        ep = a_t[first:last]
                        held += int(((ep >= ftimes[k] - horizon) & (ep <= ftimes[k] - min_lead)).any())
        if len(kept_t) == 0:
            continue
        for f in ftimes:
            lo, hi = f - horizon, f - min_lead
            if kept_t[-1] < lo or kept_t[0] > f:  # not among the evaluated samples at all
                continue
            eligible = bool(((kept_t >= lo) & (kept_t <= hi)).any())
            in_win = a_t[(a_t >= lo) & (a_t <= hi)]
            caught = eligible and len(in_win) > 0
            outcomes.append(FailureOutcome(int(i), float(f), eligible, caught,
                                           float(f - in_win[0]) if caught else float("nan")))
    return summarise(outcomes, tp, fp, early, held)


def summarise(outcomes: Sequence[FailureOutcome], tp: int, fp: int, early: int = 0, held: int = 0) -> dict:
    """Precision, recall and lead times from failure outcomes and episode counts; ``held`` of the
    ``fp`` false episodes started early and lasted into their failure's catch window."""
    eligible = [o for o in outcomes if o.eligible]
    leads = [o.lead for o in eligible if o.caught]
    return {"precision": tp / (tp + fp) if tp + fp else float("nan"),
            "job_precision": (tp + held) / (tp + fp) if tp + fp else float("nan"),
            "recall": len(leads) / len(eligible) if eligible else float("nan"),
            "median_lead": float(np.median(leads)) if leads else float("nan"),
            "failures": len(eligible), "alerts": tp + fp, "true_alerts": tp, "early_alerts": early,
            "early_held_alerts": held,
            "leads": leads, "outcomes": list(outcomes)}


PRIVATE_KEYS = ("leads", "outcomes")


def public(metrics: dict) -> dict:
    """Metrics without the per-failure lists (for JSON and the registry)."""
    return {k: v for k, v in metrics.items() if k not in PRIVATE_KEYS}


def choose_threshold(ds: Dataset, score: np.ndarray, target_precision: float, key: str = "precision") -> float:
    """Lowest threshold whose alert precision reaches the target (the highest recall that keeps
    precision); the threshold with the best precision when none does. ``key`` names the precision
    of ``alert_events``: ``precision`` (the operating rule) or ``job_precision``."""
    kept = score[ds.labels.keep]
    qs = np.unique(kept)  # a calibrated (isotonic) score has few distinct values: try each
    if len(qs) > 200:  # quantiles from the median up, denser towards the top where alerts are
        qs = np.unique(np.quantile(kept, 1.0 - np.geomspace(0.5, THRESHOLD_TOP_SHARE, 160)))
    best, best_prec = float(qs[-1]), -1.0
    for th in qs:  # ascending: the first that reaches the target has the highest recall
        ev = alert_events(ds, score, float(th))
        prec = ev[key]
        if not np.isnan(prec) and prec >= target_precision and ev["recall"] > 0:
            return float(th)
        if not np.isnan(prec) and prec > best_prec:
            best, best_prec = float(th), prec
    return best


# ---------------------------------------------------------------- training


@dataclass(slots=True)
class TrainResult:
    model: FailureModel
    comparison: dict[str, float]  # PR-AUC per candidate: out of fold, or on the validation devices
    test: Dataset
    test_x: np.ndarray
    train_s: float
    train_mask: np.ndarray
    test_mask: np.ndarray
    train: Dataset | None = None  # the training devices' samples before the time cut
    train_x: np.ndarray | None = None  # their features (the model's columns)
    selection: dict[str, dict] = field(default_factory=dict)  # out-of-fold figures per candidate
    oof_scores: dict[str, np.ndarray] = field(default_factory=dict)  # their out-of-fold scores


def fit_sample(ds: Dataset, seed: int = 0) -> np.ndarray:
    """Rows worth fitting on: negatives far from any failure are alike, so every positive, every
    negative within NEAR_HORIZONS horizons of a failure and a random NEGATIVE_SHARE of the rest
    (evaluation keeps every row)."""
    ttf, y = ds.labels.ttf, ds.labels.y
    near = ~np.isnan(ttf) & (ttf <= NEAR_HORIZONS * ds.horizon)
    return y | near | (np.random.default_rng(seed).random(len(y)) < NEGATIVE_SHARE)


def fold_of(ds: Dataset, folds: int) -> np.ndarray:
    """Per sample, its device's fold (devices dealt into ``folds`` groups by hash)."""
    return (device_hash(ds.grid.device_ids, "fold") % folds)[ds.dev]


def folds_usable(ds: Dataset, folds: int, seed: int = 0) -> bool:
    """Whether every fold's complement has positives and negatives to fit on and every fold a
    positive to score (tiny data sets have not)."""
    if folds < 2:
        return False
    fold = fold_of(ds, folds)
    rows = ds.labels.keep & fit_sample(ds, seed)
    y = ds.labels.y
    return all(y[rows & (fold != k)].sum() >= 2 and (~y[rows & (fold != k)]).sum() >= 2
               and y[ds.labels.keep & (fold == k)].any() for k in range(folds))


# ---------------------------------------------------------------- bag weights


BAG_TEMPERATURE = 1.0  # softmax temperature over a bag's log-odds (small: weight on the top few)


def bag_ids(ds: Dataset) -> np.ndarray:
    """Per sample, the bag of the failure it could catch, -1 for none: a failure's bag holds its
    positive samples whose time to failure lies in the catch window ``[min lead, horizon]`` (see
    :func:`alert_events`), numbered 0.. over ``ds``."""
    ttf = ds.labels.ttf
    with np.errstate(invalid="ignore"):
        inside = ds.labels.y & (ttf >= ds.horizon * MIN_LEAD_FRACTION) & (ttf <= ds.horizon)
    out = np.full(len(ttf), -1, dtype=np.int64)
    if inside.any():
        failure = np.column_stack([ds.dev[inside].astype(np.float64), np.round(ds.time[inside] + ttf[inside], 6)])
        out[inside] = np.unique(failure, axis=0, return_inverse=True)[1].ravel()
    return out


def bag_weights(bags: np.ndarray, scores: np.ndarray, temperature: float = BAG_TEMPERATURE) -> np.ndarray:
    """Sample weights that treat each failure's catch window as one bag (multiple-instance style):
    one alert in the window catches the failure, so its samples need not all score high. A bag
    keeps its size as its total weight, spread over its samples by a softmax of their scores'
    log-odds over ``temperature``: the samples a model already ranks high carry the bag, and the
    weak early ones, which look like the negatives just before the window, weigh little. Samples
    outside bags (``bags`` -1) weigh 1."""
    w = np.ones(len(bags))
    inside = np.flatnonzero(bags >= 0)
    if len(inside) == 0:
        return w
    b = np.unique(bags[inside], return_inverse=True)[1].ravel()
    z = logit(np.clip(scores[inside], SCORE_CLIP, 1.0 - SCORE_CLIP)) / temperature
    top = np.full(b.max() + 1, -np.inf)
    np.maximum.at(top, b, z)
    e = np.exp(z - top[b])
    w[inside] = np.bincount(b)[b] * e / np.bincount(b, weights=e)[b]
    return w


def inner_halves(ds: Dataset) -> np.ndarray:
    """Per sample, 0 or 1: its device's half for the inner scores of :func:`fit_bagged`."""
    return (device_hash(ds.grid.device_ids, "inner") % 2)[ds.dev]


def fit_weighted(est: object, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> object:
    """``est`` fitted with sample weights (a pipeline passes them to its last step)."""
    steps = getattr(est, "steps", None)
    est.fit(x, y, **({f"{steps[-1][0]}__sample_weight": weight} if steps else {"sample_weight": weight}))
    return est


def fit_bagged(estimator: str, seed: int, x: np.ndarray, y: np.ndarray, bags: np.ndarray,
               halves: np.ndarray) -> object:
    """The candidate ``estimator`` fitted on ``x, y`` with :func:`bag_weights` from its own scores
    out of fold over two halves of the devices (``halves``, 0 or 1 per row), so that no row is
    weighted by a model that saw it. Unit weights where a half lacks two positives and two
    negatives to fit on, or no row is in a bag."""
    weight = np.ones(len(y))
    if (bags >= 0).any() and all(y[halves != k].sum() >= 2 and (~y[halves != k]).sum() >= 2 for k in (0, 1)):
        scores = np.empty(len(y))
        for k in (0, 1):
            inner = candidates(seed)[estimator]()
            inner.fit(x[halves != k], y[halves != k])
            scores[halves == k] = inner.predict_proba(x[halves == k])[:, 1]
        weight = bag_weights(bags, scores)
    return fit_weighted(candidates(seed)[estimator](), x, y, weight)


def _fold_scores(estimator: str, seed: int, x_fit: np.ndarray, y_fit: np.ndarray, bags_fit: np.ndarray,
                 halves_fit: np.ndarray, x_score: np.ndarray) -> np.ndarray:
    est = fit_bagged(estimator, seed, x_fit, y_fit, bags_fit, halves_fit)
    return est.predict_proba(x_score)[:, 1]


def out_of_fold(ds: Dataset, x: np.ndarray, estimator: str, *, folds: int = 4, seed: int = 0,
                progress: Progress = _quiet, workers: int = 1) -> np.ndarray:
    """Scores of every sample of ``ds`` (features ``x``) by the candidate ``estimator`` fitted on
    the other devices: devices are dealt into ``folds`` groups by hash, each group scored by a
    model fitted on the rest, ``workers`` folds at a time in worker processes (1: in this
    process). Uncalibrated; for threshold-free figures and for choosing the estimator over many
    more failures than the validation devices hold."""
    fold = fold_of(ds, folds)
    rows = ds.labels.keep & fit_sample(ds, seed)
    y, bags, halves = ds.labels.y, bag_ids(ds), inner_halves(ds)
    out = np.full(len(ds.dev), np.nan)
    tasks = (delayed(_fold_scores)(estimator, seed, x[fit], y[fit], bags[fit], halves[fit], x[fold == k])
             for k in range(folds) for fit in [rows & (fold != k)])
    for k, scores in enumerate(Parallel(n_jobs=max(1, workers), return_as="generator")(tasks)):
        out[fold == k] = scores
        progress(f"{estimator} out of fold: fold {k + 1} of {folds} done")
    return out


def compare_out_of_fold(ds: Dataset, x: np.ndarray, names: Sequence[str], target_precision: float, *,
                        folds: int, seed: int = 0, progress: Progress = _quiet,
                        workers: int = 1) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Per candidate, out-of-fold PR-AUC and the event recall at the lowest threshold whose event
    precision reaches ``target_precision`` (0 where none does), with the scores."""
    figures: dict[str, dict] = {}
    scores: dict[str, np.ndarray] = {}
    keep = ds.labels.keep
    for name in names:
        t0 = time.perf_counter()
        s = scores[name] = out_of_fold(ds, x, name, folds=folds, seed=seed, progress=progress, workers=workers)
        th = choose_threshold(ds, s, target_precision)
        ev = alert_events(ds, s, th)
        reached = not np.isnan(ev["precision"]) and ev["precision"] >= target_precision
        figures[name] = {"pr_auc": float(average_precision_score(ds.labels.y[keep], s[keep])),
                         "recall": float(ev["recall"]) if reached else 0.0,
                         "precision": float(ev["precision"]), "failures": ev["failures"]}
        progress(f"{name}: out of fold PR-AUC {figures[name]['pr_auc']:.3f}, recall "
                 f"{figures[name]['recall']:.3f} at precision {figures[name]['precision']:.3f} "
                 f"({time.perf_counter() - t0:.1f} s)")
    return figures, scores


def choose_estimator(comparison: dict[str, float], selection: dict[str, dict]) -> str:
    """The candidate with the highest out-of-fold recall at the target precision (then PR-AUC);
    without out-of-fold figures, the highest validation PR-AUC."""
    if selection:
        return max(selection, key=lambda n: (selection[n]["recall"], selection[n]["pr_auc"]))
    return max(comparison, key=comparison.get)


def split(ds: Dataset, test_share: float, time_share: float, salt: str = "holdout") -> tuple[np.ndarray, np.ndarray, float]:
    """Masks of training and test samples (disjoint devices, test after ``t_cut``) and ``t_cut``."""
    is_test_dev = device_split(ds.grid.device_ids, test_share, salt)
    if is_test_dev.all() or not is_test_dev.any():
        is_test_dev = np.arange(len(is_test_dev)) % max(2, round(1 / max(test_share, 1e-3))) == 0
        if is_test_dev.all():
            is_test_dev[0::2] = False
    t_cut = float(np.nanquantile(ds.time, time_share))
    test = is_test_dev[ds.dev] & (ds.time >= t_cut)
    train = ~is_test_dev[ds.dev] & (ds.time < t_cut)
    return train, test, t_cut


def _check_learnable(train_ds: Dataset) -> None:
    """Refuse training data with too few failure or healthy samples, before any feature work."""
    keep, y = train_ds.labels.keep, train_ds.labels.y
    if not y[keep].any():
        raise ValueError(f"too few failures to train: no training sample lies within the horizon "
                         f"({train_ds.horizon:g}) before a failure (are the failures' times within their "
                         "devices' readings, in the same unit?)")
    if y[keep].sum() < 2:
        raise ValueError(f"too few failures to train: {int(y[keep].sum())} positive samples "
                         f"in {len(np.unique(train_ds.dev[keep & y]))} training devices")
    if (~y[keep]).sum() < 2:
        raise ValueError(f"too few healthy samples to train: {int((~y[keep]).sum())} samples without a failure "
                         f"within the horizon ({train_ds.horizon:g}) in the training devices; a shorter "
                         "horizon leaves more")


def train(ds: Dataset, spec: F.FeatureSpec, *, target_precision: float = 0.8,
          test_share: float = 0.3, time_share: float = 0.5, rul_cap: float | None = None,
          estimators: Sequence[str] | None = None, progress: Progress = _quiet,
          seed: int = 0, pooled: bool = False, folds: int = OOF_FOLDS, workers: int = 1) -> TrainResult:
    """Choose, fit, calibrate and threshold a model; evaluate on the held-out devices. With
    ``pooled``, the features include the pooled departures (:func:`F.pooled_features`), their
    healthy spreads fitted on the training samples.

    Out of fold over all training devices (``folds`` folds by device; see
    :func:`compare_out_of_fold`): the estimator is the candidate with the best event recall at
    ``target_precision``; a sigmoid fitted on its out-of-fold scores calibrates it
    (:class:`CrossFitCalibrated`) and the threshold is the lowest reaching ``target_precision`` on
    them; then it is fitted on every training device. With ``folds`` < 2 or too few failures to
    fill the folds, a quarter of the training devices is set aside instead: the best validation
    PR-AUC chooses, and calibration and threshold come from those devices. ``workers``: folds
    fitted at a time, in worker processes."""
    started = time.perf_counter()
    tr_mask, te_mask, t_cut = split(ds, test_share, time_share)
    train_ds, test_ds = ds.subset(tr_mask), ds.subset(te_mask)
    _check_learnable(train_ds)
    spec = F.fit_on_training(spec, ds.grid, np.unique(ds.dev[tr_mask]), t_cut)
    progress(f"features for {tr_mask.sum()} training and {te_mask.sum()} test samples")
    x_all = F.compute(ds.grid, spec, ds.dev, ds.step)
    if pooled:  # healthy spreads from the training samples, then the pooled columns (as compute)
        spec = F.fit_pooled(spec, x_all[tr_mask & ds.labels.keep & ~ds.labels.y])
        x_all = np.hstack([x_all, F.pooled_features(x_all, spec)])
    x_tr_full, x_te = x_all[tr_mask], x_all[te_mask]
    columns = informative_columns(x_tr_full[train_ds.labels.keep])
    x_tr = x_tr_full[:, columns]
    keep = train_ds.labels.keep
    y = train_ds.labels.y
    sampled = fit_sample(train_ds, seed)
    bags, halves = bag_ids(train_ds), inner_halves(train_ds)
    names = list(estimators or candidates(seed))
    selection: dict[str, dict] = {}
    oof_scores: dict[str, np.ndarray] = {}
    comparison: dict[str, float] = {}
    if folds_usable(train_ds, folds, seed):  # out of fold: choose, calibrate, threshold
        selection, oof_scores = compare_out_of_fold(train_ds, x_tr, names, target_precision,
                                                    folds=folds, seed=seed, progress=progress, workers=workers)
        comparison = {name: fig["pr_auc"] for name, fig in selection.items()}
        best = choose_estimator({}, selection)
        t0 = time.perf_counter()
        rows = keep & sampled
        est = fit_bagged(best, seed, x_tr[rows], y[rows], bags[rows], halves[rows])
        calibrated = CrossFitCalibrated(est).fit_scores(oof_scores[best][keep], y[keep])
        threshold = choose_threshold(train_ds, calibrated.calibrate(oof_scores[best]), target_precision)
        progress(f"{best} fitted on all {len(np.unique(train_ds.dev))} training devices "
                 f"({time.perf_counter() - t0:.1f} s)")
    else:  # too few failures for folds: a validation share of the training devices
        val = validation_devices(train_ds, share=0.25)[train_ds.dev]
        fit_rows, val_rows = keep & ~val & sampled, keep & val
        if y[fit_rows].sum() < 2 or y[val_rows].sum() < 1 or (~y[fit_rows]).sum() < 2:
            raise ValueError(
                f"too few failures to train: {int(y[keep].sum())} positive samples "
                f"in {len(np.unique(train_ds.dev[keep & y]))} training devices (a model is fitted on some "
                "devices and checked on others, so it needs failures on several devices)")
        fitted: dict[str, object] = {}
        for name in names:
            t0 = time.perf_counter()
            est = fit_bagged(name, seed, x_tr[fit_rows], y[fit_rows], bags[fit_rows], halves[fit_rows])
            p = est.predict_proba(x_tr[val_rows])[:, 1]
            comparison[name] = float(average_precision_score(y[val_rows], p))
            fitted[name] = est
            progress(f"{name}: validation PR-AUC {comparison[name]:.3f} ({time.perf_counter() - t0:.1f} s)")
        best = choose_estimator(comparison, {})
        calibrated = CalibratedClassifierCV(FrozenEstimator(fitted[best]), method="sigmoid")
        calibrated.fit(x_tr[val_rows], y[val_rows])
        val_score = calibrated.predict_proba(x_tr[val])[:, 1]
        threshold = choose_threshold(train_ds.subset(val), val_score, target_precision)
    progress(f"chose {best}; operating threshold {threshold:.3f}")

    ttf = train_ds.labels.ttf
    cap = rul_cap if rul_cap is not None else 2.0 * ds.horizon
    rul_target = np.where(np.isnan(ttf), cap, np.minimum(ttf, cap))
    reg = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.08, random_state=seed)
    reg.fit(x_tr[keep & sampled], rul_target[keep & sampled])
    modes = sorted({m for m in train_ds.labels.mode[keep & y] if m})
    mode_clf = None
    if len(modes) > 1:
        rows = keep & y & (train_ds.labels.mode != "")
        mode_clf = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
        mode_clf.fit(x_tr[rows], train_ds.labels.mode[rows].astype(str))
        modes = [str(c) for c in mode_clf.classes_]
    group_modes: dict[int, list[str]] = {}
    for g, m in zip(ds.grid.group[train_ds.dev[keep & y]], train_ds.labels.mode[keep & y], strict=True):
        if m and m not in group_modes.setdefault(int(g), []):
            group_modes[int(g)].append(str(m))
    model = FailureModel(
        spec=spec, classifier=calibrated, regressor=reg, mode_classifier=mode_clf, modes=modes,
        threshold=threshold, horizon=ds.horizon, rul_cap=cap, estimator=best,
        metric_names=ds.grid.slot_names, columns=columns, group_modes=group_modes,
    )
    train_s = time.perf_counter() - started
    model.metrics = evaluate(model, test_ds, x_te)
    model.metrics.update({"train_s": train_s, "t_cut": t_cut, "comparison": comparison, "selection": selection})
    progress(f"test: {format_metrics(model.metrics)}")
    return TrainResult(model, comparison, test_ds, x_te, train_s, tr_mask, te_mask, train_ds, x_tr,
                       selection, oof_scores)


def evaluate(model: FailureModel, ds: Dataset, x: np.ndarray | None = None) -> dict:
    """Sample PR-AUC, alert precision/recall at the model's threshold, lead times, RUL error."""
    if x is None:
        x = F.compute(ds.grid, model.spec, ds.dev, ds.step)
    p, rul = model.predict(x)
    out = score_metrics(ds, p, model.threshold)
    keep = ds.labels.keep
    sel = keep & ~np.isnan(ds.labels.ttf) & (ds.labels.ttf <= model.rul_cap)
    out["rul_rmse"] = (float(np.sqrt(np.mean((rul[sel] - ds.labels.ttf[sel]) ** 2)))
                       if sel.any() else float("nan"))
    return out


def score_metrics(ds: Dataset, p: np.ndarray, threshold: float) -> dict:
    """PR-AUC over kept samples, alert (event) and sample precision/recall at ``threshold``."""
    keep = ds.labels.keep
    y = ds.labels.y[keep]
    pr_auc = float(average_precision_score(y, p[keep])) if y.any() else float("nan")
    ev = alert_events(ds, p, threshold)
    alerts = p[keep] >= threshold
    s_prec = float((y & alerts).sum() / alerts.sum()) if alerts.any() else float("nan")
    s_rec = float((y & alerts).sum() / y.sum()) if y.any() else float("nan")
    return {"pr_auc": pr_auc, **ev, "sample_precision": s_prec, "sample_recall": s_rec,
            "samples": int(keep.sum()), "positives": int(y.sum())}


def baseline_scores(ds: Dataset, fit_mask: np.ndarray, quantile: float = 0.99) -> np.ndarray:
    """Threshold rule on raw readings: the share of metric slots whose latest step is above the
    ``quantile`` of that slot's healthy training readings (per device model). Alert when >= 1."""
    grid = ds.grid
    vals = grid.values[ds.dev, ds.step]  # [N, M]
    healthy = fit_mask & ds.labels.keep & ~ds.labels.y
    limits = np.full((int(grid.group.max()) + 1, vals.shape[1]), np.inf)
    for g in np.unique(grid.group):
        rows = healthy & (grid.group[ds.dev] == g)
        if rows.any():
            with np.errstate(all="ignore"):
                limits[g] = np.nanquantile(vals[rows], quantile, axis=0)
    limits = np.where(np.isnan(limits), np.inf, limits)
    over = vals > limits[grid.group[ds.dev]]
    return over.any(axis=1).astype(np.float64)


def format_metrics(m: dict) -> str:
    keys = ("pr_auc", "precision", "recall", "median_lead", "rul_rmse")
    return ", ".join(f"{k} {m[k]:.3f}" for k in keys if k in m)


def at_least_as_good(new: dict, active: dict) -> bool:
    """Promotion rule: PR-AUC and alert recall not lower, alert precision not lower by > 0.01."""
    def val(m: dict, k: str) -> float:
        v = m.get(k)
        return -1.0 if v is None or np.isnan(v) else float(v)
    return (val(new, "pr_auc") >= val(active, "pr_auc")
            and val(new, "recall") >= val(active, "recall")
            and val(new, "precision") >= val(active, "precision") - 0.01)
