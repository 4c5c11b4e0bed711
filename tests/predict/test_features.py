"""Window features against values computed by hand."""

from __future__ import annotations

import copyreg
import io
import math
import pickle
from dataclasses import replace

import numpy as np
import pytest

from predict import features as F


def one_metric_grid(values: list[float], resets: list[float] = (), counts: list[float] | None = None) -> F.Grid:
    n = len(values)
    c = np.zeros((1, n, 1)) if counts is None else np.array(counts, dtype=float).reshape(1, n, 1)
    return F.Grid(
        device_ids=np.array([1]), values=np.array(values, dtype=float).reshape(1, n, 1),
        time=np.arange(n, dtype=float).reshape(1, n), counts=c,
        resets=[np.array(resets, dtype=float)], installed=np.array([-10.0]), group=np.array([0]),
    )


SPEC = F.FeatureSpec(windows=(3,), extreme_windows=(3,), baseline_lookback=6, baseline_len=2,
                     count_windows=(2,), n_slots=1, n_counts=0)


def row(grid: F.Grid, step: int, spec: F.FeatureSpec = SPEC) -> dict[str, float]:
    x = F.compute(grid, spec, np.array([0]), np.array([step]))[0]
    return dict(zip(F.feature_names(spec), x, strict=True))


def test_window_mean_std_and_trend_match_hand_computation():
    f = row(one_metric_grid([1, 2, 3, 4, 5, 6]), 5)
    # window = steps 3..5 -> 4, 5, 6; baseline = steps 0..1 -> 1, 2
    assert f["m0:mean_3"] == pytest.approx(5.0)
    assert f["m0:std_3"] == pytest.approx(1.0)
    assert f["m0:base_mean"] == pytest.approx(1.5)
    assert f["m0:base_std"] == pytest.approx(math.sqrt(0.5))
    scale = math.sqrt(0.5) + 1e-3 * 1.5
    assert f["m0:z_3"] == pytest.approx((5.0 - 1.5) / scale, rel=1e-6)
    assert f["m0:trend_3"] == pytest.approx(1.0 * 2 / scale, rel=1e-6)  # slope 1 per step over 2 steps
    assert f["m0:zmin_3"] == pytest.approx((4 - 1.5) / scale, rel=1e-6)
    assert f["m0:zmax_3"] == pytest.approx((6 - 1.5) / scale, rel=1e-6)


def test_missing_values_are_skipped_not_counted_as_zero():
    f = row(one_metric_grid([1, 2, 3, 4, math.nan, 8]), 5)
    assert f["m0:mean_3"] == pytest.approx(6.0)  # (4 + 8) / 2
    assert f["m0:std_3"] == pytest.approx(math.sqrt(8.0))


def test_windows_start_after_the_last_reset():
    f = row(one_metric_grid([9, 9, 9, 1, 1, 1], resets=[2.0]), 5,
            F.FeatureSpec(windows=(6,), extreme_windows=(6,), baseline_lookback=6, baseline_len=2,
                          count_windows=(2,), n_slots=1))
    assert f["m0:mean_6"] == pytest.approx(1.0)  # steps 3..5 only: before the repair is another machine
    assert f["m0:base_mean"] == pytest.approx(1.0)
    assert f["since_reset"] == pytest.approx(3.0)
    assert f["age"] == pytest.approx(15.0)


def test_event_counts_sum_over_their_window():
    grid = one_metric_grid([1, 1, 1, 1, 1, 1], counts=[1, 0, 2, 0, 3, 1])
    f = row(grid, 5, F.FeatureSpec(windows=(3,), extreme_windows=(3,), baseline_lookback=6, baseline_len=2,
                                   count_windows=(2, 6), n_slots=1, n_counts=1))
    assert f["c0:count_2"] == 4.0
    assert f["c0:count_6"] == 7.0


def test_each_sample_only_sees_its_past():
    grid = one_metric_grid([1, 2, 3, 100, 100, 100])
    assert row(grid, 2)["m0:mean_3"] == pytest.approx(2.0)


