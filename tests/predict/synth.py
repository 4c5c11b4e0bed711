"""Small generated histories for the predict tests: devices whose metric drifts before failures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_history(directory: Path, devices: int = 12, steps: int = 400, seed: int = 1,
                  lead: int = 60) -> tuple[Path, Path]:
    """readings.csv (device_id, ts, temp, vib, const) and failures.csv; every other device fails
    twice, its ``vib`` rising over the ``lead`` steps before each failure."""
    rng = np.random.default_rng(seed)
    readings, failures = directory / "readings.csv", directory / "failures.csv"
    with readings.open("w", newline="") as r, failures.open("w", newline="") as f:
        rw, fw = csv.writer(r), csv.writer(f)
        rw.writerow(["device_id", "ts", "temp", "vib", "const"])
        fw.writerow(["device_id", "ts", "mode"])
        for d in range(devices):
            fails = sorted(rng.choice(np.arange(150, steps - 20), 2, replace=False)) if d % 2 else []
            if len(fails) == 2 and fails[1] - fails[0] < lead + 20:
                fails = [fails[0]]
            vib = 1.0 + 0.05 * rng.standard_normal(steps)
            for ft in fails:
                ramp = np.clip((np.arange(steps) - (ft - lead)) / lead, 0, None)
                vib += np.where(np.arange(steps) < ft, 2.0 * ramp, 0.0)
                fw.writerow([f"dev-{d}", ft, "bearing" if d % 4 == 1 else "motor"])
            for t in range(steps):
                rw.writerow([f"dev-{d}", t, round(20 + rng.standard_normal(), 3), round(vib[t], 4), 5])
    return readings, failures
