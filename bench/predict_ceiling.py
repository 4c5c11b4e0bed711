"""Ceiling of the alert figures on simulator data: an oracle that knows when each degradation
phase starts.

``python -m bench.predict_ceiling [--warning-h 72 --horizon-h 72 --pg-dir DIR]`` draws degradation
phases the way ``simulators.device.DeviceSim`` does (length ``warning_h * warning_scale *
lognormal(0, PHASE_SPREAD)``, health climbing from VISIBLE_AT to 1.0 as a gamma process of shape
PHASE_REGULARITY over the phase, on the backfill's 10-minute steps) and evaluates the best alert
rule that can be written with perfect knowledge of the phase start and the mode, but not of the
phase length: alert continuously from ``e`` hours after the start until the failure, ``e`` chosen
per mode. With W the label horizon and the definitions of ``predict.model.alert_events``:

- precision (strict): the episode's first alert is at most W before the failure;
- job precision: the episode also counts when it lasts into the failure's catch window;
- recall: an alert in ``[f - W, f - W/6]``.

A second oracle knows the hidden health itself (the progress through the phase, which readings
show only through noisy signatures of unit-dependent strength) and alerts from a health level
chosen per mode. A third, the *signature* oracle, knows the phase start and the mode and sees each
of the mode's effects without noise, at the unit's strength (drawn as the simulator draws it:
lognormal, some faint), but not that strength: from the levels it estimates the progress (each
effect's level over its nominal magnitude, to the power 1/power, combined in logs with weights
power squared) and alerts from ``e`` hours after the start once the estimate reaches a level,
both chosen per mode. It estimates what noise-free levels can add to knowing the phase start. None of them
has false alarms on healthy devices or missed detections: real models do worse than the onset
oracle on both counts, and cannot beat the health oracle. Prints one JSON
line: for each oracle, the best pooled recall at strict precision >= ``--precision`` (per-mode
rules chosen jointly by a Lagrangian sweep) with its job precision, and the per-mode figures. Pooled weights are each mode's share of the failures
with a phase in the bench database given by ``--pg-dir`` (see ``bench.predict``), else equal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from simulators.device import PHASE_REGULARITY, PHASE_SPREAD, VISIBLE_AT, effect_strengths
from simulators.models import MODEL_SPECS

STEP_H = 1.0 / 6.0  # the backfill's 10-minute resolution


def phase_paths(rng: np.random.Generator, phase_h: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``[len(levels), N]`` hours from the phase start until the hidden health first reaches each
    of ``levels`` (the last level 1.0 is the failure) for phases of lengths ``phase_h``."""
    out = np.full((len(levels), len(phase_h)), np.nan)
    todo = np.arange(len(phase_h))
    health = np.full(len(phase_h), VISIBLE_AT)
    t = 0.0
    while len(todo):
        t += STEP_H
        health[todo] += rng.gamma(PHASE_REGULARITY * STEP_H / phase_h[todo], (1.0 - VISIBLE_AT) / PHASE_REGULARITY)
        reached = (health[todo][None, :] >= levels[:, None]) & np.isnan(out[:, todo])
        out[:, todo] = np.where(reached, t, out[:, todo])
        todo = todo[health[todo] < 1.0]
    return out


def rule_figures(fail_h: np.ndarray, delays: np.ndarray, horizon: float) -> dict[str, np.ndarray]:
    """Per alert rule: expected true and false episodes and caught failures per failure, under
    the strict and the job definition. ``delays`` is the alert start in hours after the phase
    start, one per rule (``[K]``) or per rule and failure (``[K, N]``)."""
    f = fail_h[None, :]
    e = delays[:, None] if delays.ndim == 1 else delays
    alerted = f > e  # the failure comes after the alert starts
    strict = alerted & (f - e <= horizon)
    caught = f - e >= horizon / 6.0
    return {"tp": strict.mean(axis=1), "episodes": alerted.mean(axis=1),
            "job_tp": (strict | (alerted & caught)).mean(axis=1), "caught": caught.mean(axis=1)}