def test_an_empty_window_at_the_first_step_has_no_readings():
    values = np.arange(12, dtype=float).reshape(1, 6, 2)
    zero, two = np.array([0]), np.array([2])
    for span in (1, 1000):  # compiled window sums, prefix sums (the span is longer than the grid)
        stats = F.window_stats(values, np.array([0]), {"none": (zero, zero), "two": (zero, two)}, span=span)
        assert (stats["none"]["n"] == 0).all() and np.isnan(stats["none"]["mean"]).all()
        assert stats["two"]["mean"].tolist() == [[1.0, 2.0]]


def test_compiled_window_sums_give_the_prefix_sums_statistics():
    rng = np.random.default_rng(7)
    values = rng.normal(50.0, 5.0, (4, 30, 3))
    values[rng.random(values.shape) < 0.3] = np.nan
    dev = rng.integers(0, 4, 12)
    lo = rng.integers(0, 20, 12)
    bounds = {"a": (lo, lo + rng.integers(0, 11, 12)), "b": (np.zeros(12, dtype=int), lo)}
    direct = F.window_stats(values, dev, bounds, span=1)  # few samples: compiled sums
    prefix = F.window_stats(values, dev, bounds, span=1000)  # dense: prefix sums
    for key in bounds:
        for stat in ("n", "mean", "std", "slope"):
            np.testing.assert_allclose(direct[key][stat], prefix[key][stat], rtol=1e-9, atol=1e-9)


def test_window_extremes_skip_missing_readings_and_are_nan_without_any():
    nan = float("nan")
    seen = row(one_metric_grid([1, 2, nan, 9, nan, 7]), 5)
    scale = math.sqrt(0.5) + 1e-3 * 1.5
    assert seen["m0:zmin_3"] == pytest.approx((7 - 1.5) / scale, rel=1e-6)
    assert seen["m0:zmax_3"] == pytest.approx((9 - 1.5) / scale, rel=1e-6)
    empty = row(one_metric_grid([1, 2, 3, nan, nan, nan]), 5)
    assert math.isnan(empty["m0:zmin_3"]) and math.isnan(empty["m0:zmax_3"])


def test_the_fleet_centre_carries_what_all_units_share():
    # five units of one model; at step 1 all rise by 10 (weather), unit 4 stands out by 3 at step 2
    base = np.array([[1.0, 11.0, 1.0]] * 5)
    base[:, :] += np.arange(5)[:, None] * 0.5
    base[4, 2] += 3.0
    centre, scale = F.fleet_centre(base[:, :, None], np.zeros(5, dtype=int), min_devices=5)
    rel = base - centre[0, :, 0]
    assert np.allclose(rel[:, 0], rel[:, 1])  # the shared rise leaves no trace
    assert rel[4, 2] > rel[4, 1] + 2.0
    assert centre[0, 1, 0] == pytest.approx(12.0)  # 11 + mean offset 1.0 (+ 0.6 of unit 4 at step 2 only)
    assert scale[0, 0] > 0


def test_the_fleet_centre_needs_enough_peers():
    centre, scale = F.fleet_centre(np.ones((3, 2, 1)), np.zeros(3, dtype=int), min_devices=5)
    assert np.isnan(centre).all() and (scale == 1.0).all()


def test_scoring_one_step_per_device_gives_the_training_features():
    """The scoring path (matrix products over each device's last steps) equals prefix sums."""
    rng = np.random.default_rng(3)
    d, t = 4, 40
    values = rng.normal(10.0, 2.0, (d, t, 2)) + np.arange(t)[None, :, None] * 0.1
    values[rng.random(values.shape) < 0.1] = np.nan
    grid = F.Grid(
        device_ids=np.arange(d), values=values, time=np.broadcast_to(np.arange(t, dtype=float), (d, t)).copy(),
        counts=np.zeros((d, t, 0)), resets=[np.array([]), np.array([35.0]), np.array([3.0]), np.array([])],
        installed=np.full(d, -5.0), group=np.zeros(d, dtype=np.int64),
    )
    spec = F.FeatureSpec(windows=(3, 8), extreme_windows=(3,), baseline_lookback=12, baseline_len=5,
                         count_windows=(4,), n_slots=2)
    last = np.full(d, t - 1)
    scored = F.compute(grid, spec, np.arange(d), last)
    dev, step = np.repeat(np.arange(d), t), np.tile(np.arange(t), d)
    trained = F.compute(grid, spec, dev, step)[step == t - 1]
    assert np.allclose(scored, trained, rtol=1e-4, atol=1e-4, equal_nan=True)


