"""Features and labels from a per-device time grid; the one code path for training and scoring.

A :class:`Grid` holds, for D devices and T steps, the metric values ``values[D, T, M]`` (NaN where
missing), the time of each step ``time[D, T]`` (hours from the database, the ``ts`` unit from CSV;
NaN past a device's last step), event counts ``counts[D, T, K]`` and, per device, the times of
resets (failures and repairs). From the database a step is one hour of the rollup; from CSV a step
is one row. Windows are counted in steps, so "24" is 24 hours on the database path.

Window statistics come from cumulative sums, so any number of sample points costs O(1) each;
every window starts no earlier than the device's last reset, so readings from before a repair
never describe the repaired machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np

from predict.kernels import window_extremes, window_sums, window_totals

EPS = 1e-9


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Which windows (in steps) the features use; stored with every model."""

    windows: tuple[int, ...] = (6, 24, 72)
    extreme_windows: tuple[int, ...] = (6, 24)  # min/max windows (gathered, so kept short)
    baseline_lookback: int = 168  # the baseline is the first ``baseline_len`` steps of this span
    baseline_len: int = 96
    count_windows: tuple[int, ...] = (24, 168)
    n_slots: int = 8
    n_counts: int = 0
    fleet_min_devices: int = 5  # fleet-relative features need this many peers reporting at a step
    fleet: bool = True  # features against the model's fleet centre (see fleet_centre)
    # Per device model (group) and slot: the linear prediction of the slot from the other slots
    # (coefficients per slot, then the intercept) and the residual's scale; empty: no residual
    # features. Fitted on training devices by :func:`fit_residuals`.
    residual_coef: tuple[tuple[tuple[float, ...], ...], ...] = ()
    residual_scale: tuple[tuple[float, ...], ...] = ()
    # Per device model, pooled kind (see POOLED_KINDS), window and slot: the healthy spread of
    # that departure, which the pooled features divide by; empty: no pooled features. Fitted on
    # training devices' healthy samples by :func:`fit_pooled`.
    pooled_scale: tuple[tuple[tuple[tuple[float, ...], ...], ...], ...] = ()
    # Per device model, a bit ``1 << slot`` for each slot whose flat steps (see Grid.flat) make
    # the whole step unusable; empty: none. Fitted on training devices by :func:`fit_flat`.
    flat_slots: tuple[int, ...] = ()
    # Per device model and slot, like ``residual_coef`` and ``residual_scale``, a second residual
    # model fitted on the readings less the model's fleet centre (see :func:`fit_fleet_residuals`);
    # empty: no fleet residual features.
    fleet_residual_coef: tuple[tuple[tuple[float, ...], ...], ...] = ()
    fleet_residual_scale: tuple[tuple[float, ...], ...] = ()

    def __setstate__(self, state: tuple) -> None:
        """Unpickle; fields a model stored before they existed get their defaults (an older
        artifact then computes the features it was trained on)."""
        for f, value in zip(fields(self), state, strict=False):
            object.__setattr__(self, f.name, value)
        for f in fields(self)[len(state):]:
            object.__setattr__(self, f.name, f.default)

    @property
    def history(self) -> int:
        """Steps of history scoring needs before the scored step."""
        return max(max(self.windows), self.baseline_lookback, max(self.count_windows))


@dataclass(slots=True)
class Grid:
    """Per-device step arrays. ``time`` is NaN on padding steps (after a device's last step)."""

    device_ids: np.ndarray  # [D]
    values: np.ndarray  # [D, T, M] float64
    time: np.ndarray  # [D, T] float64
    counts: np.ndarray  # [D, T, K] float64
    resets: list[np.ndarray]  # per device: sorted reset times (failures and repairs)
    installed: np.ndarray  # [D] time of installation (or first step)
    group: np.ndarray  # [D] int: device model index (0 when unknown)
    slot_names: list[list[str]] = field(default_factory=list)  # per group: metric name per slot
    # [D, T] bit ``1 << slot`` where that slot's readings did not vary within the step (a stuck or
    # saturated sensor); None where unknown (a CSV row is one reading)
    flat: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values.shape  # type: ignore[return-value]

    def last_steps(self) -> np.ndarray:
        """Index of each device's last step with a time, -1 for a device without any."""
        has = ~np.isnan(self.time)
        last = self.time.shape[1] - 1 - np.argmax(has[:, ::-1], axis=1)
        return np.where(has.any(axis=1), last, -1)