def best_pooled(figs: dict[str, dict], weights: dict[str, float], target: float) -> tuple[float, float, float, dict]:
    """Highest pooled recall with pooled strict precision >= ``target``: per mode the delay that
    maximises ``caught + lam * (tp - target * episodes)``, swept over ``lam``."""
    best = (0.0, float("nan"), float("nan"), {})
    for lam in np.concatenate([[0.0], np.logspace(-3, 3, 400)]):
        pick = {m: int(np.argmax(f["caught"] + lam * (f["tp"] - target * f["episodes"]))) for m, f in figs.items()}
        tot = sum(weights[m] for m in figs)
        tp = sum(weights[m] * figs[m]["tp"][k] for m, k in pick.items())
        job = sum(weights[m] * figs[m]["job_tp"][k] for m, k in pick.items())
        ep = sum(weights[m] * figs[m]["episodes"][k] for m, k in pick.items())
        rec = sum(weights[m] * figs[m]["caught"][k] for m, k in pick.items()) / tot
        if ep > 0 and tp / ep >= target and rec > best[0]:
            best = (rec, tp / ep, job / ep, pick)
    return best


def mode_weights(pg_dir: Path | None, fault_codes: list[str]) -> dict[str, float]:
    """Per fault code, its failures with a degradation phase in the bench database (1 each
    without one)."""
    if pg_dir is None:
        return dict.fromkeys(fault_codes, 1.0)
    import psycopg

    from bench.predict import DB
    from fieldops.runtime.postgres import LocalPostgres
    from simulators import store

    cluster = LocalPostgres(pg_dir, fast_unsafe=True).start()
    try:
        with psycopg.connect(cluster.url_for(DB)) as conn:
            counts: dict[str, float] = {}
            for f in store.failures(conn):
                if f.onset_at < f.failed_at:
                    counts[f.fault_code] = counts.get(f.fault_code, 0.0) + 1.0
    finally:
        cluster.stop("fast")
    return {c: counts.get(c, 0.0) for c in fault_codes}


LEVELS = np.linspace(VISIBLE_AT, 1.0, 41)  # health levels of the health oracle's rules; last: failure
ESTIMATE_LEVELS = np.linspace(0.0, 1.0, 21)  # progress estimates of the signature oracle's rules


def strength_factor(rng: np.random.Generator, powers: np.ndarray, n: int) -> np.ndarray:
    """``[n]`` factors ``k`` by which a unit's effect strengths scale the signature oracle's
    progress estimate: each effect gives ``s * a ** (1 / power)`` for its strength ``a``, and the
    estimates are combined in logs with weights ``power ** 2`` (their inverse variances)."""
    a = effect_strengths(rng, (n, len(powers)))
    return np.exp((np.log(a) * powers).sum(axis=1) / (powers**2).sum())


def time_at_progress(paths: np.ndarray, progress: np.ndarray) -> np.ndarray:
    """Hours from the phase start until the hidden progress first reaches ``progress`` (one per
    phase; linear between the ``LEVELS`` of ``paths``), after the failure where it exceeds 1."""
    u = np.clip(progress, 0.0, 1.0) * (len(LEVELS) - 1)
    i = np.minimum(u.astype(int), len(LEVELS) - 2)
    cols = np.arange(paths.shape[1])
    lo = np.where(i == 0, 0.0, paths[i, cols])  # the phase starts at VISIBLE_AT, time 0
    t = lo + (u - i) * (paths[i + 1, cols] - lo)
    return np.where(progress > 1.0, paths[-1] + 1.0, t)


