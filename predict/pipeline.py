"""Training and evaluation runs, from the database or from CSV files, with baseline and plots."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import psycopg
from threadpoolctl import threadpool_limits

from predict import csvio, data, plots, registry
from predict import features as F
from predict import model as M

log = logging.getLogger(__name__)

DEFAULT_HORIZON_H = 72.0
DEFAULT_SETTLE_H = 24.0


@dataclass(slots=True)
class Run:
    result: M.TrainResult
    baseline: dict
    plot_paths: list[Path]


def fit(ds: M.Dataset, spec: F.FeatureSpec, *, progress: M.Progress, plot_dir: Path | None,
        estimators: list[str] | None = None, unit: str = "h", target_precision: float = 0.8,
        pooled: bool = True) -> Run:
    """Train and evaluate, evaluate the raw-metric threshold rule on the same hold-out, plot."""
    with threadpool_limits(1):  # the machine is shared; one thread is also fastest at this size
        result = M.train(ds, spec, progress=progress, estimators=estimators,
                         target_precision=target_precision, pooled=pooled,
                         workers=min(M.OOF_FOLDS, os.cpu_count() or 1))  # folds in worker processes
        base_scores = M.baseline_scores(ds, result.train_mask)[result.test_mask]
        baseline = M.score_metrics(result.test, base_scores, 0.5)
        progress(f"baseline (threshold rule): {M.format_metrics(baseline)}")
        result.model.metrics["baseline"] = M.public(baseline)
        paths: list[Path] = []
        if plot_dir is not None:
            p, _ = result.model.predict(result.test_x)
            paths = _plots(plot_dir, result.model, result.test, result.test_x, p, baseline, unit)
    return Run(result, baseline, paths)


def _plots(plot_dir: Path, model: M.FailureModel, test: M.Dataset, x: np.ndarray, p: np.ndarray,
           baseline: dict, unit: str, metrics: dict | None = None) -> list[Path]:
    keep = test.labels.keep
    names = np.array(F.feature_names(model.spec))
    cols = np.arange(len(names)) if model.columns is None else model.columns
    metrics = metrics if metrics is not None else model.metrics
    ranker = model.classifier  # importance by PR-AUC, which a monotone calibration leaves as it is
    if isinstance(ranker, M.CrossFitCalibrated):
        ranker = ranker.estimator
    return plots.save_all(plot_dir, test.labels.y[keep], p[keep], metrics["leads"], baseline, metrics,
                          ranker, x[keep][:, cols], list(names[cols]), unit=unit)


# ---------------------------------------------------------------- database


def load_dataset(conn: psycopg.Connection, *, days: float, horizon_h: float, settle_h: float,
                 every: int, end: datetime | None = None) -> tuple[M.Dataset, F.FeatureSpec, datetime, datetime]:
    span = data.time_range(conn)
    if span is None:
        raise ValueError("no telemetry in the database: nothing to train on")
    end = end or span[1]
    start = max(span[0], end - timedelta(days=days))
    fleet = data.load(conn, start, end)
    spec = F.FeatureSpec(n_slots=fleet.grid.values.shape[2], n_counts=len(data.COUNT_SEVERITIES))
    ds = M.build_dataset(fleet.grid, fleet.failures, fleet.repairs, horizon_h, settle_h, every=every)
    return ds, spec, start, end


def train_db(conn: psycopg.Connection, *, days: float = 90, horizon_h: float = DEFAULT_HORIZON_H,
             settle_h: float = DEFAULT_SETTLE_H, every: int = 2, plot_dir: Path | None = None,
             estimators: list[str] | None = None, progress: M.Progress = M._quiet,
             pooled: bool = True) -> tuple[Run, int, bool]:
    """Train from the database, compare with the active model on the same hold-out, register."""
    progress("loading telemetry, events and jobs")
    ds, spec, start, end = load_dataset(conn, days=days, horizon_h=horizon_h, settle_h=settle_h, every=every)
    progress(f"{len(ds.grid.device_ids)} devices, {len(ds.failures)} failures, {start:%Y-%m-%d} to {end:%Y-%m-%d}")
    run = fit(ds, spec, progress=progress, plot_dir=plot_dir, estimators=estimators, pooled=pooled)
    run.result.model.readings_per_hour = data.readings_per_hour(conn, start, end)
    current = registry.active(conn)
    active_version = active_metrics = None
    if current is not None:
        entry, old = current
        active_version = entry.version
        try:
            with threadpool_limits(1):
                active_metrics = M.evaluate(old, run.result.test)
            progress(f"active model v{entry.version} on this hold-out: {M.format_metrics(active_metrics)}")
        except (AttributeError, ValueError, TypeError) as exc:  # built by other feature code
            log.warning("active model v%d cannot score this data (%s); it is replaced", entry.version, exc)
            active_metrics = None
    params = {"spec": asdict(spec),
              "horizon_h": horizon_h, "settle_h": settle_h, "every": every, "days": days, "pooled": pooled,
              "estimator": run.result.model.estimator, "threshold": run.result.model.threshold,
              "readings_per_hour": run.result.model.readings_per_hour,
              "comparison": run.result.comparison, "selection": run.result.selection}
    version, promoted = registry.register(
        conn, run.result.model, params=params, train_start=start, train_end=end,
        active_version=active_version, active_metrics=active_metrics)
    return run, version, promoted


def evaluate_db(conn: psycopg.Connection, model: M.FailureModel, *, days: float = 90,
                every: int = 2, plot_dir: Path | None = None,
                progress: M.Progress = M._quiet) -> dict:
    """A stored model on the held-out devices of the current data, with the baseline and plots."""
    progress("loading telemetry, events and jobs")
    ds, _, _, _ = load_dataset(conn, days=days, horizon_h=model.horizon, settle_h=DEFAULT_SETTLE_H,
                               every=every)
    return _evaluate(ds, model, plot_dir, progress)


def _evaluate(ds: M.Dataset, model: M.FailureModel, plot_dir: Path | None, progress: M.Progress,
              unit: str = "h") -> dict:
    tr, te, _ = M.split(ds, 0.3, 0.5)
    test = ds.subset(te)
    with threadpool_limits(1):
        progress(f"scoring {int(te.sum())} held-out samples")
        x = F.compute(ds.grid, model.spec, test.dev, test.step)
        metrics = M.evaluate(model, test, x)
        baseline = M.score_metrics(test, M.baseline_scores(ds, tr)[te], 0.5)
        metrics["baseline"] = M.public(baseline)
        progress(f"model: {M.format_metrics(metrics)}; baseline: {M.format_metrics(baseline)}")
        if plot_dir is not None:
            p, _ = model.predict(x)
            _plots(plot_dir, model, test, x, p, baseline, unit, metrics)
    return metrics


# ---------------------------------------------------------------- CSV


def default_horizon(readings: csvio.Readings, failures: list[F.Failure]) -> float:
    """72 hours for ISO times; otherwise a tenth of the median device history span."""
    if readings.iso_time:
        return DEFAULT_HORIZON_H
    t = readings.grid.time
    spans = np.nanmax(t, axis=1) - np.nanmin(t, axis=1)
    span = float(np.median(spans[spans > 0])) if (spans > 0).any() else 1.0
    return max(span / 10.0, 1e-9)


def train_csv(telemetry: Path, failures_path: Path, out: Path, *, horizon: float | None = None,
              plot_dir: Path | None = None, progress: M.Progress = M._quiet,
              estimators: list[str] | None = None) -> Run:
    """Cold start: train from exported CSV history (``estimators``: the candidates to compare, by
    default all) and write the model with joblib."""
    _check_writable(out)
    readings = csvio.read_readings(telemetry)
    failures = csvio.read_failures(failures_path, readings)
    csvio.with_resets(readings, failures)
    h = horizon if horizon is not None else default_horizon(readings, failures)
    ignored = f" (ignored, no numbers: {', '.join(readings.ignored)})" if readings.ignored else ""
    progress(f"{len(readings.device_ids)} devices, metrics {', '.join(readings.metric_names) or '-'}{ignored}, "
             f"{len(failures)} failures, horizon {h:g}")
    spec = F.FeatureSpec(n_slots=max(len(readings.metric_names), 1), n_counts=0)
    ds = M.build_dataset(readings.grid, failures, [[] for _ in readings.device_ids], h, h / 3.0)
    run = fit(ds, spec, progress=progress, plot_dir=plot_dir, estimators=estimators,
              unit="h" if readings.iso_time else "ts units")
    run.result.model.metric_names = [readings.metric_names]
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(run.result.model, out, compress=3)
    progress(f"model written to {out} (sha256 {hashlib.sha256(out.read_bytes()).hexdigest()[:12]})")
    return run


def _check_writable(out: Path) -> None:
    """Refuse a model path that cannot be written, before the training run rather than after it."""
    if out.is_dir():
        raise ValueError(f"{out}: is a directory, not a model file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{out}: cannot create its directory ({exc.strerror})") from exc
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"{out}: not writable")


def load_model_file(path: Path) -> M.FailureModel:
    """The model in a file written by :func:`train_csv` (joblib runs the file's code: trusted files
    only). Anything else is a ValueError naming the file."""
    try:
        obj = joblib.load(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot load model ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - unpickling other bytes fails in any number of ways
        raise ValueError(f"{path}: not a model file written by `fieldops predict train` "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, M.FailureModel):
        raise ValueError(f"{path}: not a fieldops failure model")
    return obj


def _read_for_model(model: M.FailureModel, telemetry: Path) -> csvio.Readings:
    """``telemetry`` read in the columns ``model`` was trained on; warns of the ones it lacks."""
    names = model.metric_names[0] if model.metric_names else None
    readings = csvio.read_readings(telemetry, metric_names=names)
    if readings.missing:
        log.warning("%s has no column for %s: scored as not reported", telemetry, ", ".join(readings.missing))
    return readings


def score_csv(model: M.FailureModel, telemetry: Path) -> list[tuple[str, float, float]]:
    """(device_id, p_fail, rul) at each device's last reading of ``telemetry``."""
    readings = _read_for_model(model, telemetry)
    grid = readings.grid
    dev = np.arange(len(readings.device_ids))
    step = grid.last_steps()
    with threadpool_limits(1):
        x = F.compute(grid, model.spec, dev, step)
        p, rul = model.predict(x)
    return [(d, float(pi), float(ri)) for d, pi, ri in zip(readings.device_ids, p, rul, strict=True)]


def evaluate_csv(model: M.FailureModel, telemetry: Path, failures_path: Path,
                 plot_dir: Path | None = None, progress: M.Progress = M._quiet) -> dict:
    """A model file on the held-out devices of a CSV file set."""
    readings = _read_for_model(model, telemetry)
    failures = csvio.read_failures(failures_path, readings)
    csvio.with_resets(readings, failures)
    ds = M.build_dataset(readings.grid, failures, [[] for _ in readings.device_ids], model.horizon,
                         model.horizon / 3.0)
    return _evaluate(ds, model, plot_dir, progress, unit="h" if readings.iso_time else "ts units")