def test_across_slots_the_largest_and_rms_departure_are_taken():
    slot0 = [1, 2, 1, 2, 5, 5, 5]
    values = np.array([slot0, [1.0] * 7]).T.reshape(1, 7, 2)
    grid = F.Grid(device_ids=np.array([1]), values=values, time=np.arange(7, dtype=float).reshape(1, 7),
                  counts=np.zeros((1, 7, 0)), resets=[np.array([])], installed=np.array([0.0]),
                  group=np.array([0]))
    spec = F.FeatureSpec(windows=(3,), extreme_windows=(3,), baseline_lookback=7, baseline_len=4,
                         count_windows=(2,), n_slots=2)
    f = dict(zip(F.feature_names(spec), F.compute(grid, spec, np.array([0]), np.array([6]))[0], strict=True))
    z0 = (5.0 - 1.5) / (math.sqrt(1 / 3) + 1e-3 * 1.5)  # slot 1 is flat: z 0
    assert f["all:max_z_3"] == pytest.approx(z0, rel=1e-5)
    assert f["all:rms_z_3"] == pytest.approx(z0 / math.sqrt(2), rel=1e-5)
    assert f["all:max_trend_3"] == pytest.approx(0.0, abs=1e-6)


def test_fleet_features_compare_the_window_with_the_models_centre():
    # units at 1, 1.5, 2, 2.5, 3; unit 4 is 3 higher in steps 3..5: centre 2, then 2.6; MAD 0.98
    values = np.repeat((1.0 + 0.5 * np.arange(5))[:, None], 6, axis=1)
    values[4, 3:] += 3.0
    grid = F.Grid(device_ids=np.arange(5), values=values[:, :, None],
                  time=np.broadcast_to(np.arange(6, dtype=float), (5, 6)).copy(), counts=np.zeros((5, 6, 0)),
                  resets=[np.array([])] * 5, installed=np.zeros(5), group=np.zeros(5, dtype=np.int64))
    spec = F.FeatureSpec(windows=(3,), extreme_windows=(3,), baseline_lookback=6, baseline_len=3,
                         count_windows=(2,), n_slots=1, fleet=True, fleet_min_devices=5)
    f = dict(zip(F.feature_names(spec), F.compute(grid, spec, np.array([4]), np.array([5]))[0], strict=True))
    assert f["m0:fleet_3"] == pytest.approx((6.0 - 2.6) / 0.98)
    assert f["m0:fleet_shift_3"] == pytest.approx((6.0 - 2.6) / 0.98 - (3.0 - 2.0) / 0.98)


def two_slot_grid(load: np.ndarray, slot0: np.ndarray, group: int = 0) -> F.Grid:
    n = len(load)
    return F.Grid(
        device_ids=np.array([1]), values=np.stack([slot0, load], axis=1).reshape(1, n, 2),
        time=np.arange(n, dtype=float).reshape(1, n), counts=np.zeros((1, n, 0)),
        resets=[np.array([])], installed=np.array([-10.0]), group=np.array([group]),
    )


RESID_SPEC = F.FeatureSpec(windows=(3, 8), extreme_windows=(3,), baseline_lookback=12, baseline_len=5,
                           count_windows=(4,), n_slots=2, fleet=False)