def signature_figures(rng: np.random.Generator, paths: np.ndarray, powers: np.ndarray,
                      delays: np.ndarray, horizon: float) -> dict[str, np.ndarray]:
    """Rule figures of the signature oracle: per estimate level (outer) and delay (inner), alert
    from ``max(delay, time the estimate reaches the level)``."""
    k = strength_factor(rng, powers, paths.shape[1])
    parts = [rule_figures(paths[-1], np.maximum(delays[:, None], time_at_progress(paths, level / k)[None, :]),
                          horizon) for level in ESTIMATE_LEVELS]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def best_per_mode(f: dict[str, np.ndarray], target: float) -> tuple[int, float, float]:
    """Rule index, recall and precision of the best rule for one mode alone (-1 if none reaches it)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = f["tp"] / f["episodes"]
    ok = prec >= target
    if not ok.any():
        return -1, 0.0, float("nan")
    k = int(np.argmax(np.where(ok, f["caught"], -1.0)))
    return k, float(f["caught"][k]), float(prec[k])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warning-h", type=float, default=72.0, help="the simulator's degradation phase (hours)")
    ap.add_argument("--horizon-h", type=float, default=72.0, help="the label horizon W (hours)")
    ap.add_argument("--precision", type=float, default=0.8, help="the precision target")
    ap.add_argument("--samples", type=int, default=20000, help="phases drawn per mode")
    ap.add_argument("--pg-dir", type=Path, help="a bench.predict cluster: weight modes by its failures")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    delays = np.arange(0.0, 4.0 * args.warning_h * 1.5, 1.0)
    oracles: dict[str, dict[str, dict]] = {"onset": {}, "health": {}, "signature": {}}
    codes: dict[str, str] = {}  # mode key -> its fault code (unique per device model and mode)
    per_mode: dict[str, dict] = {}
    for spec in MODEL_SPECS.values():
        for ms in spec.modes:
            key = f"{spec.code}:{ms.code}"
            codes[key] = ms.fault_code
            phase = args.warning_h * ms.warning_scale * rng.lognormal(0.0, PHASE_SPREAD, args.samples)
            paths = phase_paths(rng, phase, LEVELS)
            fail_h = paths[-1]
            oracles["onset"][key] = onset = rule_figures(fail_h, delays, args.horizon_h)
            oracles["health"][key] = health = rule_figures(fail_h, paths[:-1], args.horizon_h)
            powers = np.array([eff.power for eff in ms.effects])
            oracles["signature"][key] = sig = signature_figures(rng, paths, powers, delays, args.horizon_h)
            k, rec, prec = best_per_mode(onset, args.precision)
            kh, rec_h, prec_h = best_per_mode(health, args.precision)
            _, rec_s, prec_s = best_per_mode(sig, args.precision)
            per_mode[key] = {"median_phase_h": round(float(np.median(fail_h)), 1),
                             "p90_phase_h": round(float(np.quantile(fail_h, 0.9)), 1),
                             "onset_recall": round(rec, 3), "onset_precision": round(prec, 3),
                             "onset_delay_h": float(delays[k]) if k >= 0 else None,
                             "health_recall": round(rec_h, 3), "health_precision": round(prec_h, 3),
                             "health_level": round(float(LEVELS[kh]), 3) if kh >= 0 else None,
                             "signature_recall": round(rec_s, 3), "signature_precision": round(prec_s, 3)}
    by_code = mode_weights(args.pg_dir, list(codes.values()))
    w = {k: by_code[codes[k]] for k in codes}
    out: dict = {"warning_h": args.warning_h, "horizon_h": args.horizon_h, "target_precision": args.precision,
                 "weights": "bench failures" if args.pg_dir else "equal"}
    for name, figs in oracles.items():
        rec, prec, job, _ = best_pooled(figs, w, args.precision)
        out[f"{name}_recall"], out[f"{name}_precision"] = round(rec, 3), round(prec, 3)
        out[f"{name}_job_precision"] = round(job, 3)
    out["per_mode"] = per_mode
    print(json.dumps(out))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
