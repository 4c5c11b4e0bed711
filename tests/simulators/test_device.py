"""The generative device model: determinism, failure modes, repairs, ranges."""

from dataclasses import replace

import numpy as np
import pytest

from simulators.device import DeviceSim
from simulators.models import MODEL_SPECS

T0 = 1_772_438_400.0  # 2026-03-02 08:00 UTC
STEP_S = 600.0
ALL_MODES = [(code, ms.code) for code, spec in MODEL_SPECS.items() for ms in spec.modes]


def grid(days, start=T0, step=STEP_S):
    return start + step * np.arange(1, int(days * 86400 / step) + 1)


def run_to_failure(sim, days=400):
    """Advance until the first failure; returns all blocks."""
    ts = grid(days)
    blocks, i = [], 0
    while i < len(ts):
        block = sim.advance(ts[i:])
        blocks.append(block)
        i += block.n
        if block.failure is not None:
            break
    return blocks


def degraded(model, mode, serial="unit-1", seed=11):
    sim = DeviceSim(MODEL_SPECS[model], serial, seed, T0, nominal=True)
    sim.force_onset(mode, T0)
    return sim


def parts_of(sim, mode):
    return {p.sku: p.quantity for p in sim.spec.modes[sim.spec.mode_index(mode)].mode.parts}


def test_same_seed_gives_the_same_readings():
    a = DeviceSim(MODEL_SPECS["chiller"], "CH-000001", 5, T0).advance(grid(10))
    b = DeviceSim(MODEL_SPECS["chiller"], "CH-000001", 5, T0).advance(grid(10))
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert np.array_equal(a.present, b.present)


def test_another_seed_gives_other_readings():
    a = DeviceSim(MODEL_SPECS["chiller"], "CH-000001", 5, T0).advance(grid(2))
    b = DeviceSim(MODEL_SPECS["chiller"], "CH-000001", 6, T0).advance(grid(2))
    assert not np.array_equal(a.values, b.values, equal_nan=True)


@pytest.mark.parametrize(("model", "mode"), ALL_MODES)
def test_every_failure_mode_reaches_failure(model, mode):
    blocks = run_to_failure(degraded(model, mode))
    assert blocks[-1].failure is not None and blocks[-1].failure.mode == mode


@pytest.mark.parametrize(("model", "mode"), ALL_MODES)
def test_every_failure_mode_shows_in_its_metric_before_failure(model, mode):
    """Before failure, the mode's first metric has moved away from a healthy twin's, in its direction."""
    spec = MODEL_SPECS[model]
    ms = spec.modes[spec.mode_index(mode)]
    sim = degraded(model, mode)
    blocks = run_to_failure(sim)
    failed_ts = blocks[-1].failure.failed_ts
    twin = DeviceSim(spec, "unit-1", 11, T0, nominal=True)
    twin.force_onset(mode, np.inf)
    ts = np.concatenate([b.ts for b in blocks])[:-1]  # up to, not including, the failure
    sick = np.concatenate([b.values for b in blocks])[:-1]
    healthy = twin.advance(ts).values
    effect = ms.effects[0]
    i = spec.metric_index(effect.metric)
    lead_s = min(ms.warning_scale * sim.warning_h * 3600, (failed_ts - T0) / 3)
    window = ts >= failed_ts - lead_s
    baseline = ts < T0 + lead_s  # as long as the window, right after onset
    diff = sick[:, i] - healthy[:, i]
    noise = np.nanstd(diff[baseline]) / np.sqrt(window.sum())
    shift = np.nanmean(diff[window]) - np.nanmean(diff[baseline])
    assert np.sign(shift) == np.sign(effect.magnitude)
    assert abs(shift) > 3 * noise


@pytest.mark.parametrize(("model", "mode"), ALL_MODES)
def test_a_matching_repair_restores_the_device(model, mode):
    sim = degraded(model, mode)
    blocks = run_to_failure(sim)
    t = blocks[-1].failure.failed_ts + 3600
    assert sim.repair(t, mode, parts_of(sim, mode)) == mode
    after = sim.advance(t + STEP_S * np.arange(1, 7))
    assert sim.failed_mode is None and not after.faulted.any()


def test_a_repair_with_the_wrong_finding_does_not_restore():
    sim = degraded("air_compressor", "oil_leak")
    blocks = run_to_failure(sim)
    t = blocks[-1].failure.failed_ts + 3600
    sim.repair(t, "bearing_wear", parts_of(sim, "bearing_wear"))
    assert sim.failed_mode == "oil_leak"
    assert sim.advance(t + STEP_S * np.arange(1, 7)).faulted.all()


