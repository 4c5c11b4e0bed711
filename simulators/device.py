"""One simulated device: hidden health per failure mode, readings vectorised over time.

:meth:`DeviceSim.advance` turns an array of timestamps into readings in one numpy pass; it stops
at the first failure so that the caller (backfill or the live fleet) can decide when the repair
comes. Every random draw comes from the device's own ``numpy.random.Generator``, seeded from the
fleet seed and the serial, so a device behaves the same for a given seed whatever else runs.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from simulators.environment import DAY_S, MUNICH_CLIMATE, Climate, load_profile
from simulators.models import ModelSpec

PM_WEAR_FACTOR = 0.5  # wear rate multiplier after preventive maintenance
PM_EFFECT_S = 90 * DAY_S
STUCK_MEAN_GAP_S = 120 * DAY_S  # per metric: how often a sensor gets stuck
STUCK_MEAN_S = 6 * 3600.0
DROPOUT_P = 0.002  # a single value missing
GAP_MEAN_GAP_S = 20 * DAY_S  # communication gaps: whole readings missing
GAP_MEAN_S = 40 * 60.0
LOAD_NOISE_SD = 0.05
VISIBLE_AT = 0.8  # health at which the degradation phase starts
PHASE_REGULARITY = 12.0  # gamma shape over the degradation phase
PHASE_SPREAD = 0.25  # unit-to-unit log-sd of the phase length
EFFECT_SPREAD = 0.3  # unit-to-unit log-sd of each effect's strength
FAINT_SHARE, FAINT_SCALE = 0.15, 0.35  # share of effects that show faintly on a unit, and how faintly
DEFAULT_WARNING_H = 72.0


def effect_strengths(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """How strongly each effect shows on a unit: lognormal, some faint."""
    return rng.lognormal(0.0, EFFECT_SPREAD, size) * np.where(rng.random(size) < FAINT_SHARE, FAINT_SCALE, 1.0)


@dataclass(frozen=True, slots=True)
class Failure:
    mode: str
    fault_code: str
    onset_ts: float  # start of the visible degradation phase; ``failed_ts`` for a sudden failure
    failed_ts: float

    @property
    def sudden(self) -> bool:
        return self.onset_ts >= self.failed_ts


@dataclass(frozen=True, slots=True)
class Block:
    """Readings for the first ``n`` of the requested timestamps.

    ``values`` has NaN for dropouts; ``present`` is False inside communication gaps (no reading at
    all). ``health``, ``faulted`` and ``stuck`` are ground truth, for evaluation and tests only.
    """

    ts: np.ndarray
    values: np.ndarray
    present: np.ndarray
    health: np.ndarray
    faulted: np.ndarray
    stuck: np.ndarray
    failure: Failure | None
    start: tuple = ()  # state before the block: (health, last_ts, failed, failed_ts), for rewind

    @property
    def n(self) -> int:
        return len(self.ts)


def device_rng(seed: int, serial: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(serial.encode())]))


class DeviceSim:
    """The hidden state and generative model of one device of ``spec``."""

    def __init__(self, spec: ModelSpec, serial: str, seed: int, start_ts: float,
                 climate: Climate = MUNICH_CLIMATE, nominal: bool = False,
                 warning_h: float = DEFAULT_WARNING_H) -> None:
        """``nominal`` removes unit-to-unit variation (progression speed, effect strength, phase
        length) and sudden failures; ``warning_h`` is the nominal length of the degradation phase
        (times each mode's ``warning_scale``)."""
        if warning_h <= 0:
            raise ValueError("warning_h: must be positive")
        self.spec = spec
        self.nominal = nominal
        self.warning_h = warning_h
        self.serial = serial
        self.climate = climate
        self.rng = rng = device_rng(seed, serial)
        n_modes, n_metrics = len(spec.modes), len(spec.model.metrics)
        self.lo = np.array([m.min_value for m in spec.model.metrics])
        self.hi = np.array([m.max_value for m in spec.model.metrics])
        self.base = np.array([p.base for p in spec.physics])
        self.load_gain = np.array([p.load_gain for p in spec.physics])
        self.ambient_gain = np.array([p.ambient_gain for p in spec.physics])
        self.noise_sd = np.array([p.noise_sd for p in spec.physics]) * rng.uniform(0.8, 1.3)
        self.offset = rng.normal(0.0, 1.0, n_metrics) * self.noise_sd  # calibration offset
        self.load_scale = rng.uniform(0.75, 1.15)
        self.rate = rng.lognormal(0.0, 0.3, n_modes)  # per-mode progression speed of this unit
        # How strongly each effect shows on this unit; about one in six is subtle.
        self.effect_scale = [effect_strengths(rng, len(ms.effects)) for ms in spec.modes]
        if nominal:
            self.rate = np.ones(n_modes)
            self.effect_scale = [np.ones(len(ms.effects)) for ms in spec.modes]
        self.h = np.zeros(n_modes)
        self.phase_s = np.zeros(n_modes)  # this cycle's degradation phase length (0: sudden)
        self.visible_ts = np.full(n_modes, np.nan)  # when this cycle's phase started
        for j in range(n_modes):
            self._new_cycle(j)
        self.onset = np.empty(n_modes)
        for j, ms in enumerate(spec.modes):
            progress_s = ms.mean_progress_days * DAY_S
            # Units are of all ages: some are already degrading when the simulation starts.
            onset = start_ts - rng.uniform(0, 1.2) * progress_s + rng.exponential(ms.mean_onset_days * DAY_S)
            self.onset[j] = onset
            if onset < start_ts:
                shape = ms.regularity * (start_ts - onset) * self.rate[j] / progress_s
                self.h[j] = min(0.75, rng.gamma(shape, 1.0 / ms.regularity))
        self.failed: int = -1
        self.failed_ts: float | None = None
        self.pm_until = -np.inf
        self.stuck_until = np.full(n_metrics, -np.inf)
        self.stuck_value = np.zeros(n_metrics)
        self.gap_until = -np.inf
        self.last_ts = float(start_ts)
        self.last_values = np.clip(self.base + self.offset, self.lo, self.hi)

    # ------------------------------------------------------------ state

    def _new_cycle(self, j: int) -> None:
        """Draw the degradation phase of mode ``j``'s next failure: its length, or sudden."""
        ms = self.spec.modes[j]
        nominal_s = self.warning_h * 3600.0 * ms.warning_scale
        if self.nominal:
            self.phase_s[j] = nominal_s
        else:
            sudden = self.rng.random() < ms.sudden_share
            self.phase_s[j] = 0.0 if sudden else nominal_s * self.rng.lognormal(0.0, PHASE_SPREAD)
        self.visible_ts[j] = np.nan

    def phase_progress(self, health: np.ndarray) -> np.ndarray:
        """Progress through the degradation phase (0..1) for health values."""
        return np.clip((health - VISIBLE_AT) / (1.0 - VISIBLE_AT), 0.0, 1.0)

    @property
    def failed_mode(self) -> str | None:
        return self.spec.modes[self.failed].code if self.failed >= 0 else None

    def force_onset(self, mode: str, ts: float) -> None:
        """Start degradation of ``mode`` at ``ts`` and postpone the others (for tests and demos)."""
        j = self.spec.mode_index(mode)
        self.onset[:] = np.inf
        self.h[:] = 0.0
        self.onset[j] = ts
        self.visible_ts[:] = np.nan

    def inject(self, mode: str, ts: float, hours: float, *, sudden: bool = False) -> None:
        """Make ``mode`` fail about ``hours`` after ``ts``, the others postponed (tests, demos).

        With a warning, the mode's degradation phase starts at ``ts`` and lasts about ``hours``;
        ``sudden`` skips the phase: hidden wear reaches the threshold in about ``hours`` (load
        dependent) and the unit fails with nothing visible before.
        """
        j = self.spec.mode_index(mode)
        self.force_onset(mode, ts)
        if sudden:
            self.phase_s[j] = 0.0
            self.rate[j] = self.spec.modes[j].mean_progress_days * 24.0 * VISIBLE_AT / hours
        else:
            self.h[j] = VISIBLE_AT
            self.visible_ts[j] = ts
            self.phase_s[j] = hours * 3600.0

    def set_failed(self, mode: str, failed_ts: float) -> None:
        """Start in the failed state of ``mode`` (continuing a history whose fault is still open)."""
        j = self.spec.mode_index(mode)
        self.h[j] = 1.0
        self.failed, self.failed_ts = j, failed_ts

    # ------------------------------------------------------------ generation

    def advance(self, ts: np.ndarray) -> Block:
        """Readings at ``ts`` (increasing, after the last call), up to and including a failure."""
        ts = np.asarray(ts, dtype=float)
        if len(ts) == 0 or ts[0] <= self.last_ts:
            raise ValueError("ts: must be non-empty and after the previous reading")
        rng = self.rng
        start = (self.h.copy(), self.last_ts, self.failed, self.failed_ts)
        k = len(ts)
        dt = np.diff(ts, prepend=self.last_ts)
        ambient = self.climate.ambient_c(ts)
        load = load_profile(self.spec.profile, ts, ambient) * self.load_scale
        load = np.clip(load + rng.normal(0.0, LOAD_NOISE_SD, k), 0.0, 1.0)
        n_modes = len(self.spec.modes)
        health = np.empty((k, n_modes))
        failure: Failure | None = None
        faulted = np.zeros(k, dtype=bool)
        n = k
        if self.failed >= 0:
            health[:] = self.h
            faulted[:] = True
        else:
            stress = 0.5 + 1.25 * load
            pm = np.where(ts < self.pm_until, PM_WEAR_FACTOR, 1.0)
            for j, ms in enumerate(self.spec.modes):
                active = np.clip(ts - np.maximum(self.onset[j], ts - dt), 0.0, None)
                health[:, j] = self._health(j, ms, ts, active, stress * pm)
            crossed = np.flatnonzero((health >= 1.0).any(axis=1))
            if len(crossed):
                f = int(crossed[0])
                n = f + 1
                j = int(np.argmax(health[f]))
                faulted[f] = True
                ms = self.spec.modes[j]
                started = self.visible_ts[j]
                failure = Failure(ms.code, ms.fault_code,
                                  float(ts[f]) if np.isnan(started) else float(min(started, ts[f])),
                                  float(ts[f]))
        ts, load, ambient, health, faulted = ts[:n], load[:n], ambient[:n], health[:n], faulted[:n]
        values = self._values(ts, load, ambient, health, faulted, failure)
        stuck = self._stick(ts, dt[:n], values)
        raw_last = values[-1].copy()
        values[rng.random(values.shape) < DROPOUT_P] = np.nan
        present = self._gaps(ts, dt[:n])
        # commit state
        self.h = health[-1].copy()
        self.last_ts = float(ts[-1])
        self.last_values = raw_last
        if failure is not None:
            self.failed = self.spec.mode_index(failure.mode)
            self.failed_ts = failure.failed_ts
        return Block(ts, values, present, health, faulted, stuck, failure, start)

    def _health(self, j: int, ms, ts: np.ndarray, active: np.ndarray, stress: np.ndarray) -> np.ndarray:
        """Health of mode ``j`` at ``ts``: hidden wear up to VISIBLE_AT, then the phase to 1.0."""
        rng = self.rng
        h0 = self.h[j]
        path = np.empty(len(ts))
        start = 0
        if h0 < VISIBLE_AT:
            shape = ms.regularity * active * stress * self.rate[j] / (ms.mean_progress_days * DAY_S)
            wear = h0 + np.cumsum(rng.gamma(shape, 1.0 / ms.regularity))
            over = np.flatnonzero(wear >= VISIBLE_AT)
            if len(over) == 0:
                return wear
            start = int(over[0])
            path[:start] = wear[:start]
            self.visible_ts[j] = ts[start]
            if self.phase_s[j] <= 0.0:  # sudden: fails as the wear reaches the threshold
                path[start:] = 1.0
                return path
            path[start] = VISIBLE_AT
            h0, start = VISIBLE_AT, start + 1
        elif np.isnan(self.visible_ts[j]):
            self.visible_ts[j] = ts[0]
        if start == len(ts):
            return path
        dt = np.diff(ts[start - 1:] if start else np.concatenate([[self.last_ts], ts]))
        phase = max(self.phase_s[j], 1.0)
        shape = PHASE_REGULARITY * dt / phase
        path[start:] = h0 + np.cumsum(rng.gamma(shape, (1.0 - VISIBLE_AT) / PHASE_REGULARITY))
        return path

    def _values(self, ts, load, ambient, health, faulted, failure) -> np.ndarray:
        rng = self.rng
        running = np.where(faulted, 0.0, load)
        values = (self.base + self.offset + self.load_gain * running[:, None]
                  + self.ambient_gain * (ambient[:, None] - 20.0))
        for j, ms in enumerate(self.spec.modes):
            for e, eff in enumerate(ms.effects):
                i = self.spec.metric_index(eff.metric)
                level = self.phase_progress(health[:, j]) ** eff.power
                shift = eff.magnitude * self.effect_scale[j][e] * level
                if eff.load_scaled:
                    shift = shift * running
                values[:, i] += np.where(faulted, 0.0, shift)
        values += rng.normal(0.0, 1.0, values.shape) * self.noise_sd
        if faulted.any():
            mode = self.spec.modes[self.failed] if self.failed >= 0 else None
            if mode is None and failure is not None:
                mode = self.spec.modes[self.spec.mode_index(failure.mode)]
            for name, value in mode.fault_values:
                i = self.spec.metric_index(name)
                values[faulted, i] = value + rng.normal(0.0, self.noise_sd[i], int(faulted.sum()))
        return np.clip(values, self.lo, self.hi)  # sensors saturate at their range

    def _stick(self, ts, dt, values) -> np.ndarray:
        """Sensors that freeze at their last value for a while; returns the stuck mask."""
        rng = self.rng
        stuck = np.zeros(values.shape, dtype=bool)
        starts = rng.random(values.shape) < (dt[:, None] / STUCK_MEAN_GAP_S)
        for i in range(values.shape[1]):
            carry = ts < self.stuck_until[i]
            stuck[carry, i] = True
            values[carry, i] = self.stuck_value[i]
            for r in np.flatnonzero(starts[:, i] & ~carry):
                if stuck[r, i]:
                    continue
                value = values[r - 1, i] if r > 0 else self.last_values[i]
                until = ts[r] + rng.exponential(STUCK_MEAN_S)
                span = (ts >= ts[r]) & (ts < until)
                values[span, i] = value
                stuck[span, i] = True
                self.stuck_until[i], self.stuck_value[i] = until, value
        return stuck

    def _gaps(self, ts, dt) -> np.ndarray:
        rng = self.rng
        present = ts >= self.gap_until
        for r in np.flatnonzero(rng.random(len(ts)) < dt / GAP_MEAN_GAP_S):
            until = ts[r] + rng.exponential(GAP_MEAN_S)
            present &= ~((ts >= ts[r]) & (ts < until))
            self.gap_until = max(self.gap_until, until)
        return present

    def rewind(self, block: Block, keep: int) -> None:
        """Forget rows ``keep:`` of the last ``block`` (e.g. a repair came before they were sent)."""
        if not 0 <= keep <= block.n:
            raise ValueError("keep: must be between 0 and the block length")
        if keep == 0:
            h, self.last_ts, self.failed, self.failed_ts = block.start
            self.h = h.copy()
        else:
            self.h = block.health[keep - 1].copy()
            self.last_ts = float(block.ts[keep - 1])
            if block.failure is not None and not block.faulted[keep - 1]:
                self.failed, self.failed_ts = -1, None
        self.stuck_until = np.minimum(self.stuck_until, self.last_ts)
        self.gap_until = min(self.gap_until, self.last_ts)

    # ------------------------------------------------------------ maintenance

    def matches(self, mode: str, finding: str | None, parts_used: Mapping[str, int]) -> bool:
        """Whether a repair with this finding and these parts fixes ``mode``."""
        spec_mode = self.spec.modes[self.spec.mode_index(mode)].mode
        return finding == mode and all(parts_used.get(p.sku, 0) >= p.quantity for p in spec_mode.parts)

    def repair(self, ts: float, finding: str | None, parts_used: Mapping[str, int],
               preventive: bool = False) -> str | None:
        """Apply a completed job at ``ts``; returns the mode it restored, or None.

        A finding naming a failure mode together with that mode's parts restores that mode (failed
        or still degrading). Preventive maintenance slows wear for a while and resets the modes it
        covers (filters, cleaning) unless the unit has already failed.
        """
        if ts < self.last_ts:
            raise ValueError("ts: repair before the last generated reading; rewind first")
        restored = None
        codes = [ms.code for ms in self.spec.modes]
        if finding in codes and self.matches(finding, finding, parts_used):
            j = codes.index(finding)
            self.h[j] = 0.0
            self.onset[j] = ts + self.rng.exponential(self.spec.modes[j].mean_onset_days * DAY_S)
            self._new_cycle(j)
            if self.failed == j:
                self.failed, self.failed_ts = -1, None
            restored = finding
        if preventive and self.failed < 0:
            self.pm_until = ts + PM_EFFECT_S
            for j, ms in enumerate(self.spec.modes):
                if ms.pm_resets:
                    self.h[j] = 0.0
                    self._new_cycle(j)
                    self.onset[j] = max(self.onset[j], ts + self.rng.exponential(ms.mean_onset_days * DAY_S))
        return restored
