"""How visible each failure mode is in the model's features, one feature at a time.

``python -m bench.predict_visibility --pg-dir DIR`` reads the backfill that ``python -m
bench.predict --pg-dir DIR`` left there and computes the model's features for every device (the
flat slots and residual models fitted as training fits them). Per failure mode and device model, over the failures
with a degradation phase (simulator ground truth), and per quantile ``q``: for every feature and sign, the threshold
that leaves the share ``1 - q`` of the healthy samples of the same device model beyond it (healthy:
no failure within three horizons), and how many of the mode's failures have a sample beyond it in
their catch window ``[f - W, f - W/6]``. It reports the best feature with the healthy alert
episodes that threshold raises (alerts of one device less than W/3 apart form one episode).

Each feature is chosen in-sample over all devices, so the figure is optimistic for a single
feature, and it is no bound for models that combine features. It says which modes the readings
carry strongly, 12 h or more before the failure, and which only faintly under the simulator's
noise, load and weather, which ``bench.predict_ceiling``'s noise-free oracles do not see. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psycopg

from bench.predict import DB, ground_truth
from fieldops.runtime.postgres import LocalPostgres
from predict import features as F
from predict import model as M
from predict import pipeline

QUANTILES = (0.999, 0.9999)


@dataclass(frozen=True, slots=True)
class Visibility:
    """The best single feature for one mode at one healthy quantile."""

    caught: int  # failures with a catch-window sample beyond the threshold
    feature: str  # name with its sign: "+" above the healthy quantile, "-" below the low one
    threshold: float


def best_feature(x: np.ndarray, names: list[str], healthy: np.ndarray, window_failure: np.ndarray,
                 q: float) -> Visibility:
    """The feature and sign that catch most failures at healthy quantile ``q``.

    ``x`` holds the samples of one device model, ``healthy`` marks its healthy rows and
    ``window_failure`` gives, per row, the failure whose catch window holds it (-1: none). A
    failure is caught when one of its rows lies strictly beyond the threshold. Ties keep the
    first feature, "+" before "-"."""
    hi = np.nanquantile(x[healthy], q, axis=0)
    lo = np.nanquantile(x[healthy], 1.0 - q, axis=0)
    rows = window_failure >= 0
    fid = window_failure[rows]
    best = Visibility(0, "", float("nan"))
    with np.errstate(invalid="ignore"):
        for j, name in enumerate(names):
            for sign, th in (("+", hi[j]), ("-", lo[j])):
                if np.isnan(th):
                    continue
                v = x[rows, j]
                beyond = v > th if sign == "+" else v < th
                caught = len(np.unique(fid[beyond]))
                if caught > best.caught:
                    best = Visibility(caught, sign + name, float(th))
    return best


def episodes(dev: np.ndarray, time: np.ndarray, gap: float) -> int:
    """Alert episodes among alerting samples: per device, runs of alerts at most ``gap`` apart."""
    if len(dev) == 0:
        return 0
    order = np.lexsort((time, dev))
    d, t = dev[order], time[order]
    return 1 + int(((np.diff(d) != 0) | (np.diff(t) > gap)).sum())


def describe(feature: str, slot_names) -> str:
    """``+m4:resid_6`` as ``+m4:resid_6 (compressor_current_a)``: the slot's metric, if any."""
    slot = feature[2:].split(":")[0] if feature[1:2] == "m" else ""
    if not slot.isdigit() or int(slot) >= len(slot_names) or not slot_names[int(slot)]:
        return feature
    return f"{feature} ({slot_names[int(slot)]})"


def catch_windows(ds: M.Dataset, failures: list[F.Failure], min_lead: float) -> np.ndarray:
    """Per sample of ``ds``: the index into ``failures`` whose catch window ``[f - W, f -
    min_lead]`` holds it (kept samples only), else -1."""
    out = np.full(len(ds.dev), -1, dtype=np.int64)
    for k, f in enumerate(failures):
        ahead = f.time - ds.time
        out[(ds.dev == f.device_index) & ds.labels.keep & (ahead >= min_lead) & (ahead <= ds.horizon)] = k
    return out


