"""Prediction bench: backfill simulator history, train, evaluate on held-out devices, score.

``python -m bench.predict [--devices 300 --days 90]`` starts a private PostgreSQL (or reuses
``--pg-dir`` with its data), seeds the fleet, backfills history (repairs and preventive visits
recorded as completed jobs through the service layer), trains with the hold-out evaluation
and the threshold-rule baseline, then scores every device. Prints one JSON line:
``scored_devices_per_s`` is end to end (database reads, features, models, storing predictions)
for a scorer pass over ``--scale-devices`` devices (the fleet and copies of it in the database) an
hour after the previous pass: the median of 4 hourly passes (``_range``: the slowest and fastest);
``scored_devices_per_s_full_read`` the first pass, which reads whole windows;
``model_devices_per_s`` features and models alone over 10,000 devices in memory, one thread.
``false_episodes_early`` counts the false alert episodes whose device fails within three horizons
(degradation seen too far ahead), the rest of the false ones being on devices not about to fail;
``false_episodes_early_held`` those early ones that lasted into their failure's catch window, which
``job_precision`` counts as true (the job the episode opens meets the failure developing).
``oof_*`` are out of fold over the training devices before the time cut (``--folds``, about 2.5
times the test set's failures, no threshold to fix): PR-AUC and the highest recall at any threshold
whose precision (``oof_``) or job precision (``oof_job_``) reaches ``--precision``;
``oof_caught_by_mode`` the failures with a phase caught per mode at the threshold of ``oof_recall``.
``job_threshold_*`` are the test set's figures at the threshold the operating rule would choose by
job precision instead of precision (the lowest at which the out-of-fold scores reach ``--precision``
job precision).
``readings_per_device_hour`` is the history's data rate, the median readings of a device in an hour
of the rollup (``--resolution-s`` sets it for a fresh backfill; the live fleet reports every 10 s, 360
an hour): the figures depend on it.
``python -m bench.predict_ceiling`` gives the ceiling of these figures on noise-free simulator data,
``python -m bench.predict_visibility`` how visible each failure mode is in the features.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import psycopg.sql
from threadpoolctl import threadpool_limits

from fieldops.config import Settings
from fieldops.db.migrate import migrate
from fieldops.runtime.postgres import LocalPostgres
from predict import data, pipeline, registry, scorer
from predict import features as F
from predict import model as M
from simulators import seed, store
from simulators.backfill import backfill
from simulators.history import JobHistory

END = datetime(2026, 6, 1, tzinfo=UTC)
DB = "bench_predict"
WARM_PASSES = 4  # hourly scorer passes after the first (which reads whole windows)


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--days", type=float, default=90)
    ap.add_argument("--resolution-s", type=int, default=600)
    ap.add_argument("--pg-dir", type=Path, help="keep the cluster here and reuse its backfill")
    ap.add_argument("--plots", type=Path, default=Path("var/predict/plots"))
    ap.add_argument("--estimators", nargs="+")
    ap.add_argument("--warning-h", type=float, default=72.0, help="simulator degradation phase (hours)")
    ap.add_argument("--seed", type=int, default=11, help="simulator seed of the backfill (another fleet history)")
    ap.add_argument("--horizon-h", type=float, default=pipeline.DEFAULT_HORIZON_H)
    ap.add_argument("--every", type=int, default=2, help="training sample every N hours")
    ap.add_argument("--precision", type=float, default=0.8, help="target precision of the out-of-fold figures")
    ap.add_argument("--pooled", action=argparse.BooleanOptionalAction, default=True,
                    help="the pooled departure features (largest departure across metrics; default on)")
    ap.add_argument("--folds", type=int, default=4,
                    help="out-of-fold figures over the training devices with this many folds (0: none)")
    ap.add_argument("--scale-devices", type=int, default=10000,
                    help="devices in the timed scorer passes (the fleet and copies of it)")
    args = ap.parse_args()
    tmp = None
    if args.pg_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-predict-")
        pg_dir = Path(tmp.name) / "pg"
    else:
        pg_dir = args.pg_dir
    cluster = LocalPostgres(pg_dir, fast_unsafe=True).start()
    try:
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            fresh = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone() is None
            if fresh:
                admin.execute(f'CREATE DATABASE "{DB}"')
        url = cluster.url_for(DB)
        migrate(url, Settings(env="test"))
        backfill_s = 0.0
        with psycopg.connect(url) as conn:
            if fresh:
                t = time.perf_counter()
                seed.seed_data(conn, now=END, secret="bench", devices=args.devices, technicians=5)
                conn.commit()
                log(f"backfilling {args.devices} devices x {args.days:g} days")
                result = backfill(url, days=args.days, devices=args.devices, resolution_s=args.resolution_s,
                                  seed=args.seed, end=END, recorder=JobHistory(conn), warning_h=args.warning_h)
                backfill_s = time.perf_counter() - t
                log(f"backfill: {result.readings} readings, {result.failures} failures, "
                    f"{result.visits} visits in {backfill_s:.0f} s")
            span = data.time_range(conn)  # the whole history's data rate, as an integer count
            rate = data.readings_per_hour(conn, *span) if span is not None else None
            per_hour = None if rate is None else int(rate)
            conn.execute("DELETE FROM predictions")
            conn.execute("DELETE FROM model_registry")
            conn.commit()
            run, version, promoted = pipeline.train_db(
                conn, days=args.days, plot_dir=args.plots, estimators=args.estimators, progress=log,
                horizon_h=args.horizon_h, every=args.every, pooled=args.pooled)
            conn.commit()
            model = run.result.model
            ids = data.active_device_ids(conn, END - scorer.timedelta(hours=scorer.ACTIVE_WITHIN_H))
            # end to end, from the database: scorer passes over SCALE_DEVICES devices (the bench's
            # fleet and copies of it with their last days of rollup), storing every prediction;
            # the first pass reads each device's whole window, the next (an hour later) only the
            # new hours (data.Window). Jobs are not opened here (tests cover that path).
            copies = _replicate(conn, ids, args.scale_devices, END - scorer.timedelta(hours=model.spec.history + 24))
            try:
                windows: dict = {}
                cold = scorer.score_pass(conn, model, version, END - scorer.timedelta(hours=WARM_PASSES),
                                         open_proactive=False, windows=windows)
                warm = [scorer.score_pass(conn, model, version, END - scorer.timedelta(hours=h),
                                          open_proactive=False, windows=windows)
                        for h in range(WARM_PASSES - 1, -1, -1)]
                rates = sorted(p.devices / p.seconds for p in warm)
                log(f"scorer passes over {cold.devices} devices: {cold.seconds:.2f} s reading whole windows, "
                    f"then hourly {', '.join(f'{p.seconds:.2f}' for p in warm)} s")
            finally:
                _drop_copies(conn, copies)
            # model throughput: features + predictions for every device from arrays already loaded
            fleet = data.load(conn, END - scorer.timedelta(hours=model.spec.history + 1), END, ids,
                              n_slots=model.spec.n_slots)
            reps = max(1, 10000 // max(len(ids), 1))
            grid = fleet.grid
            big = F.Grid(np.tile(grid.device_ids, reps), np.tile(grid.values, (reps, 1, 1)),
                         np.tile(grid.time, (reps, 1)), np.tile(grid.counts, (reps, 1, 1)),
                         grid.resets * reps, np.tile(grid.installed, reps), np.tile(grid.group, reps),
                         grid.slot_names, None if grid.flat is None else np.tile(grid.flat, (reps, 1)))
            with threadpool_limits(1):
                for _ in range(2):  # the scorer runs continuously: report the warm pass
                    t = time.perf_counter()
                    step = big.last_steps()
                    x = F.compute(big, model.spec, np.arange(len(step)), step)
                    t_features = time.perf_counter()
                    model.score(x)
                    t_done = time.perf_counter()
                bulk_s, features_s = t_done - t, t_features - t
            entry = registry.load(conn, version)[0]
            truth = ground_truth(conn)
            oof = {}
            if args.folds > 1:  # the chosen estimator's out-of-fold scores from training, if it compared
                scores = run.result.oof_scores.get(model.estimator) if args.folds == M.OOF_FOLDS else None
                if scores is None:
                    with threadpool_limits(1):
                        scores = M.out_of_fold(run.result.train, run.result.train_x, model.estimator,
                                               folds=args.folds, progress=log, workers=2)
                oof = out_of_fold_figures(run.result.train, scores, truth, args.precision)
                oof |= job_operating_point(run.result, model, scores, truth, args.precision)
            ids_of = run.result.test.grid.device_ids
            warned, abrupt = split_outcomes(model.metrics["outcomes"], ids_of, truth)
            b_warned, _ = split_outcomes(run.baseline["outcomes"], ids_of, truth)
            modes = by_mode(model.metrics["outcomes"], ids_of, truth)
        m, b = model.metrics, run.baseline
        out = {
            "devices": len(run.result.test.grid.device_ids), "days": args.days, "warning_h": args.warning_h,
            "horizon_h": args.horizon_h, "seed": args.seed, "pooled": args.pooled, "failures": len(run.result.test.failures),
            "readings_per_device_hour": per_hour,
            "estimator": model.estimator, "pr_auc": round(m["pr_auc"], 3),
            "precision": round(m["precision"], 3), "recall": round(warned["recall"], 3),
            "median_lead_h": round(warned["median_lead"], 1),
            "test_failures_warned": warned["failures"], "test_failures_sudden": abrupt["failures"],
            "recall_sudden": round(abrupt["recall"], 3), "recall_all": round(m["recall"], 3),
            "alert_episodes": m["alerts"], "false_episodes_early": m["early_alerts"],
            "false_episodes_early_held": m["early_held_alerts"], "job_precision": round(m["job_precision"], 3),
            "caught_by_mode": modes,
            "baseline_precision": round(b["precision"], 3), "baseline_recall": round(b_warned["recall"], 3),
            "baseline_job_precision": round(b["job_precision"], 3),
            "baseline_pr_auc": round(b["pr_auc"], 3), "baseline_median_lead_h": round(b_warned["median_lead"], 1),
            "sample_precision": round(m["sample_precision"], 3), "sample_recall": round(m["sample_recall"], 3),
            "rul_rmse_h": round(m["rul_rmse"], 1), "train_s": round(m["train_s"], 1),
            "comparison_pr_auc": {k: round(v, 3) for k, v in run.result.comparison.items()},
            "selection_oof": {k: {f: round(v, 3) if isinstance(v, float) else v for f, v in fig.items()}
                              for k, fig in run.result.selection.items()},
            "scored_devices_per_s": round(float(np.median(rates))),
            "scored_devices_per_s_range": [round(rates[0]), round(rates[-1])],
            "scored_devices_per_s_full_read": round(cold.devices / cold.seconds),
            "scored_devices": cold.devices,
            "model_devices_per_s": round(len(big.device_ids) / bulk_s),
            "scoring_features_share": round(features_s / bulk_s, 2),
            "backfill_s": round(backfill_s, 1), "model_version": entry.version, "promoted": promoted,
            **oof,
        }
        print(json.dumps(registry.json_safe(out)))  # noqa: T201
    finally:
        cluster.stop("fast")
        if tmp is not None:
            tmp.cleanup()
    return 0


COPY_TAG = "-scale-copy-"


def _replicate(conn: psycopg.Connection, ids: list[int], total: int, since: datetime) -> list[int]:
    """Copies of the devices ``ids`` (same model, site and installation) with their rollup rows
    from ``since`` on, until about ``total`` devices report, vacuumed; returns the copies' ids."""
    _drop_copies(conn, [r[0] for r in conn.execute(
        "SELECT id FROM devices WHERE strpos(serial, %s) > 0", (COPY_TAG,)).fetchall()])
    cols = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'telemetry_hourly' "
        "AND column_name <> 'device_id' ORDER BY ordinal_position").fetchall()]
    out: list[int] = []
    for k in range(1, max(0, -(-total // max(len(ids), 1)) - 1) + 1):
        rows = conn.execute(
            "INSERT INTO devices (serial, model_id, site_id, installed_at) "
            "SELECT serial || %s, model_id, site_id, installed_at FROM devices WHERE id = ANY(%s) "
            "RETURNING id, (SELECT o.id FROM devices o WHERE o.serial = left(devices.serial, -length(%s)))",
            (f"{COPY_TAG}{k}", ids, f"{COPY_TAG}{k}")).fetchall()
        conn.execute(
            psycopg.sql.SQL(
                "INSERT INTO telemetry_hourly (device_id, {cols}) SELECT m.copy, {src} FROM "
                "unnest(%s::int[], %s::int[]) AS m(copy, orig) JOIN telemetry_hourly h ON h.device_id = m.orig "
                "WHERE h.bucket >= %s").format(
                cols=psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, cols)),
                src=psycopg.sql.SQL(", ").join(psycopg.sql.Identifier("h", c) for c in cols)),
            ([r[0] for r in rows], [r[1] for r in rows], since))
        out += [r[0] for r in rows]
    conn.commit()
    # A running system's autovacuum has long since visited these rows; here it would start on the
    # fresh copies during the timed passes, so they are vacuumed (and analysed) first.
    conn.autocommit = True
    try:
        conn.execute("VACUUM ANALYZE telemetry_hourly, predictions")
    finally:
        conn.autocommit = False
    return out


def _drop_copies(conn: psycopg.Connection, copies: list[int]) -> None:
    for table in ("predictions", "telemetry_hourly"):
        conn.execute(psycopg.sql.SQL("DELETE FROM {} WHERE device_id = ANY(%s)").format(
            psycopg.sql.Identifier(table)), (copies,))
    conn.execute("DELETE FROM devices WHERE id = ANY(%s)", (copies,))
    conn.commit()


def ground_truth(conn: psycopg.Connection) -> dict[tuple[int, int], store.FailureTruth]:
    """The simulator's ground truth per (device id, failure minute); evaluation only, the model
    never sees it. A failure whose phase start equals its time was sudden."""
    return {(f.device_id, round(f.failed_at.timestamp() / 60)): f for f in store.failures(conn)}


def _truth_of(o: M.FailureOutcome, device_ids: np.ndarray, truth: dict) -> store.FailureTruth | None:
    return truth.get((int(device_ids[o.device_index]), round(o.time * 60)))


def split_outcomes(outcomes: list[M.FailureOutcome], device_ids: np.ndarray,
                   truth: dict) -> tuple[dict, dict]:
    """Event figures for the failures with a degradation phase and for the sudden ones."""
    def is_sudden(o: M.FailureOutcome) -> bool:
        f = _truth_of(o, device_ids, truth)
        return f is not None and f.onset_at >= f.failed_at

    return (M.summarise([o for o in outcomes if not is_sudden(o)], 0, 0),
            M.summarise([o for o in outcomes if is_sudden(o)], 0, 0))


def out_of_fold_figures(ds: M.Dataset, scores: np.ndarray, truth: dict, target: float) -> dict:
    """Threshold-free figures of out-of-fold scores: PR-AUC, and the highest recall (failures with
    a degradation phase) at any threshold whose precision, and whose job precision, reach
    ``target``; per failure mode, the catches at the threshold of that highest recall (by precision)."""
    keep = ds.labels.keep
    kept = scores[keep]
    out = {"oof_failures_warned": 0, "oof_pr_auc": round(float(M.average_precision_score(ds.labels.y[keep], kept)), 3)}
    best: dict[str, tuple] = {"precision": (0.0, float("nan"), float("nan")),
                              "job_precision": (0.0, float("nan"), float("nan"))}
    best_outcomes = None  # the failures' outcomes at the threshold of the best recall by precision
    for th in np.unique(np.quantile(kept, 1 - np.logspace(-4, -1, 100))):
        ev = M.alert_events(ds, scores, float(th))
        warned, _ = split_outcomes(ev["outcomes"], ds.grid.device_ids, truth)
        out["oof_failures_warned"] = warned["failures"]
        for key, (recall, _, _) in best.items():
            if ev[key] >= target and warned["recall"] > recall:
                best[key] = (warned["recall"], ev[key], warned["median_lead"])
                if key == "precision":
                    best_outcomes = ev["outcomes"]
    if best_outcomes is not None:
        out["oof_caught_by_mode"] = by_mode(best_outcomes, ds.grid.device_ids, truth)
    for key, (recall, prec, lead) in best.items():
        name = "oof" if key == "precision" else "oof_job"
        out[f"{name}_recall"], out[f"{name}_precision"] = round(recall, 3), round(prec, 3)
        out[f"{name}_median_lead_h"] = round(lead, 1)
    return out


def job_operating_point(result: M.TrainResult, model: M.FailureModel, scores: np.ndarray, truth: dict,
                        target: float) -> dict:
    """The test set at the threshold the operating rule would choose by job precision instead of
    precision: the lowest at which the calibrated out-of-fold ``scores`` reach ``target`` job
    precision (an early episode that lasts into its catch window counts as true)."""
    threshold = M.choose_threshold(result.train, model.classifier.calibrate(scores), target, key="job_precision")
    with threadpool_limits(1):
        ev = M.alert_events(result.test, model.predict(result.test_x)[0], threshold)
    warned, _ = split_outcomes(ev["outcomes"], result.test.grid.device_ids, truth)
    return {"job_threshold": round(threshold, 3), "job_threshold_precision": round(ev["precision"], 3),
            "job_threshold_job_precision": round(ev["job_precision"], 3),
            "job_threshold_recall": round(warned["recall"], 3),
            "job_threshold_median_lead_h": round(warned["median_lead"], 1)}


def by_mode(outcomes: list[M.FailureOutcome], device_ids: np.ndarray, truth: dict) -> dict[str, str]:
    """Caught / eligible failures with a degradation phase, per failure mode."""
    counts: dict[str, list[int]] = {}
    for o in outcomes:
        f = _truth_of(o, device_ids, truth)
        if o.eligible and f is not None and f.onset_at < f.failed_at:
            c = counts.setdefault(f.mode, [0, 0])
            c[0] += o.caught
            c[1] += 1
    return {mode: f"{c}/{n}" for mode, (c, n) in sorted(counts.items())}


if __name__ == "__main__":
    sys.exit(main())
