"""Compiled loops of the window features (numba): window sums (the scoring path), extremes and
event counts (both paths).

Pure numeric code on the arrays of :mod:`predict.features`, one pass over each sample's own
steps, no temporaries. The scorer's threads run batches in parallel, so every kernel releases
the GIL (``nogil``). Sums are float64 in step order: event counts come out exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def window_sums(values, dev, lo, hi, sums, ref):  # pragma: no cover - compiled
    """Sums over each sample's windows: sample ``i`` reads ``values[dev[i], :, m]``, its window
    ``k`` the steps ``[lo[k, i], hi[k, i])``.

    Readings are centred on the sample's first reading in any of its windows (``ref[i, m]``, 0
    when none), time on the window's mid step, which keeps the sums free of cancellation.
    ``sums[k, :, i, m]`` receives count, sum, sum of squares, time, time squared and time times
    reading over the window's readings (NaN skipped)."""
    n_k, n_s, n_m = lo.shape[0], dev.shape[0], values.shape[2]
    for i in range(n_s):
        d = dev[i]
        start, stop = lo[0, i], hi[0, i]
        for k in range(1, n_k):
            start, stop = min(start, lo[k, i]), max(stop, hi[k, i])
        for m in range(n_m):
            r = 0.0
            for j in range(start, stop):
                v = values[d, j, m]
                if not np.isnan(v):
                    r = v
                    break
            ref[i, m] = r
            for k in range(n_k):
                c = 0.5 * (lo[k, i] + hi[k, i] - 1)
                n = s = q = t = tt = tx = 0.0
                for j in range(lo[k, i], hi[k, i]):
                    v = values[d, j, m]
                    if not np.isnan(v):
                        x = v - r
                        tc = j - c
                        n += 1.0
                        s += x
                        q += x * x
                        t += tc
                        tt += tc * tc
                        tx += tc * x
                sums[k, 0, i, m] = n
                sums[k, 1, i, m] = s
                sums[k, 2, i, m] = q
                sums[k, 3, i, m] = t
                sums[k, 4, i, m] = tt
                sums[k, 5, i, m] = tx


@njit(cache=True, nogil=True)
def window_extremes(values, dev, lo, hi, mins, maxs):  # pragma: no cover - compiled
    """Smallest and largest reading per slot over steps ``[lo[i], hi[i])`` of ``values[dev[i]]``
    (NaN skipped; NaN where the window has none)."""
    n_s, n_m = dev.shape[0], values.shape[2]
    for i in range(n_s):
        d = dev[i]
        for m in range(n_m):
            a, b = np.inf, -np.inf
            for j in range(lo[i], hi[i]):
                v = values[d, j, m]
                if v < a:
                    a = v
                if v > b:
                    b = v
            mins[i, m] = a if a <= b else np.nan
            maxs[i, m] = b if a <= b else np.nan


@njit(cache=True, nogil=True)
def window_totals(a, dev, lo, hi, out):  # pragma: no cover - compiled
    """``out[i, k]`` = the sum of ``a[dev[i], lo[i]:hi[i], k]``, in step order."""
    n_s, n_k = dev.shape[0], a.shape[2]
    for i in range(n_s):
        d = dev[i]
        for k in range(n_k):
            s = 0.0
            for j in range(lo[i], hi[i]):
                s += a[d, j, k]
            out[i, k] = s