def test_the_residual_model_recovers_how_each_slot_follows_the_others():
    load = np.linspace(0.1, 0.9, 80) + 0.1 * np.sin(np.arange(80.0))
    grid = two_slot_grid(load, 3.0 + 2.0 * load)
    spec = F.fit_residuals(RESID_SPEC, grid, np.array([0]), before=1e9)
    coef = np.asarray(spec.residual_coef)
    assert np.allclose(coef[0, 0], [0.0, 2.0, 3.0]) and np.allclose(coef[0, 1], [0.5, 0.0, -1.5])


def test_residual_features_are_the_departure_from_the_baseline_residual_in_residual_scale():
    load = np.array([0.2, 0.8] * 10)
    slot0 = 3.0 + 2.0 * load
    slot0[-3:] += 1.0  # the last three steps read 1.0 above what the load explains
    spec = replace(RESID_SPEC, residual_coef=(((0.0, 2.0, 3.0), (0.0, 0.0, 0.0)),),
                     residual_scale=((0.5, 0.0),))
    r = row(two_slot_grid(load, slot0), 19, spec)
    assert r["m0:resid_3"] == pytest.approx(1.0 / 0.5)
    assert r["m0:resid_8"] == pytest.approx(3.0 / 8.0 / 0.5)  # steps 12..19 against the base 8..12
    assert math.isnan(r["m1:resid_3"])  # scale 0: no residual model for this slot
    assert r["all:max_resid_3"] == pytest.approx(2.0)


def test_a_block_of_consecutive_devices_at_one_step_gets_the_features_of_its_samples_taken_apart():
    """Scoring one block of consecutive devices at one step and the same samples in another order
    (the devices reversed) give the same features, with a reset cutting some windows."""
    rng = np.random.default_rng(4)
    d, t = 5, 40
    values = rng.normal(10.0, 2.0, (d, t, 2))
    values[rng.random(values.shape) < 0.1] = np.nan
    grid = F.Grid(
        device_ids=np.arange(d), values=values, time=np.broadcast_to(np.arange(t, dtype=float), (d, t)).copy(),
        counts=rng.poisson(0.3, (d, t, 2)).astype(float),
        resets=[np.array([]), np.array([36.0]), np.array([3.0]), np.array([30.0]), np.array([])],
        installed=np.full(d, -5.0), group=np.zeros(d, dtype=np.int64),
    )
    spec = F.FeatureSpec(windows=(3, 8), extreme_windows=(3, 6), baseline_lookback=12, baseline_len=5,
                         count_windows=(4, 20), n_slots=2, n_counts=2)
    block = F.compute(grid, spec, np.arange(d), np.full(d, t - 1))
    apart = F.compute(grid, spec, np.arange(d)[::-1], np.full(d, t - 1))[::-1]
    np.testing.assert_array_equal(block, apart)  # NaN where NaN