def test_a_repair_without_the_parts_does_not_restore():
    sim = degraded("chiller", "refrigerant_leak")
    blocks = run_to_failure(sim)
    t = blocks[-1].failure.failed_ts + 3600
    assert sim.repair(t, "refrigerant_leak", {"SEAL-KIT-CH": 1}) is None
    assert sim.failed_mode == "refrigerant_leak"


def test_failure_changes_the_readings_to_the_fault_signature():
    sim = degraded("chiller", "refrigerant_leak")
    blocks = run_to_failure(sim)
    t = blocks[-1].failure.failed_ts
    after = sim.advance(t + STEP_S * np.arange(1, 37))
    supply = after.values[:, MODEL_SPECS["chiller"].metric_index("chw_supply_temp_c")]
    assert after.faulted.all() and abs(np.nanmedian(supply) - 14.0) < 1.0


def test_preventive_maintenance_slows_wear():
    def mean_health(pm):
        out = []
        for k in range(12):
            sim = degraded("elevator_drive", "bearing_wear", serial=f"EL-{k}")
            if pm:
                sim.repair(T0, None, {}, preventive=True)
            out.append(sim.advance(grid(15)).health[-1, 1])
        return np.mean(out)

    assert mean_health(pm=True) < 0.7 * mean_health(pm=False)


def test_preventive_maintenance_resets_a_clogging_filter():
    sim = degraded("air_compressor", "filter_clogging")
    before = sim.advance(grid(15)).health[-1, 0]
    sim.repair(sim.last_ts, None, {}, preventive=True)
    assert before > 0.2 and sim.h[0] == 0.0


@pytest.mark.parametrize("model", list(MODEL_SPECS))
def test_readings_stay_within_the_declared_ranges(model):
    spec = MODEL_SPECS[model]
    lo = np.array([m.min_value for m in spec.model.metrics])
    hi = np.array([m.max_value for m in spec.model.metrics])
    for k in range(5):
        sim = DeviceSim(spec, f"{model}-{k}", 2, T0)
        for block in run_to_failure(sim, days=120):
            seen = ~np.isnan(block.values)
            assert (block.values[seen] >= np.broadcast_to(lo, block.values.shape)[seen]).all()
            assert (block.values[seen] <= np.broadcast_to(hi, block.values.shape)[seen]).all()


def test_sensors_drop_out_and_get_stuck():
    sim = DeviceSim(MODEL_SPECS["elevator_drive"], "EL-9", 4, T0)
    sim.force_onset("bearing_wear", np.inf)
    block = sim.advance(grid(200))
    assert np.isnan(block.values).any()
    i, j = np.argwhere(block.stuck)[0]
    run = block.stuck[i:, j].argmin() or 2
    assert run >= 2 and np.all(block.values[i:i + run, j] == block.values[i, j])


@pytest.mark.parametrize("warning_h", [24.0, 72.0])
def test_the_degradation_phase_lasts_about_the_warning_horizon(warning_h):
    phases = []
    for k in range(8):
        sim = DeviceSim(MODEL_SPECS["chiller"], f"CH-{k}", 3, T0, nominal=True, warning_h=warning_h)
        sim.force_onset("bearing_wear", T0)
        failure = run_to_failure(sim)[-1].failure
        phases.append((failure.failed_ts - failure.onset_ts) / 3600)
    assert 0.6 * warning_h < np.median(phases) < 1.4 * warning_h


def test_the_signature_rises_only_in_the_last_days():
    """Vibration a week before a bearing failure is near the healthy twin's; in the last day it is well above."""
    spec = MODEL_SPECS["chiller"]
    sim = degraded("chiller", "bearing_wear")
    blocks = run_to_failure(sim)
    failed_ts = blocks[-1].failure.failed_ts
    twin = DeviceSim(spec, "unit-1", 11, T0, nominal=True)
    twin.force_onset("bearing_wear", np.inf)
    ts = np.concatenate([b.ts for b in blocks])[:-1]
    diff = (np.concatenate([b.values for b in blocks])[:-1] - twin.advance(ts).values)[
        :, spec.metric_index("vibration_mm_s")]
    week_before = (ts > failed_ts - 8 * 86400) & (ts < failed_ts - 7 * 86400)
    last_day = ts > failed_ts - 86400
    assert np.nanmean(diff[last_day]) > 2.0
    assert abs(np.nanmean(diff[week_before])) < 0.2 * np.nanmean(diff[last_day])


def test_a_sudden_failure_gives_no_warning():
    spec = MODEL_SPECS["elevator_drive"]
    sudden = replace(spec, modes=tuple(replace(ms, sudden_share=1.0) for ms in spec.modes))
    sim = DeviceSim(sudden, "EL-1", 5, T0)
    sim.force_onset("igbt_failure", T0)
    failure = run_to_failure(sim)[-1].failure
    assert failure.sudden and failure.onset_ts == failure.failed_ts
