"""``fieldops predict ...``: train, evaluate, score, rul, score-loop, models."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from fieldops.cli import MAX_DAYS, db_id, int_between, positive_float
from fieldops.clock import Clock
from fieldops.config import Settings
from fieldops.db import connect
from predict import csvio, data

if TYPE_CHECKING:
    from predict.registry import Entry

log = logging.getLogger(__name__)

# predict.model's candidates, named here so that building the parser does not load scikit-learn
ESTIMATORS = ("hist_gradient_boosting", "logistic_regression", "random_forest")


def _modelling():
    """The modelling modules; scikit-learn and matplotlib load only when a predict command runs,
    not in every fieldops process that builds the command line."""
    from predict import model, pipeline, registry, scorer
    return model, pipeline, registry, scorer


MAX_COUNT = 1_000_000  # devices per batch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="failure prediction: train, evaluate, score")
    ps = p.add_subparsers(dest="predict_command", required=True)

    t = ps.add_parser("train", help="train from the database (registry) or from CSV files (--telemetry)")
    t.add_argument("--telemetry", type=Path, help="readings CSV: device_id,ts,<numeric metrics>...")
    t.add_argument("--failures", type=Path, help="failures CSV: device_id,ts[,mode]")
    t.add_argument("--out", type=Path, help="where to write the model (CSV mode)")
    t.add_argument("--horizon", type=positive_float(), help="failure horizon (hours; ts units for numeric CSV ts)")
    t.add_argument("--days", type=positive_float(MAX_DAYS), default=90.0, help="database mode: days of history")
    t.add_argument("--every", type=int_between(1, 24 * 7), default=2, help="database mode: sample every N hours")
    t.add_argument("--estimators", nargs="+", choices=ESTIMATORS, help="candidates to compare")
    t.set_defaults(func=cmd_train)

    e = ps.add_parser("evaluate", help="evaluate a model on held-out devices, write plots")
    e.add_argument("--version", type=db_id, help="registry version (default: the active model)")
    e.add_argument("--model", type=Path, help="a model file (CSV mode, with --telemetry and --failures)")
    e.add_argument("--telemetry", type=Path)
    e.add_argument("--failures", type=Path)
    e.add_argument("--days", type=positive_float(MAX_DAYS), default=90.0)
    e.set_defaults(func=cmd_evaluate)

    for name, helptext in (("score", "print device_id,p_fail"), ("rul", "print device_id,rul")):
        s = ps.add_parser(name, help=helptext)
        s.add_argument("--model", type=Path, required=name == "rul", help="model file")
        s.add_argument("--telemetry", type=Path, help="readings CSV (default for score: the database)")
        s.set_defaults(func=cmd_score, column="p_fail" if name == "score" else "rul")

    loop = ps.add_parser("score-loop", help="score the fleet periodically, open proactive jobs")
    loop.add_argument("--interval", type=positive_float(), default=600.0, help="seconds between passes")
    loop.add_argument("--once", action="store_true", help="one pass, then exit")
    loop.add_argument("--batch", type=int_between(1, MAX_COUNT), help="devices per batch (default: the scorer's)")
    loop.add_argument("--threads", type=int_between(1, 64),
                      help="batches scored at a time, features and models (default: the scorer's)")
    loop.set_defaults(func=cmd_score_loop, process_name="scorer")

    ps.add_parser("models", help="list the registry").set_defaults(func=cmd_models)


def _progress(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def _fail(msg: str) -> int:
    sys.stderr.write(f"fieldops predict: {msg}\n")
    return 2


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    _, pipeline, _, _ = _modelling()
    plot_dir = settings.data_path / "predict" / "plots"
    if args.telemetry or args.failures or args.out:
        if not (args.telemetry and args.failures and args.out):
            return _fail("CSV training needs --telemetry, --failures and --out")
        try:
            run = pipeline.train_csv(args.telemetry, args.failures, args.out, horizon=args.horizon,
                                     plot_dir=plot_dir, progress=_progress, estimators=args.estimators)
        except (csvio.CsvError, ValueError) as exc:
            return _fail(str(exc))
        sys.stdout.write(json.dumps(_public(run.result.model.metrics)) + "\n")
        return 0
    with connect(settings.require_database_url()) as conn:
        try:
            run, version, promoted = pipeline.train_db(
                conn, days=args.days, horizon_h=args.horizon or pipeline.DEFAULT_HORIZON_H,
                every=args.every, plot_dir=plot_dir, estimators=args.estimators, progress=_progress)
        except ValueError as exc:
            return _fail(str(exc))
        conn.commit()
    _progress(f"model v{version} registered, {'now active' if promoted else 'not promoted'}")
    sys.stdout.write(json.dumps({"version": version, "promoted": promoted, **_public(run.result.model.metrics)}) + "\n")
    return 0


def _public(metrics: dict) -> dict:
    """Metrics as strict JSON (NaN becomes null), without the list of lead times."""
    M, _, registry, _ = _modelling()
    return registry.json_safe(M.public(metrics))


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    _, pipeline, registry, _ = _modelling()
    plot_dir = settings.data_path / "predict" / "plots"
    if args.model:
        if not (args.telemetry and args.failures):
            return _fail("evaluating a model file needs --telemetry and --failures")
        try:
            model = pipeline.load_model_file(args.model)
            metrics = pipeline.evaluate_csv(model, args.telemetry, args.failures)
        except (csvio.CsvError, ValueError) as exc:
            return _fail(str(exc))
        sys.stdout.write(json.dumps(_public(metrics)) + "\n")
        return 0
    with connect(settings.require_database_url()) as conn:
        try:
            entry, model = (registry.load(conn, args.version) if args.version
                            else registry.active(conn) or (None, None))
            if model is None:
                return _fail("no active model: run `fieldops predict train` first")
            metrics = pipeline.evaluate_db(conn, model, days=args.days, plot_dir=plot_dir, progress=_progress)
        except (LookupError, ValueError, registry.ArtifactMismatch) as exc:
            return _fail(str(exc))
    sys.stdout.write(json.dumps({"version": entry.version, **_public(metrics)}) + "\n")
    return 0


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    _, pipeline, registry, scorer = _modelling()
    out = csv.writer(sys.stdout, lineterminator="\n")
    if args.telemetry:
        if not args.model:
            return _fail("scoring a CSV file needs --model")
        try:
            rows = pipeline.score_csv(pipeline.load_model_file(args.model), args.telemetry)
        except (csvio.CsvError, ValueError) as exc:
            return _fail(str(exc))
        out.writerow(["device_id", args.column])
        for device, p, rul in rows:
            out.writerow([device, f"{p:.4f}" if args.column == "p_fail" else f"{rul:.4g}"])
        return 0
    if args.column == "rul":
        return _fail("rul needs --telemetry")
    clock = Clock.from_settings(settings.clock_speed, settings.clock_anchor)
    with connect(settings.require_database_url()) as conn:
        current = registry.active(conn)
        if current is None:
            return _fail("no active model: run `fieldops predict train` first")
        ids = data.active_device_ids(conn, clock.now() - timedelta(hours=scorer.ACTIVE_WITHIN_H))
        preds = scorer.score_devices(conn, current[1], clock.now(), ids)
    out.writerow(["device_id", "p_fail"])
    for p in preds:
        out.writerow([p.device_id, f"{p.p_fail:.4f}"])
    return 0


def cmd_score_loop(args: argparse.Namespace, settings: Settings) -> int:
    _, _, registry, scorer = _modelling()
    clock = Clock.from_settings(settings.clock_speed, settings.clock_anchor)
    windows: dict = {}  # each batch's rolling window, kept across passes
    rate_checked: tuple[int, datetime] | None = None  # model version and service time of the last check
    while True:
        with connect(settings.require_database_url()) as conn:
            current = registry.active(conn)
            if current is None:
                log.warning("no active model yet; waiting")
            else:
                now = clock.now()
                try:
                    if (rate_checked is None or rate_checked[0] != current[0].version
                            or now - rate_checked[1] >= timedelta(hours=scorer.RATE_CHECK_H)):
                        scorer.check_data_rate(conn, current[1], now)
                        rate_checked = (current[0].version, now)
                    result = scorer.score_pass(conn, current[1], current[0].version, now,
                                               batch=scorer.BATCH if args.batch is None else args.batch,
                                               windows=windows, compute_threads=scorer.COMPUTE_THREADS
                                               if args.threads is None else args.threads)
                except (AttributeError, ValueError, TypeError, psycopg.Error) as exc:
                    log.error("scoring with model v%d failed: %s", current[0].version, exc)
                    conn.rollback()
                    if args.once:
                        return 1
                else:
                    if args.once:
                        sys.stdout.write(scorer.summary(result) + "\n")
        if args.once:
            return 0
        time.sleep(args.interval)


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    _, _, registry, _ = _modelling()
    with connect(settings.require_database_url()) as conn:
        for e in registry.entries(conn):
            sys.stdout.write(model_line(e) + "\n")
    return 0


def model_line(e: Entry) -> str:
    """One registry entry on one line: version (* active), when, estimator, hold-out figures,
    the training window and its data rate, the artifact's hash."""
    m = e.metrics
    window = ("-" if e.train_start is None or e.train_end is None
              else f"{e.train_start:%Y-%m-%d}..{e.train_end:%Y-%m-%d}")
    rate = "-" if e.readings_per_hour is None else f"{e.readings_per_hour:g}"
    return (f"v{e.version}{' *' if e.active else '  '} {e.created_at:%Y-%m-%d %H:%M} {e.estimator:24s} "
            f"pr_auc={m.get('pr_auc')} precision={m.get('precision')} recall={m.get('recall')} "
            f"trained={window} readings_per_hour={rate} sha256={e.sha256[:12]}")