def _reset_matrix(grid: Grid) -> np.ndarray:
    """``[D, R]`` sorted reset times per device, padded with +inf."""
    lengths = np.fromiter((len(r) for r in grid.resets), dtype=np.int64, count=len(grid.resets))
    out = np.full((len(lengths), max(int(lengths.max(initial=0)), 1)), np.inf)
    if lengths.sum():  # one sort by (device, time) for all devices
        row = np.repeat(np.arange(len(lengths)), lengths)
        times = np.concatenate([np.asarray(r, dtype=np.float64) for r in grid.resets])
        col = np.arange(len(times)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[row, col] = times[np.lexsort((times, row))]
    return out


def reset_steps(grid: Grid) -> np.ndarray:
    """``[D, T]`` index of the first step at or after each step's last reset (0 if none)."""
    t = grid.time.shape[1]
    resets = _reset_matrix(grid)
    filled = np.where(np.isnan(grid.time), np.finfo(np.float64).max, grid.time)
    # the reset that applies at step j is the last reset <= time[j]; windows start after it
    k = (resets[:, None, :] <= filled[:, :, None]).sum(axis=2) - 1
    first_after = (filled[:, :, None] <= resets[:, None, :]).sum(axis=1)  # [D, R]: steps up to it
    first = np.where(k >= 0, np.take_along_axis(first_after, np.maximum(k, 0), axis=1), 0)
    return np.minimum(first, np.arange(t))


def sample_reset_steps(grid: Grid, dev: np.ndarray, step: np.ndarray) -> np.ndarray:
    """``reset_steps(grid)[dev, step]`` computed for the samples only."""
    resets = _reset_matrix(grid)[dev]
    times = grid.time[dev, step]
    k = (resets <= times[:, None]).sum(axis=1) - 1
    start = np.where(k >= 0, np.take_along_axis(resets, np.maximum(k, 0)[:, None], axis=1)[:, 0], -np.inf)
    filled = np.where(np.isnan(grid.time[dev]), np.finfo(np.float64).max, grid.time[dev])
    first = (filled <= start[:, None]).sum(axis=1)
    return np.minimum(first, step)


def last_reset_time(grid: Grid, dev: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Time of the last reset at or before each sample (the installation time if none)."""
    resets = _reset_matrix(grid)[dev]
    times = grid.time[dev, step]
    k = (resets <= times[:, None]).sum(axis=1) - 1
    last = np.take_along_axis(resets, np.maximum(k, 0)[:, None], axis=1)[:, 0]
    return np.where(k >= 0, last, grid.installed[dev].astype(np.float64))


def _cumsum(a: np.ndarray) -> np.ndarray:
    """Cumulative sum along axis 1 with a leading zero step."""
    out = np.zeros((a.shape[0], a.shape[1] + 1) + a.shape[2:], dtype=np.float64)
    np.cumsum(a, axis=1, dtype=np.float64, out=out[:, 1:])
    return out


def _cumsum_last(a: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum along the last axis of ``[D, M, T]``, in float64."""
    d, m, t = a.shape
    return np.cumsum(a.reshape(d * m, t), axis=1, dtype=np.float64).reshape(d, m, t)


class _Sums:
    """Prefix sums of count, x, x^2, t, t^2, t*x per metric, for O(1) window statistics.

    Values are centred on each device's first reading per metric (added back to the mean), which
    keeps the sums of squares free of cancellation; arrays are laid out ``[D, M, T]``.
    """

    def __init__(self, values: np.ndarray) -> None:
        v = np.ascontiguousarray(values.transpose(0, 2, 1))  # [D, M, T]
        present = ~np.isnan(v)
        first = np.argmax(present, axis=2)
        ref = np.take_along_axis(v, first[:, :, None], axis=2)
        ref = np.where(np.isnan(ref), 0.0, ref)
        x = np.where(present, v - ref, 0.0)
        p = present.astype(np.float64)
        tau = np.arange(v.shape[2], dtype=np.float64) * p
        self.ref = ref[:, :, 0]
        self.n = _cumsum_last(p)
        self.s = _cumsum_last(x)
        self.q = _cumsum_last(x * x)
        self.t = _cumsum_last(tau)
        self.tt = _cumsum_last(tau * tau)
        self.tx = _cumsum_last(tau * x)

    def window(self, dev: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
        """Mean, std and slope per step over steps ``[lo, hi)`` of each sample; NaN where empty."""

        has_lo, has_hi = (lo > 0)[:, None], (hi > 0)[:, None]  # C[-1] is 0, not the last column
        last, before = np.maximum(hi - 1, 0), np.maximum(lo - 1, 0)

        def take(c: np.ndarray) -> np.ndarray:  # sum over [lo, hi) = C[hi-1] - C[lo-1]
            return (np.where(has_hi, c[dev, :, last], 0.0).astype(np.float64)
                    - np.where(has_lo, c[dev, :, before], 0.0).astype(np.float64))

        n, s, q, t, tt, tx = (take(c) for c in (self.n, self.s, self.q, self.t, self.tt, self.tx))
        return _moments(n, s, q, t, tt, tx, self.ref[dev])


def _moments(n, s, q, t, tt, tx, ref) -> dict[str, np.ndarray]:
    """Count, mean, std and least-squares slope from window sums of centred values."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan) + ref
        var = np.where(n > 1, (q - s * s / np.maximum(n, 1)) / np.maximum(n - 1, 1), np.nan)
        std = np.sqrt(np.maximum(var, 0.0))
        den = n * tt - t * t
        slope = np.where((n > 2) & (den > EPS), (n * tx - t * s) / np.where(den > EPS, den, 1), np.nan)
    return {"n": n, "mean": mean, "std": std, "slope": slope}


def window_stats(values: np.ndarray, dev: np.ndarray, bounds: dict, span: int) -> dict:
    """Statistics per window key of ``bounds`` (key -> (lo, hi) step arrays) for each sample.

    Few samples for the grid (scoring: one per device) are summed window by window in one
    compiled pass (:func:`predict.kernels.window_sums`); dense samples (training: every few
    steps of every device, windows up to ``span`` long) take prefix sums over their devices'
    rows. Both give the same numbers to rounding."""
    dev = np.asarray(dev, dtype=np.int64)
    if len(dev) * span <= 2 * values.shape[0] * values.shape[1]:
        keys = list(bounds)
        lo = np.array([bounds[k][0] for k in keys], dtype=np.int64).reshape(len(keys), len(dev))
        hi = np.array([bounds[k][1] for k in keys], dtype=np.int64).reshape(len(keys), len(dev))
        sums = np.empty((len(keys), 6, len(dev), values.shape[2]))
        ref = np.empty((len(dev), values.shape[2]))
        window_sums(np.asarray(values, dtype=np.float64), dev, lo, hi, sums, ref)
        return {key: _moments(*sums[k], ref) for k, key in enumerate(keys)}
    rows, local = np.unique(dev, return_inverse=True)
    sums = _Sums(values[rows])
    return {k: sums.window(local, lo, hi) for k, (lo, hi) in bounds.items()}


def _extremes(values: np.ndarray, dev: np.ndarray, step: np.ndarray, lo: np.ndarray,
              w: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max per metric over the window ``[max(lo, step-w+1), step]`` of each sample (NaN
    where it has no reading)."""
    n, m = len(dev), values.shape[2]
    mins, maxs = np.empty((n, m)), np.empty((n, m))
    start = np.maximum(np.asarray(lo, dtype=np.int64), step - w + 1)
    window_extremes(np.asarray(values, dtype=np.float64), np.asarray(dev, dtype=np.int64), start,
                    np.asarray(step, dtype=np.int64) + 1, mins, maxs)
    return mins, maxs


RESIDUAL_TRIM = 4.0  # robust standard deviations: rows further out are refitted without


def _robust_sd(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) if len(r) else 0.0


def fit_on_training(spec: FeatureSpec, grid: Grid, rows: np.ndarray, before: float) -> FeatureSpec:
    """``spec`` with what the features learn from the training devices ``rows`` at steps before
    ``before``: the flat slots (:func:`fit_flat`), then the residual models on the usable
    readings (:func:`fit_residuals`, :func:`fit_fleet_residuals`). The pooled spreads come later,
    from these features (:func:`fit_pooled`)."""
    spec = fit_flat(spec, grid, rows, before)
    spec = fit_residuals(spec, grid, rows, before)
    return fit_fleet_residuals(spec, grid, rows, before)


def fit_residuals(spec: FeatureSpec, grid: Grid, rows: np.ndarray, before: float,
                  min_rows: int = 50) -> FeatureSpec:
    """``spec`` with a residual model per device model, fitted on the devices ``rows`` at steps
    before time ``before``: each slot by least squares on the device's other slots at the same
    step (what drives the readings, load and weather, shows in all of them), refitted once
    without the rows further than RESIDUAL_TRIM robust standard deviations out (faults, stuck
    sensors). The scale is the robust spread of the residual around each device's own median, so
    a calibration offset does not count as spread. A model with fewer than ``min_rows`` complete
    steps gets scale 0 (no residual features)."""
    coef, scale = _fit_linear(usable_values(grid, spec), grid, rows, before, spec.n_slots, min_rows)
    return replace(spec, residual_coef=_as_tuple(coef), residual_scale=_as_tuple(scale))


def fit_fleet_residuals(spec: FeatureSpec, grid: Grid, rows: np.ndarray, before: float,
                        min_rows: int = 50) -> FeatureSpec:
    """``spec`` with a second residual model (as :func:`fit_residuals`) fitted on each reading
    less its model's fleet centre at that step (:func:`fleet_centre`). The centre carries what
    all units share, weather above all, so this fit need not read the weather from the unit's own
    slots: a fault that moves several slots at once (a fouled condenser raises its pressure, the
    current and the oil temperature) no longer looks like a warm day. Without fleet features
    ``spec`` comes back unchanged."""
    if not spec.fleet:
        return spec
    values = usable_values(grid, spec)
    centre, _ = fleet_centre(values, grid.group, spec.fleet_min_devices)
    adjusted = values - centre[grid.group]
    coef, scale = _fit_linear(adjusted, grid, rows, before, spec.n_slots, min_rows)
    return replace(spec, fleet_residual_coef=_as_tuple(coef), fleet_residual_scale=_as_tuple(scale))


def _fit_linear(values: np.ndarray, grid: Grid, rows: np.ndarray, before: float, m: int,
                min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per device model: coefficients ``[G, M, M + 1]`` predicting each slot of ``values`` from the
    others (intercept last) and the residual scales ``[G, M]`` (see :func:`fit_residuals`)."""
    n_groups = int(grid.group.max()) + 1 if len(grid.group) else 0
    coef = np.zeros((n_groups, m, m + 1))
    scale = np.zeros((n_groups, m))
    rows = np.asarray(rows, dtype=np.int64)
    for g in range(n_groups):
        mine = rows[grid.group[rows] == g]
        if len(mine) == 0:
            continue
        v = values[mine]
        early = grid.time[mine] < before  # NaN time (padding) is not early
        used = np.flatnonzero((~np.isnan(v[early])).any(axis=0))
        if len(used) < 2:
            continue
        sub = v[:, :, used]
        ok = early & ~np.isnan(sub).any(axis=2)
        x = sub[ok]
        dev_of = np.broadcast_to(np.arange(len(mine))[:, None], ok.shape)[ok]
        if len(x) < min_rows:
            continue
        for a, target in enumerate(used):
            others = np.delete(np.arange(len(used)), a)
            design = np.column_stack([x[:, others], np.ones(len(x))])
            keep = np.ones(len(x), dtype=bool)
            for _ in range(2):  # fit, drop the far-out rows, refit
                beta = np.linalg.lstsq(design[keep], x[keep, a], rcond=None)[0]
                r = x[:, a] - design @ beta
                sd = _robust_sd(r[keep])
                keep = np.abs(r - np.median(r)) <= RESIDUAL_TRIM * max(sd, EPS)
            coef[g, target, used[others]] = beta[:-1]
            coef[g, target, m] = beta[-1]
            centred = r.copy()
            for d in np.unique(dev_of):
                sel = dev_of == d
                centred[sel] -= np.median(r[sel])
            scale[g, target] = max(_robust_sd(centred[keep]), EPS)
    return coef, scale


def _as_tuple(a: np.ndarray) -> tuple:
    return tuple(_as_tuple(x) for x in a) if a.ndim > 1 else tuple(float(x) for x in a)


FLAT_SHARE_MAX = 0.25  # a slot flat in more of its steps than this is constant by nature, not stuck


def fit_flat(spec: FeatureSpec, grid: Grid, rows: np.ndarray, before: float) -> FeatureSpec:
    """``spec`` with, per device model, the slots whose flat steps mark a stuck or saturated
    sensor: those flat in at most ``FLAT_SHARE_MAX`` of their steps with data on the devices
    ``rows`` before time ``before``. A slot flat more often (a set point, a coarse counter) is
    constant by nature and left alone. None without flags on the grid."""
    if grid.flat is None:
        return replace(spec, flat_slots=())
    rows = np.asarray(rows, dtype=np.int64)
    n_groups = int(grid.group.max()) + 1 if len(grid.group) else 0
    bits = [0] * n_groups
    for g in range(n_groups):
        mine = rows[grid.group[rows] == g]
        early = grid.time[mine] < before  # NaN time (padding) is not early
        values = _slots(grid.values[mine], spec.n_slots)
        flat = grid.flat[mine]
        for m in range(spec.n_slots):
            has = early & ~np.isnan(values[:, :, m])
            if has.any() and ((flat[has] >> m) & 1).mean() <= FLAT_SHARE_MAX:
                bits[g] |= 1 << m
    return replace(spec, flat_slots=tuple(bits))


def usable_values(grid: Grid, spec: FeatureSpec) -> np.ndarray:
    """The grid's first ``spec.n_slots`` slots, NaN in every slot at the steps where a slot of
    ``spec.flat_slots`` did not vary and at the steps right before and after them (where the
    sensor stuck or came free within the step): a stuck sensor's value is not the machine's, and
    the other slots of that step no longer line up with it (the residuals would see a departure)."""
    values = _slots(grid.values, spec.n_slots)
    if grid.flat is None or not spec.flat_slots:
        return values
    bits = np.asarray(spec.flat_slots, dtype=np.int64)
    known = grid.group < len(bits)  # a device model added after training has no fit
    mine = np.where(known, bits[np.where(known, grid.group, 0)], 0)
    flat = (grid.flat.astype(np.int64) & mine[:, None]) != 0
    if not flat.any():
        return values
    bad = flat.copy()
    bad[:, 1:] |= flat[:, :-1]
    bad[:, :-1] |= flat[:, 1:]
    values = values.copy()  # the grid's own array stays as read
    values[bad] = np.nan
    return values


FLEET_SAMPLE = 256  # units per model that define the fleet centre (the first in device order)


def fleet_centre(values: np.ndarray, group: np.ndarray, min_devices: int) -> tuple[np.ndarray, np.ndarray]:
    """Per device model and step, the mean reading of its units (``[G, T, M]``), and per model and
    metric the mean absolute deviation from it (``[G, M]``, the scale).

    The centre carries what all units share (weather, time of day, season). It is taken over the
    model's first ``FLEET_SAMPLE`` units in the grid, so it costs the same for any batch size; NaN
    where fewer than ``min_devices`` of them reported at that step."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    centre = np.full((n_groups, values.shape[1], values.shape[2]), np.nan)
    scale = np.ones((n_groups, values.shape[2]))
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)[:FLEET_SAMPLE]
        if len(rows) < min_devices:
            continue
        v = values[rows]
        present = ~np.isnan(v)
        count = present.sum(axis=0)
        with np.errstate(all="ignore"):
            c = np.where(count >= min_devices, np.where(present, v, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)
            dev_abs = np.abs(v - c)
            ok = ~np.isnan(dev_abs)
            mad = np.where(ok, dev_abs, 0.0).sum(axis=(0, 1)) / np.maximum(ok.sum(axis=(0, 1)), 1)
        centre[g] = c
        scale[g] = np.where(mad > EPS, mad, 1.0)
    return centre, scale


def _centre_means(centre: np.ndarray, group: np.ndarray, bounds: dict) -> tuple[dict, dict]:
    """Mean of each sample's model centre over each window ``[lo, hi)`` (NaN steps skipped), and
    the number of steps with a centre."""
    present = ~np.isnan(centre)
    n = _cumsum(present.astype(np.float64))
    s = _cumsum(np.where(present, centre, 0.0))
    out, counts = {}, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for key, (lo, hi) in bounds.items():
            cnt = n[group, hi] - n[group, lo]
            out[key] = np.where(cnt > 0, (s[group, hi] - s[group, lo]) / np.maximum(cnt, 1), np.nan)
            counts[key] = cnt
    return out, counts


def _fleet_departures(values: np.ndarray, centre: np.ndarray, group: np.ndarray, dev: np.ndarray,
                      bounds: dict, stats: dict, cm: dict, counts: dict, span: int,
                      windows: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per window ``[N, M]``: each slot's departure from its baseline in the readings less the
    fleet centre, taken at the device's own steps (its blanked hours, a condenser pinned on cold
    nights, would otherwise leave the centre's cold hours in and the device's out). Where the
    device and the centre have every step of the baseline and the window, that is the device's
    window means less the centre's, at hand; the other samples are recomputed from the adjusted
    readings."""
    full = np.ones(len(dev), dtype=bool)
    for key in ["base", *windows]:
        lo, hi = bounds[key]
        length = (hi - lo)[:, None].astype(np.float64)
        n = stats[key]["n"]
        full &= ((n == 0) | ((n == length) & (counts[key] == length))).all(axis=1)
    with np.errstate(invalid="ignore"):
        delta = {w: (stats[w]["mean"] - cm[w]) - (stats["base"]["mean"] - cm["base"]) for w in windows}
    sel = np.flatnonzero(~full)
    if len(sel):
        rows, local = np.unique(dev[sel], return_inverse=True)
        adjusted = window_stats(values[rows] - centre[group[rows]], local,
                                {k: (bounds[k][0][sel], bounds[k][1][sel]) for k in ["base", *windows]}, span)
        for w in windows:
            delta[w][sel] = adjusted[w]["mean"] - adjusted["base"]["mean"]
    return delta


def feature_names(spec: FeatureSpec) -> list[str]:
    names = ["group", "age", "since_reset", "coverage_24"]
    for m in range(spec.n_slots):
        names += [f"m{m}:base_mean", f"m{m}:base_std"]
        for w in spec.windows:
            names += [f"m{m}:mean_{w}", f"m{m}:std_{w}", f"m{m}:z_{w}", f"m{m}:trend_{w}"]
        for w in spec.extreme_windows:
            names += [f"m{m}:zmin_{w}", f"m{m}:zmax_{w}"]
        if spec.fleet:
            names += [f"m{m}:fleet_{w}" for w in spec.windows]
            names += [f"m{m}:fleet_shift_{w}" for w in spec.windows]
    for w in spec.windows:
        names += [f"all:max_z_{w}", f"all:max_trend_{w}", f"all:rms_z_{w}"]
    if spec.residual_coef:
        for m in range(spec.n_slots):
            names += [f"m{m}:resid_{w}" for w in spec.windows]
        for w in spec.windows:
            names += [f"all:max_resid_{w}", f"all:rms_resid_{w}"]
    if spec.fleet_residual_coef and spec.fleet:
        for m in range(spec.n_slots):
            names += [f"m{m}:fresid_{w}" for w in spec.windows]
        for w in spec.windows:
            names += [f"all:max_fresid_{w}", f"all:rms_fresid_{w}"]
    for k in range(spec.n_counts):
        names += [f"c{k}:count_{w}" for w in spec.count_windows]
    for kind in pooled_kinds(spec) if spec.pooled_scale else ():
        for w in spec.windows:
            names += [f"pool:{kind}_max_{w}", f"pool:{kind}_second_{w}", f"pool:{kind}_excess_{w}"]
    return names


POOLED_KINDS = ("z", "resid")  # departures pooled across slots: raw (z) and residual


def pooled_kinds(spec: FeatureSpec) -> tuple[str, ...]:
    """The departure kinds ``spec`` pools: raw z always, residuals with a residual model."""
    return POOLED_KINDS if spec.residual_coef else POOLED_KINDS[:1]


POOLED_QUANTILE = 0.99  # the healthy spread: this quantile of |departure| on healthy samples
POOLED_MIN_ROWS = 50


def _departures(x: np.ndarray, names: list[str], spec: FeatureSpec, kind: str, w: int) -> np.ndarray:
    """``[N, M]`` |departure| per slot of one kind and window, from the feature columns."""
    col = {n: i for i, n in enumerate(names)}
    return np.abs(np.stack([x[:, col[f"m{m}:{kind}_{w}"]] for m in range(spec.n_slots)], axis=1))


def fit_pooled(spec: FeatureSpec, x: np.ndarray, quantile: float = POOLED_QUANTILE,
               min_rows: int = POOLED_MIN_ROWS) -> FeatureSpec:
    """``spec`` with the healthy spread of each departure the pooled features use: per device
    model, kind, window and slot, the ``quantile`` of |departure| over ``x`` (features of
    ``spec`` on healthy training samples). Fewer than ``min_rows`` finite values give 0 (the
    slot is left out of the pooled features)."""
    spec = replace(spec, pooled_scale=())
    names = feature_names(spec)
    kinds = pooled_kinds(spec)
    group = x[:, 0].astype(np.int64) if len(x) else np.zeros(0, dtype=np.int64)
    n_groups = int(group.max()) + 1 if len(group) else 0
    scale = np.zeros((n_groups, len(kinds), len(spec.windows), spec.n_slots))
    for k, kind in enumerate(kinds):
        for j, w in enumerate(spec.windows):
            dep = _departures(x, names, spec, kind, w)
            for g in np.unique(group):
                for m in range(spec.n_slots):
                    d = dep[group == g, m]
                    d = d[np.isfinite(d)]
                    if len(d) >= min_rows:
                        scale[g, k, j, m] = max(float(np.quantile(d, quantile)), EPS)
    return replace(spec, pooled_scale=_as_tuple(scale))


def pooled_features(x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Per pooled kind and window, from the features ``x`` before the pooled ones: each slot's
    |departure| in its healthy spread for the sample's device model (1 = the healthy
    :data:`POOLED_QUANTILE`), then across slots the largest, the second largest and the sum of
    the excess over 1. The same figures for every device model and metric, so a large departure
    anywhere reads alike. NaN where no slot has a spread."""
    base = replace(spec, pooled_scale=())
    names = feature_names(base)
    scale = np.asarray(spec.pooled_scale, dtype=np.float64)  # [G, K, W, M]
    group = x[:, 0].astype(np.int64)
    known = (group >= 0) & (group < len(scale))
    sc = np.where(known[:, None, None, None], scale[np.where(known, group, 0)], 0.0)  # [N, K, W, M]
    out = []
    with np.errstate(invalid="ignore", divide="ignore"):  # no slot with a spread gives NaN
        for k, kind in enumerate(pooled_kinds(spec)):
            for j, w in enumerate(spec.windows):
                s = sc[:, k, j]
                a = np.where(s > 0, _departures(x, names, base, kind, w) / np.where(s > 0, s, 1.0), np.nan)
                ranked = np.sort(np.where(np.isnan(a), -np.inf, a), axis=1)[:, ::-1]
                ranked = np.column_stack([ranked, np.full(len(a), -np.inf)])  # one slot: no second
                ranked[~np.isfinite(ranked)] = np.nan
                out += [ranked[:, 0], ranked[:, 1],
                        np.where(np.isnan(ranked[:, 0]), np.nan, np.nansum(np.maximum(a - 1.0, 0.0), axis=1))]
    return np.column_stack(out) if out else np.zeros((len(x), 0))


def _row_max(a: np.ndarray) -> np.ndarray:
    """Per row of ``[N, M]`` the largest value, NaN where a row has none. Unlike ``np.nanmax``
    it warns about nothing, so no ``warnings`` filter is needed: those are process-wide, and the
    scorer computes features on two threads."""
    has = ~np.isnan(a).all(axis=1)
    out = np.full(len(a), np.nan)
    if has.any():
        out[has] = np.nanmax(a[has], axis=1)
    return out


def _row_rms(a: np.ndarray) -> np.ndarray:
    """Per row of ``[N, M]`` the root mean square of its values, NaN where a row has none."""
    present = ~np.isnan(a)
    n = present.sum(axis=1)
    total = np.where(present, a * a, 0.0).sum(axis=1)
    return np.where(n > 0, np.sqrt(total / np.maximum(n, 1)), np.nan)


def _slots(values: np.ndarray, n_slots: int) -> np.ndarray:
    """The first ``n_slots`` slots of ``values``, padded with NaN slots where there are fewer."""
    values = values[:, :, :n_slots]
    if values.shape[2] < n_slots:
        pad = np.full(values.shape[:2] + (n_slots - values.shape[2],), np.nan)
        values = np.concatenate([values, pad], axis=2)
    return values


def compute(grid: Grid, spec: FeatureSpec, dev: np.ndarray, step: np.ndarray,
            resets: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix ``[N, F]`` for samples (device index ``dev``, step index ``step``).

    Per metric slot: the baseline (mean and std of the first ``baseline_len`` steps of the last
    ``baseline_lookback`` steps since the last reset); per window mean, std, the mean's distance
    from the baseline in baseline standard deviations (z) and the change over the window along
    the least-squares slope, also in baseline standard deviations (trend); min and max over short
    windows as z; with ``spec.fleet``, the window mean minus the mean of the model's fleet
    centre over the same window, in fleet scale (see :func:`fleet_centre`), and its shift from the
    same figure for the baseline. Across slots per
    window: the largest |z|, the largest |trend| and the root mean square of z. With a residual
    model in ``spec`` (see :func:`fit_residuals`), per slot and window the departure of what the
    other slots do not explain (:func:`_residual_features`), and with a fleet residual model the
    same for the readings less the fleet centre. Then event counts
    per window, the device's age, the time since its last reset and the share of the last 24
    steps with data.
    """
    dev = np.asarray(dev, dtype=np.int64)
    step = np.asarray(step, dtype=np.int64)
    values = usable_values(grid, spec)
    if resets is not None:
        lo_reset = resets[dev, step]
    elif len(dev) <= len(grid.device_ids):  # scoring: per sample
        lo_reset = sample_reset_steps(grid, dev, step)
    else:
        lo_reset = reset_steps(grid)[dev, step]
    hi = step + 1
    base_lo = np.maximum(lo_reset, hi - spec.baseline_lookback)
    bounds = {"base": (base_lo, np.minimum(base_lo + spec.baseline_len, hi)),
              "cover": (np.maximum(lo_reset, hi - 24), hi)}
    bounds.update({w: (np.maximum(lo_reset, hi - w), hi) for w in spec.windows})
    span = max(max(spec.windows), spec.baseline_lookback, 24)
    stats = window_stats(values, dev, bounds, span)
    base = stats["base"]
    scale = base["std"] + 1e-3 * np.abs(base["mean"]) + EPS
    n_feat = len(feature_names(spec))
    out = np.full((len(dev), n_feat), np.nan)
    now = grid.time[dev, step]
    out[:, 0] = grid.group[dev]
    out[:, 1] = now - grid.installed[dev]
    out[:, 2] = now - last_reset_time(grid, dev, step)
    out[:, 3] = stats["cover"]["n"].max(axis=1) / 24.0
    per_window = {w: stats[w] for w in spec.windows}
    if spec.fleet:  # the device's window mean against its model's fleet centre, in fleet scale
        centre, fscale = fleet_centre(values, grid.group, spec.fleet_min_devices)
        g = grid.group[dev]
        cm, centre_n = _centre_means(centre, g, {k: bounds[k] for k in ["base", *spec.windows]})
        with np.errstate(invalid="ignore"):
            fleet = {w: (stats[w]["mean"] - cm[w]) / fscale[g] for w in spec.windows}
            fleet_base = (base["mean"] - cm["base"]) / fscale[g]
    ext = {w: _extremes(values, dev, step, lo_reset, w) for w in spec.extreme_windows}

    col = 4
    with np.errstate(invalid="ignore", divide="ignore"):
        for m in range(spec.n_slots):
            out[:, col] = base["mean"][:, m]
            out[:, col + 1] = base["std"][:, m]
            col += 2
            for w in spec.windows:
                st = per_window[w]
                out[:, col] = st["mean"][:, m]
                out[:, col + 1] = st["std"][:, m]
                out[:, col + 2] = (st["mean"][:, m] - base["mean"][:, m]) / scale[:, m]
                out[:, col + 3] = st["slope"][:, m] * (w - 1) / scale[:, m]
                col += 4
            for w in spec.extreme_windows:
                mins, maxs = ext[w]
                out[:, col] = (mins[:, m] - base["mean"][:, m]) / scale[:, m]
                out[:, col + 1] = (maxs[:, m] - base["mean"][:, m]) / scale[:, m]
                col += 2
            if spec.fleet:
                for w in spec.windows:
                    out[:, col] = fleet[w][:, m]
                    col += 1
                for w in spec.windows:  # against the fleet, relative to the device's own baseline
                    out[:, col] = fleet[w][:, m] - fleet_base[:, m]
                    col += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        for w in spec.windows:  # across slots: any metric departing, whichever model and slot
            z = np.abs(per_window[w]["mean"] - base["mean"]) / scale
            trend = np.abs(per_window[w]["slope"]) * (w - 1) / scale
            out[:, col] = _row_max(z)
            out[:, col + 1] = _row_max(trend)
            out[:, col + 2] = _row_rms(z)
            col += 3
    if spec.residual_coef:
        delta = {w: stats[w]["mean"] - base["mean"] for w in spec.windows}
        col = _residual_features(out, col, grid, spec.residual_coef, spec.residual_scale, delta, dev)
    if spec.fleet_residual_coef and spec.fleet:  # the same, on the readings less the fleet centre
        delta = _fleet_departures(values, centre, grid.group, dev, bounds, stats, cm, centre_n, span,
                                  spec.windows)
        col = _residual_features(out, col, grid, spec.fleet_residual_coef, spec.fleet_residual_scale,
                                 delta, dev)
    if spec.n_counts:
        sums = _count_sums(grid.counts[:, :, : spec.n_counts], dev, hi, spec.count_windows)
        for k in range(spec.n_counts):
            for w in spec.count_windows:
                out[:, col] = sums[w][:, k]
                col += 1
    if spec.pooled_scale:
        out[:, col:] = pooled_features(out[:, :col], spec)
    return out


def _count_sums(a: np.ndarray, dev: np.ndarray, hi: np.ndarray, windows) -> dict[int, np.ndarray]:
    """Per window ``w``: ``a[dev, max(0, hi-w):hi].sum()`` per sample (``[N, K]``)."""
    a = np.asarray(a, dtype=np.float64)
    dev, hi = np.asarray(dev, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    out = {}
    for w in windows:
        out[w] = np.empty((len(dev), a.shape[2]))
        window_totals(a, dev, np.maximum(0, hi - w), hi, out[w])
    return out


def _residual_features(out: np.ndarray, col: int, grid: Grid, residual_coef: tuple, residual_scale: tuple,
                       delta: dict[int, np.ndarray], dev: np.ndarray) -> int:
    """Per slot and window: the residual's departure from its baseline, in the model's residual
    scale; across slots the largest |departure| and its root mean square. ``delta``: per window,
    each slot's departure (window mean minus baseline mean, ``[N, M]``). Fills ``out`` from
    column ``col``; returns the next column.

    The residual is linear in the readings, so its window mean minus its baseline mean is each
    slot's departure minus the departure the other slots' departures predict; the intercept
    cancels. NaN where the slot, one of its predictors or the residual model is missing."""
    n_slots = next(iter(delta.values())).shape[1]
    coef = np.asarray(residual_coef, dtype=np.float64)[:, :, :n_slots]  # [G, M, M]
    scale = np.asarray(residual_scale, dtype=np.float64)  # [G, M]
    known = grid.group[dev] < len(coef)  # a device model added after training has no fit
    group = np.where(known, grid.group[dev], 0)
    scale = np.where(known[:, None], scale[group], 0.0)  # [N, M]
    uses = coef[group] != 0  # [N, M target, M predictor]
    with np.errstate(invalid="ignore", divide="ignore"):
        rz = {}
        for w, d in delta.items():
            missing = np.isnan(d)
            explained = np.einsum("nmk,nk->nm", coef[group], np.where(missing, 0.0, d))
            lacking = missing | (uses & missing[:, None, :]).any(axis=2) | (scale <= 0)
            rz[w] = np.where(lacking, np.nan, (d - explained) / np.where(scale > 0, scale, 1.0))
        for m in range(n_slots):
            for w in delta:
                out[:, col] = rz[w][:, m]
                col += 1
        for w in delta:
            out[:, col] = _row_max(np.abs(rz[w]))
            out[:, col + 1] = _row_rms(rz[w])
            col += 2
    return col


# ---------------------------------------------------------------- labels


@dataclass(frozen=True, slots=True)
class Failure:
    """A confirmed failure of one device at ``time`` (grid time units), with its mode if known."""

    device_index: int
    time: float
    mode: str = ""


@dataclass(slots=True)
class Labels:
    """Per sample: kept for training, failure within horizon, time to next failure, its mode."""

    keep: np.ndarray
    y: np.ndarray
    ttf: np.ndarray  # time to the next failure, NaN if none observed
    mode: np.ndarray  # object array of mode codes ('' where no failure follows)


def make_labels(grid: Grid, dev: np.ndarray, step: np.ndarray, failures: Sequence[Failure],
                repairs: Sequence[Sequence[float]], horizon: float, settle: float,
                min_recent: int = 6) -> Labels:
    """Label samples with "failure within ``horizon``" and the time to the next failure.

    Dropped (``keep`` false): steps without data in the last ``min_recent`` steps; steps while the
    device is failed (from a failure until the next repair, when repairs are known); steps less
    than ``settle`` after a failure or repair (neither healthy baseline nor pre-failure); and
    steps whose outcome is unknown (no failure follows and the data ends within ``horizon``).
    """
    dev = np.asarray(dev, dtype=np.int64)
    step = np.asarray(step, dtype=np.int64)
    now = grid.time[dev, step]
    n = len(dev)
    ttf = np.full(n, np.nan)
    mode = np.full(n, "", dtype=object)
    keep = ~np.isnan(now)
    by_dev: dict[int, list[Failure]] = {}
    for f in failures:
        by_dev.setdefault(f.device_index, []).append(f)
    last = grid.last_steps()
    end_time = np.where(last >= 0, grid.time[np.arange(len(last)), np.maximum(last, 0)], -np.inf)
    present = ~np.isnan(grid.values).all(axis=2)
    recent = _cumsum(present.astype(np.float64)[:, :, None])[:, :, 0]
    keep &= (recent[dev, step + 1] - recent[dev, np.maximum(step + 1 - min_recent, 0)]) > 0
    for i in np.unique(dev):
        sel = np.flatnonzero(dev == i)
        t = now[sel]
        fl = sorted(by_dev.get(int(i), []), key=lambda f: f.time)
        ftimes = np.array([f.time for f in fl], dtype=np.float64)
        fmodes = np.array([f.mode for f in fl], dtype=object)
        reps = np.sort(np.asarray(repairs[i] if i < len(repairs) else [], dtype=np.float64))
        if len(ftimes):
            k = np.searchsorted(ftimes, t, side="right")  # next failure strictly after t
            has = k < len(ftimes)
            ttf[sel] = np.where(has, ftimes[np.minimum(k, len(ftimes) - 1)] - t, np.nan)
            mode[sel] = np.where(has, fmodes[np.minimum(k, len(ftimes) - 1)], "")
            if len(reps):  # failed from the failure until the first repair after it
                prev = k - 1
                pf = np.where(prev >= 0, ftimes[np.maximum(prev, 0)], -np.inf)
                r = np.searchsorted(reps, pf, side="left")
                fixed = np.where(r < len(reps), reps[np.minimum(r, len(reps) - 1)], np.inf)
                keep[sel] &= ~((prev >= 0) & (t >= pf) & (t < fixed))
        events = np.sort(np.concatenate([ftimes, reps]))
        if len(events):
            j = np.searchsorted(events, t, side="right") - 1
            since = np.where(j >= 0, t - events[np.maximum(j, 0)], np.inf)
            keep[sel] &= since >= settle
        unknown = np.isnan(ttf[sel]) & (end_time[i] - t < horizon)
        keep[sel] &= ~unknown
    y = (ttf <= horizon) & ~np.isnan(ttf)
    return Labels(keep=keep, y=y, ttf=ttf, mode=mode)