def weather_grid(d: int = 6, t: int = 60, seed: int = 3, noise: float = 0.0) -> F.Grid:
    """``d`` units of one model sharing the weather ``w``: slot 0 = 3 + 2 load + w, slot 1 = 1 +
    load + 0.5 w, each unit at its own load, plus ``noise`` (standard deviation)."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.0, 1.0, (d, t))
    w = 4.0 * np.sin(np.arange(t) / 5.0)
    values = np.stack([3.0 + 2.0 * load + w, 1.0 + load + 0.5 * w], axis=2) + rng.normal(0.0, noise, (d, t, 2))
    return F.Grid(device_ids=np.arange(d), values=values,
                  time=np.broadcast_to(np.arange(t, dtype=float), (d, t)).copy(), counts=np.zeros((d, t, 0)),
                  resets=[np.array([])] * d, installed=np.full(d, -5.0), group=np.zeros(d, dtype=np.int64))


FLEET_RESID_SPEC = replace(RESID_SPEC, fleet=True, fleet_min_devices=5)


def test_the_fleet_residual_model_leaves_the_weather_to_the_fleet_centre():
    grid = weather_grid()
    spec = F.fit_fleet_residuals(FLEET_RESID_SPEC, grid, np.arange(6), before=1e9)
    coef = np.asarray(spec.fleet_residual_coef)
    # less the centre: slot 0 - c0 = 2 (load - mean load) = 2 (slot 1 - c1), whatever the weather
    assert np.allclose(coef[0, 0], [0.0, 2.0, 0.0], atol=1e-9) and np.allclose(coef[0, 1], [0.5, 0.0, 0.0], atol=1e-9)


def test_fit_fleet_residuals_needs_the_fleet_features():
    grid = weather_grid()
    assert F.fit_fleet_residuals(RESID_SPEC, grid, np.arange(6), before=1e9) == RESID_SPEC


def test_fleet_residual_features_are_the_departure_against_the_fleet_centre_in_residual_scale():
    grid = weather_grid()
    grid.values[0, -3:, 0] += 1.2  # unit 0's slot 0 reads 1.2 high in the last three steps
    spec = replace(FLEET_RESID_SPEC, fleet_residual_coef=(((0.0, 2.0, 0.0), (0.5, 0.0, 0.0)),),
                   fleet_residual_scale=((0.4, 0.4),))
    r = row(grid, 59, spec)
    # Less the centre (the six units' mean) the fault reads 1.2 * 5/6 = 1.0 on slot 0; the loads
    # cancel in the residual (slot 0 - 2 slot 1) and the weather in the centre.
    assert r["m0:fresid_3"] == pytest.approx(1.0 / 0.4)
    assert r["m0:fresid_8"] == pytest.approx(3.0 / 8.0 / 0.4)  # steps 52..59 against the base 48..52
    assert r["m1:fresid_3"] == pytest.approx(-0.5 * 1.0 / 0.4)  # slot 1 less half of slot 0
    assert r["all:max_fresid_3"] == pytest.approx(1.0 / 0.4)


def loaded_grid(seed: int, resets: list[list[float]], d: int = 3, t: int = 40) -> F.Grid:
    """``d`` devices whose slot 0 follows the load in slot 1; device 1's slot 0 reads 2.0 high
    from step 30 on."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.0, 1.0, (d, t))
    values = np.stack([5.0 + 4.0 * load + rng.normal(0, 0.1, (d, t)), 1.0 + load], axis=2)
    values[1, 30:, 0] += 2.0
    return F.Grid(device_ids=np.arange(d), values=values,
                  time=np.broadcast_to(np.arange(t, dtype=float), (d, t)).copy(), counts=np.zeros((d, t, 0)),
                  resets=[np.array(r) for r in resets], installed=np.full(d, -5.0),
                  group=np.zeros(d, dtype=np.int64))


