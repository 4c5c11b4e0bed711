"""The oracle ceiling bench: its alert-rule counting by hand, and phases drawn like the simulator's."""

from __future__ import annotations

import numpy as np
import pytest

import bench.predict_ceiling as ceiling
import simulators.device as device
from bench.predict_ceiling import (
    LEVELS,
    best_pooled,
    phase_paths,
    rule_figures,
    strength_factor,
    time_at_progress,
)

W = 12.0  # catch window [f - 12, f - 2]


def test_an_alert_more_than_w_before_the_failure_is_false_but_still_catches_it():
    f = rule_figures(np.array([30.0]), np.array([10.0]), W)  # alert 20 h ahead, continuing to the failure
    assert (f["tp"][0], f["episodes"][0], f["caught"][0], f["job_tp"][0]) == (0.0, 1.0, 1.0, 1.0)


def test_an_alert_inside_the_window_is_true_and_caught():
    f = rule_figures(np.array([30.0]), np.array([20.0]), W)  # 10 h ahead
    assert (f["tp"][0], f["episodes"][0], f["caught"][0]) == (1.0, 1.0, 1.0)


def test_an_alert_too_late_is_true_but_does_not_catch():
    f = rule_figures(np.array([30.0]), np.array([29.0]), W)  # 1 h ahead, below the minimum lead of 2
    assert (f["tp"][0], f["caught"][0], f["job_tp"][0]) == (1.0, 0.0, 1.0)


def test_a_failure_before_the_alert_starts_opens_no_episode():
    f = rule_figures(np.array([5.0]), np.array([10.0]), W)
    assert (f["episodes"][0], f["caught"][0]) == (0.0, 0.0)


def test_the_pooled_rule_keeps_the_precision_target():
    # mode a: fails at 10 or 40 after the start; mode b: always at 10
    figs = {"a": rule_figures(np.array([10.0, 40.0]), np.arange(0.0, 41.0), W),
            "b": rule_figures(np.array([10.0]), np.arange(0.0, 41.0), W)}
    recall, precision, _, pick = best_pooled(figs, {"a": 1.0, "b": 1.0}, target=0.8)
    # alerting at once catches everything but mode a's 40 h failure is alerted 40 h ahead (false):
    # 3 true of 4 weighted episodes is 0.75 < 0.8; waiting 28 h in mode a catches 3 of 4 at 1.0
    assert precision >= 0.8 and recall == pytest.approx(0.75)
    assert figs["b"]["caught"][pick["b"]] == 1.0


def test_phases_end_about_their_drawn_length():
    rng = np.random.default_rng(0)
    hours = phase_paths(rng, np.full(4000, 72.0), np.array([1.0]))[0]  # hours to failure
    assert np.median(hours) == pytest.approx(72.0, rel=0.08)
    assert (hours > 0).all()


def test_progress_time_is_interpolated_between_health_levels():
    paths = np.zeros((len(LEVELS), 1))
    paths[:, 0] = np.arange(len(LEVELS)) * 2.0  # 2 h per level; the failure (1.0) at 80 h
    got = time_at_progress(paths, np.array([0.5]))  # health 0.9: level 20
    assert got[0] == pytest.approx(40.0)
    got = time_at_progress(paths, np.array([0.5125]))  # half way between levels 20 and 21
    assert got[0] == pytest.approx(41.0)


def test_progress_beyond_one_is_reached_only_after_the_failure():
    paths = np.arange(len(LEVELS), dtype=float)[:, None]
    assert time_at_progress(paths, np.array([1.4]))[0] > paths[-1, 0]


def test_the_strength_factor_is_the_power_weighted_log_mean(monkeypatch):
    monkeypatch.setattr(device, "EFFECT_SPREAD", 0.0)
    monkeypatch.setattr(device, "FAINT_SHARE", 1.0)  # every effect at FAINT_SCALE
    k = strength_factor(np.random.default_rng(0), np.array([2.0]), 3)
    assert k == pytest.approx(np.full(3, device.FAINT_SCALE ** 0.5))
    k = strength_factor(np.random.default_rng(0), np.array([1.0, 2.0]), 1)  # (1 + 2) / (1 + 4) of the log
    assert k[0] == pytest.approx(device.FAINT_SCALE ** 0.6)


def test_the_signature_oracle_without_strength_spread_is_the_health_oracle(monkeypatch):
    monkeypatch.setattr(device, "EFFECT_SPREAD", 0.0)
    monkeypatch.setattr(device, "FAINT_SHARE", 0.0)
    rng = np.random.default_rng(0)
    paths = phase_paths(rng, np.full(500, 72.0), LEVELS)
    sig = ceiling.signature_figures(rng, paths, np.array([1.0, 2.0]), np.array([0.0]), 72.0)
    health = rule_figures(paths[-1], paths[:-1], 72.0)
    # estimate level 0.5 at delay 0 (rule 10 of 21 levels x 1 delay) alerts from health 0.9 (level 20)
    for name in ("tp", "episodes", "caught", "job_tp"):
        assert sig[name][10] == pytest.approx(health[name][20])


def test_the_signature_oracle_does_at_least_as_well_as_the_onset_oracle():
    rng = np.random.default_rng(0)
    paths = phase_paths(rng, 72.0 * rng.lognormal(0.0, 0.25, 2000), LEVELS)
    delays = np.arange(0.0, 200.0, 2.0)
    onset = rule_figures(paths[-1], delays, 72.0)
    sig = ceiling.signature_figures(rng, paths, np.array([1.0]), delays, 72.0)
    # estimate level 0 is the onset oracle's rules, so its best is never worse
    assert ceiling.best_per_mode(sig, 0.8)[1] >= ceiling.best_per_mode(onset, 0.8)[1]