def visibility(ds: M.Dataset, x: np.ndarray, names: list[str], warned: dict[str, list[F.Failure]],
               quantiles: tuple[float, ...] = QUANTILES) -> dict:
    """Per mode and quantile: failures, the best feature (with its slot's metric), failures
    caught, healthy episodes; and the share of all warned failures their mode's best feature
    catches, per quantile. ``warned`` holds each mode's failures with a degradation phase, all on
    devices of one model."""
    W = ds.horizon
    lab = ds.labels
    group = ds.grid.group[ds.dev]
    healthy_all = lab.keep & (np.isnan(lab.ttf) | (lab.ttf > M.NEAR_HORIZONS * W))
    out: dict = {"modes": {}}
    caught_total = {q: 0 for q in quantiles}
    total = 0
    for mode, failures in sorted(warned.items()):
        g = int(ds.grid.group[failures[0].device_index])
        rows = group == g
        xs, healthy = x[rows], healthy_all[rows]
        sub = replace(ds.subset(rows), failures=failures)
        win = catch_windows(sub, failures, W * M.MIN_LEAD_FRACTION)
        n = len(np.unique(win[win >= 0]))  # failures with a kept sample in their catch window
        total += n
        figures: dict = {"failures": n}
        for q in quantiles:
            best = best_feature(xs, names, healthy, win, q)
            eps = 0
            if best.feature:
                j = names.index(best.feature[1:])
                v = xs[healthy, j]
                alert = v > best.threshold if best.feature[0] == "+" else v < best.threshold
                eps = episodes(sub.dev[healthy][alert], sub.time[healthy][alert], W * M.EPISODE_GAP_FRACTION)
            caught_total[q] += best.caught
            figures[str(q)] = {"caught": best.caught, "feature": describe(best.feature, ds.grid.slot_names[g]),
                               "healthy_episodes": eps}
        out["modes"][mode] = figures
    out["failures_warned"] = total
    out["visible_share"] = {str(q): round(caught_total[q] / total, 3) if total else None for q in quantiles}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg-dir", type=Path, required=True, help="the cluster bench.predict --pg-dir left")
    ap.add_argument("--days", type=float, default=90)
    ap.add_argument("--horizon-h", type=float, default=pipeline.DEFAULT_HORIZON_H)
    ap.add_argument("--every", type=int, default=2, help="a sample every N hours")
    args = ap.parse_args()
    cluster = LocalPostgres(args.pg_dir, fast_unsafe=True).start()
    try:
        with psycopg.connect(cluster.url_for(DB)) as conn:
            ds, spec, _, _ = pipeline.load_dataset(conn, days=args.days, horizon_h=args.horizon_h,
                                                   settle_h=pipeline.DEFAULT_SETTLE_H, every=args.every)
            truth = ground_truth(conn)
    finally:
        cluster.stop("fast")
    train, _, t_cut = M.split(ds, 0.3, 0.5)
    spec = F.fit_on_training(spec, ds.grid, np.unique(ds.dev[train]), t_cut)
    x = F.compute(ds.grid, spec, ds.dev, ds.step)
    names = F.feature_names(spec)
    warned: dict[str, list[F.Failure]] = {}
    for f in ds.failures:
        t = truth.get((int(ds.grid.device_ids[f.device_index]), round(f.time * 60)))
        if t is not None and t.onset_at < t.failed_at:  # device models share some mode codes
            warned.setdefault(f"{t.mode}/{ds.grid.group[f.device_index]}", []).append(f)
    out = {"devices": len(ds.grid.device_ids), "days": args.days, "horizon_h": args.horizon_h,
           **visibility(ds, x, names, warned)}
    print(json.dumps(out))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
