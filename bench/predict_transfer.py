"""A model trained on one history, evaluated on another: the cost of a data-rate change.

``python -m bench.predict_transfer --model-pg A --data-pg B`` takes the active model that
``python -m bench.predict --pg-dir A`` registered and evaluates it on the held-out devices of the
history in B (the bench's split: the same devices by hash, the samples after B's time cut), with
B's ground truth splitting failures with a degradation phase from sudden ones, as the bench does.
With A and B backfilled at different ``--resolution-s``, it measures what scoring hourly means of
another number of readings than the model learned from costs (the scorer's data-rate check). The
histories differ in more than their rate (the simulator draws per reading), so compare against
the model trained on B itself (``bench.predict --pg-dir B``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import psycopg
from threadpoolctl import threadpool_limits

from bench.predict import DB, ground_truth, split_outcomes
from fieldops.runtime.postgres import LocalPostgres
from predict import data, pipeline, registry
from predict import features as F
from predict import model as M

T = TypeVar("T")


def _with_db(pg_dir: Path, fn: Callable[[psycopg.Connection], T]) -> T:
    cluster = LocalPostgres(pg_dir, fast_unsafe=True).start()
    try:
        with psycopg.connect(cluster.url_for(DB)) as conn:
            return fn(conn)
    finally:
        cluster.stop("fast")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-pg", type=Path, required=True, help="cluster whose active model is evaluated")
    ap.add_argument("--data-pg", type=Path, required=True, help="cluster whose held-out devices it is evaluated on")
    args = ap.parse_args()
    found = _with_db(args.model_pg, registry.active)
    if found is None:
        sys.stderr.write(f"no active model in {args.model_pg}: run bench.predict --pg-dir there first\n")
        return 1
    entry, model = found

    def load(conn: psycopg.Connection) -> tuple[M.Dataset, dict, float | None]:
        ds, _, start, end = pipeline.load_dataset(conn, days=90, horizon_h=model.horizon,
                                                  settle_h=pipeline.DEFAULT_SETTLE_H, every=2)
        return ds, ground_truth(conn), data.readings_per_hour(conn, start, end)

    ds, truth, rate = _with_db(args.data_pg, load)
    _, te, _ = M.split(ds, 0.3, 0.5)
    test = ds.subset(te)
    with threadpool_limits(1):
        p, _ = model.predict(F.compute(ds.grid, model.spec, test.dev, test.step))
    m = M.score_metrics(test, p, model.threshold)
    warned, _ = split_outcomes(m["outcomes"], ds.grid.device_ids, truth)
    ttf = test.labels.ttf  # healthy: no failure within three horizons
    healthy = test.labels.keep & ~test.labels.y & (np.isnan(ttf) | (ttf > M.NEAR_HORIZONS * model.horizon))
    print(json.dumps(registry.json_safe({  # noqa: T201
        "model_version": entry.version, "model_readings_per_hour": model.readings_per_hour,
        "data_readings_per_hour": rate, "threshold": round(model.threshold, 3),
        "pr_auc": round(m["pr_auc"], 3), "precision": round(m["precision"], 3),
        "recall": round(warned["recall"], 3), "test_failures_warned": warned["failures"],
        "median_lead_h": round(warned["median_lead"], 1), "alert_episodes": m["alerts"],
        "false_episodes_early": m["early_alerts"], "job_precision": round(m["job_precision"], 3),
        "healthy_alert_share": float(np.mean(p[healthy] >= model.threshold)) if healthy.any() else None,
    })))
    return 0


if __name__ == "__main__":
    sys.exit(main())