def test_scoring_gives_the_training_residual_features():
    d, t = 3, 40
    grid = loaded_grid(5, [[], [20.0], []], d, t)
    spec = F.fit_residuals(RESID_SPEC, grid, np.array([0, 2]), before=1e9, min_rows=10)
    scored = F.compute(grid, spec, np.arange(d), np.full(d, t - 1))
    dev, step = np.repeat(np.arange(d), t), np.tile(np.arange(t), d)
    trained = F.compute(grid, spec, dev, step)[step == t - 1]
    assert np.allclose(scored, trained, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert scored[1, F.feature_names(spec).index("m0:resid_3")] > 5


def test_fleet_residual_departures_are_taken_at_the_units_own_steps():
    grid = weather_grid(noise=0.05)
    grid.values[0, [50, 55, 58], :] = np.nan  # hours the unit did not report (or were blanked)
    spec = replace(FLEET_RESID_SPEC, fleet_residual_coef=(((0.0, 2.0, 0.0), (0.5, 0.0, 0.0)),),
                   fleet_residual_scale=((0.4, 0.4),))
    r = row(grid, 59, spec)
    adj = grid.values[0] - np.nanmean(grid.values, axis=0)  # the centre: units reporting at that step
    dep = np.nanmean(adj[57:], axis=0) - np.nanmean(adj[48:53], axis=0)
    assert r["m0:fresid_3"] == pytest.approx((dep[0] - 2.0 * dep[1]) / 0.4, rel=1e-5)


def test_scoring_gives_the_training_fleet_residual_features():
    d, t = 6, 60
    grid = weather_grid(d, t, noise=0.05)
    grid.values[2, 50:, 0] += 1.5
    grid.resets[4] = np.array([30.0])
    spec = F.fit_fleet_residuals(F.fit_residuals(FLEET_RESID_SPEC, grid, np.arange(d), before=45.0),
                                 grid, np.arange(d), before=45.0)
    scored = F.compute(grid, spec, np.arange(d), np.full(d, t - 1))
    dev, step = np.repeat(np.arange(d), t), np.tile(np.arange(t), d)
    trained = F.compute(grid, spec, dev, step)[step == t - 1]
    assert np.allclose(scored, trained, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert scored[2, F.feature_names(spec).index("m0:fresid_8")] > 5


def test_a_device_model_unknown_to_the_residual_fit_gets_no_residual_features():
    load = np.array([0.2, 0.8] * 10)
    spec = replace(RESID_SPEC, residual_coef=(((0.0, 2.0, 3.0), (0.0, 0.0, 0.0)),), residual_scale=((0.5, 0.0),))
    r = row(two_slot_grid(load, 3.0 + 2.0 * load, group=1), 19, spec)
    assert math.isnan(r["m0:resid_3"]) and math.isnan(r["all:max_resid_3"])


# ---------------------------------------------------------------- pooled departures

POOL_SPEC = F.FeatureSpec(windows=(3,), extreme_windows=(3,), baseline_lookback=6, baseline_len=2,
                          count_windows=(2,), n_slots=3, fleet=False,
                          residual_coef=((((0.0,) * 4),) * 3,), residual_scale=((1.0, 1.0, 1.0),))


def base_row(**values: float) -> np.ndarray:
    """One row of POOL_SPEC's features before the pooled ones: NaN but for ``values`` by name."""
    names = F.feature_names(POOL_SPEC)
    x = np.full((1, len(names)), np.nan)
    x[0, 0] = 0  # device model 0
    for name, v in values.items():
        x[0, names.index(name.replace("__", ":"))] = v
    return x


def test_pooled_features_take_each_slots_departure_in_its_healthy_spread():
    # healthy spreads: z 2, 4, 1 and residual 1, 10, 0 (slot 2 has none) for device model 0
    spec = replace(POOL_SPEC, pooled_scale=((((2.0, 4.0, 1.0),), ((1.0, 10.0, 0.0),)),))
    x = base_row(m0__z_3=-6.0, m1__z_3=2.0, m2__z_3=1.5, m0__resid_3=0.5, m1__resid_3=30.0, m2__resid_3=99.0)
    pooled = dict(zip(F.feature_names(spec)[x.shape[1]:], F.pooled_features(x, spec)[0], strict=True))
    # z: |-6|/2 = 3, 2/4 = 0.5, 1.5/1 = 1.5 -> max 3, second 1.5, excess over 1: 2 + 0.5
    assert pooled["pool:z_max_3"] == pytest.approx(3.0)
    assert pooled["pool:z_second_3"] == pytest.approx(1.5)
    assert pooled["pool:z_excess_3"] == pytest.approx(2.5)
    # residual: 0.5/1 = 0.5, 30/10 = 3, slot 2 left out -> max 3, second 0.5, excess 2
    assert pooled["pool:resid_max_3"] == pytest.approx(3.0)
    assert pooled["pool:resid_second_3"] == pytest.approx(0.5)
    assert pooled["pool:resid_excess_3"] == pytest.approx(2.0)


def test_pooled_features_are_nan_for_a_device_model_without_healthy_spreads():
    spec = replace(POOL_SPEC, pooled_scale=((((2.0, 4.0, 1.0),), ((1.0, 10.0, 0.0),)),))
    x = base_row(m0__z_3=-6.0, m0__resid_3=0.5)
    x[0, 0] = 1  # a device model the fit did not see
    assert np.isnan(F.pooled_features(x, spec)).all()


def test_the_healthy_spread_is_a_quantile_of_the_departures_per_device_model():
    names = F.feature_names(POOL_SPEC)
    x = np.full((60, len(names)), np.nan)
    x[:, 0] = [0] * 50 + [1] * 10
    x[:, names.index("m0:z_3")] = -np.arange(60.0)  # model 0: |z| 0..49
    x[:, names.index("m1:resid_3")] = 2.0
    spec = F.fit_pooled(POOL_SPEC, x, quantile=0.5, min_rows=20)
    scale = np.asarray(spec.pooled_scale)  # [model, kind, window, slot]
    assert scale[0, 0, 0, 0] == pytest.approx(24.5)
    assert scale[0, 1, 0, 1] == pytest.approx(2.0)
    assert scale[1, 0, 0, 0] == 0.0  # 10 rows < min_rows
    assert scale[0, 0, 0, 1] == 0.0  # no finite departures


def test_compute_appends_the_pooled_features_of_its_own_columns():
    d, t = 3, 40
    grid = loaded_grid(7, [[], [], []], d, t)
    spec = F.fit_residuals(RESID_SPEC, grid, np.array([0, 2]), before=1e9, min_rows=10)
    dev, step = np.repeat(np.arange(d), t), np.tile(np.arange(t), d)
    plain = F.compute(grid, spec, dev, step)
    pooled = F.fit_pooled(spec, plain[dev != 1], min_rows=10)
    trained = F.compute(grid, pooled, dev, step)
    assert np.allclose(trained, np.hstack([plain, F.pooled_features(plain, pooled)]), equal_nan=True)
    scored = F.compute(grid, pooled, np.arange(d), np.full(d, t - 1))
    assert np.allclose(scored, trained[step == t - 1], rtol=1e-4, atol=1e-4, equal_nan=True)
    names = F.feature_names(pooled)
    assert scored[1, names.index("pool:resid_max_3")] > 1.0  # the fault stands out against healthy


OLD_FIELDS = 9  # FeatureSpec's fields before residual_coef was added


class OldPickler(pickle.Pickler):
    """Pickles a FeatureSpec as code from before the residual and pooled fields stored it."""

    def reducer_override(self, obj):
        if isinstance(obj, F.FeatureSpec):
            return copyreg.__newobj__, (F.FeatureSpec,), obj.__getstate__()[:OLD_FIELDS]
        return NotImplemented


def test_a_spec_pickled_before_the_newer_fields_loads_with_them_empty():
    old = F.FeatureSpec(windows=(6, 24), extreme_windows=(6,), baseline_lookback=48, baseline_len=24,
                        count_windows=(24,), n_slots=2, n_counts=1)
    buf = io.BytesIO()
    OldPickler(buf).dump(replace(old, residual_scale=((1.0, 1.0),)))
    spec = pickle.loads(buf.getvalue())
    assert spec == old
    assert not any(n.startswith(("pool:", "m0:resid", "m0:fresid")) for n in F.feature_names(spec))


# ---------------------------------------------------------------- stuck and saturated sensors


def flat_grid(values: np.ndarray, flat: np.ndarray, group: int = 0) -> F.Grid:
    d, t, _ = values.shape
    return F.Grid(device_ids=np.arange(d), values=values, time=np.broadcast_to(np.arange(t, dtype=float), (d, t)).copy(),
                  counts=np.zeros((d, t, 0)), resets=[np.array([]) for _ in range(d)], installed=np.full(d, -5.0),
                  group=np.full(d, group), flat=flat.astype(np.uint8))


def test_a_flat_slot_blanks_its_step_and_the_steps_beside_it_in_every_slot():
    values = np.arange(16, dtype=float).reshape(1, 8, 2)
    flat = np.zeros((1, 8))
    flat[0, 4] = 0b10  # slot 1 did not vary in step 4
    usable = F.usable_values(flat_grid(values, flat), replace(RESID_SPEC, flat_slots=(0b11,)))
    assert np.isnan(usable[0, 3:6]).all()
    assert np.array_equal(usable[0, [0, 1, 2, 6, 7]], values[0, [0, 1, 2, 6, 7]])


def test_a_slot_outside_the_fitted_flat_slots_blanks_nothing():
    values = np.ones((1, 6, 2))
    flat = np.full((1, 6), 0b01)  # slot 0 never varies: constant by nature
    spec = replace(RESID_SPEC, flat_slots=(0b10,))
    assert not np.isnan(F.usable_values(flat_grid(values, flat), spec)).any()


def test_without_flags_or_a_fit_the_values_are_the_grids():
    values = np.ones((1, 6, 2))
    grid = flat_grid(values, np.full((1, 6), 0b11))
    assert not np.isnan(F.usable_values(grid, RESID_SPEC)).any()  # no fit
    assert not np.isnan(F.usable_values(flat_grid(values, np.full((1, 6), 0b11), group=1),
                                        replace(RESID_SPEC, flat_slots=(0b11,)))).any()  # model unknown to it
    grid.flat = None
    assert not np.isnan(F.usable_values(grid, replace(RESID_SPEC, flat_slots=(0b11,)))).any()


def test_the_flat_fit_keeps_the_slots_that_vary_in_nearly_every_step():
    t = 40
    values = np.ones((2, t, 2))
    flat = np.zeros((2, t), dtype=np.uint8)
    flat[:, :8] |= 0b01  # slot 0 flat in 20 % of the steps: stuck now and then
    flat[:, :12] |= 0b10  # slot 1 flat in 30 %: a set point, constant by nature
    spec = F.fit_flat(RESID_SPEC, flat_grid(values, flat), np.array([0, 1]), before=1e9)
    assert spec.flat_slots == (0b01,)
    assert F.fit_flat(RESID_SPEC, flat_grid(values, flat), np.array([0, 1]), before=10.0).flat_slots == (0b00,)


def test_a_stuck_sensor_does_not_show_as_a_residual_departure():
    """Slot 0 follows the load in slot 1; the load sensor sticks at 0.8 for steps 14..17 while
    the load is 0.2: unmasked, slot 0 departs from what the stuck reading explains."""
    t = 20
    load = np.array([0.2, 0.8] * (t // 2))
    load[14:18] = 0.2
    values = np.stack([3.0 + 2.0 * load, load], axis=1).reshape(1, t, 2)
    values[0, 14:18, 1] = 0.8
    flat = np.zeros((1, t))
    flat[0, 14:18] = 0b10
    spec = replace(RESID_SPEC, residual_coef=(((0.0, 2.0, 3.0), (0.5, 0.0, -1.5)),), residual_scale=((0.5, 0.5),))
    grid = flat_grid(values, flat)
    blind = row(grid, 19, spec)
    masked = row(grid, 19, replace(spec, flat_slots=(0b11,)))
    assert blind["m0:resid_8"] == pytest.approx(-4 * 0.6 * 2.0 / 8 / 0.5)
    assert masked["m0:resid_8"] == pytest.approx(0.0, abs=1e-9)


def test_a_sample_without_data_gets_nan_across_slots_and_no_warning(monkeypatch):
    """The scorer computes features on two threads, and ``warnings`` filters are process-wide (one
    thread leaving ``catch_warnings`` restores them under the other): the features must not warn
    (here, on all-NaN rows), not filter the warnings."""
    import warnings

    def no_filters(*args, **kwargs):
        raise AssertionError("features changed the process-wide warnings filters")

    catch_warnings = warnings.catch_warnings
    monkeypatch.setattr(warnings, "catch_warnings", no_filters)
    n = 20
    grid = two_slot_grid(np.full(n, np.nan), np.full(n, np.nan))
    spec = replace(RESID_SPEC, residual_coef=(((0.0, 2.0, 3.0), (0.5, 0.0, -1.5)),), residual_scale=((0.5, 0.5),))
    with catch_warnings():
        warnings.simplefilter("error")
        r = row(grid, n - 1, spec)
    assert all(math.isnan(r[k]) for k in ("all:max_z_3", "all:rms_z_3", "all:max_resid_3", "all:rms_resid_3"))
