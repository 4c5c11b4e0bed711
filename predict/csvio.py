"""Exported history as CSV: readings (device_id, ts, numeric metrics) and failures (device_id, ts[, mode]).

``ts`` is ISO-8601 (turned into hours since 1970) or a plain number in any unit (operating hours,
cycles, ...); all times of one file set must use the same form. Each row is one step of the grid.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from predict.features import Failure, Grid

MAX_MAGNITUDE = 1e15  # readings and numeric times beyond this are export errors (the models compute in float32)


class CsvError(ValueError):
    """A CSV file cannot be used; the message names the file, line and field."""


@dataclass(slots=True)
class Readings:
    device_ids: list[str]
    metric_names: list[str]
    grid: Grid
    iso_time: bool
    ignored: list[str] = field(default_factory=list)  # columns not read: no number at all, or not the model's
    missing: list[str] = field(default_factory=list)  # the model's metrics without a column (empty slots)


def _parse_time(raw: str, where: str) -> tuple[float, bool]:
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise CsvError(f"{where}: ts {raw!r} is not a finite number of at most {MAX_MAGNITUDE:g}")
        return value, False
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CsvError(f"{where}: ts {raw!r} is neither a number nor an ISO-8601 time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() / 3600.0, True


def _open_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise CsvError(f"{path}: cannot read ({exc.strerror})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CsvError(f"{path}: not a readable CSV file ({exc})") from exc
    if not rows:
        raise CsvError(f"{path}: empty file, expected a header with device_id,ts")
    header = [h.strip() for h in rows[0]]
    lowered = [h.lower() for h in header]
    for required in ("device_id", "ts"):
        if required not in lowered:
            raise CsvError(f"{path}: header has no {required!r} column (found {', '.join(header)})")
    return header, rows[1:]


def _records(path: Path, header: list[str], rows: list[list[str]]):
    """Yield (line, row, device_id, time, iso) for every non-blank row, validating field count,
    device_id and ts."""
    lowered = [h.lower() for h in header]
    di, ti = lowered.index("device_id"), lowered.index("ts")
    for line, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise CsvError(f"{path}:{line}: {len(row)} fields, header has {len(header)}")
        device = row[di].strip()
        if not device:
            raise CsvError(f"{path}:{line}: device_id is empty")
        t, iso = _parse_time(row[ti], f"{path}:{line}")
        yield line, row, device, t, iso


def read_readings(path: Path, metric_names: list[str] | None = None) -> Readings:
    """Load readings into a grid. With ``metric_names`` (a trained model's), columns map by name
    and missing ones become empty slots (an error when none is there); otherwise every column but
    device_id and ts is a metric (non-numeric cells count as missing values; a column with no
    number at all is dropped). ``ignored`` and ``missing`` on the result name what was left out."""
    header, rows = _open_rows(path)
    lowered = [h.lower() for h in header]
    di, ti = lowered.index("device_id"), lowered.index("ts")
    others = [i for i in range(len(header)) if i not in (di, ti)]
    per_dev: dict[str, list[tuple[float, list[float]]]] = {}
    iso_seen: set[bool] = set()
    for line, row, device, t, iso in _records(path, header, rows):
        iso_seen.add(iso)
        vals = []
        for i in others:
            try:
                v = float(row[i])
            except ValueError:
                v = math.nan
            if abs(v) > MAX_MAGNITUDE and math.isfinite(v):
                raise CsvError(f"{path}:{line}: {header[i]} {row[i].strip()!r} is out of range "
                               f"(at most {MAX_MAGNITUDE:g} in magnitude)")
            vals.append(v if math.isfinite(v) else math.nan)
        per_dev.setdefault(device, []).append((t, vals))
    if not per_dev:
        raise CsvError(f"{path}: no data rows")
    if len(iso_seen) > 1:
        raise CsvError(f"{path}: ts mixes ISO-8601 times and plain numbers")
    names = [header[i] for i in others]
    if metric_names is None:
        usable = [j for j in range(len(others))
                  if any(not math.isnan(vals[j]) for series in per_dev.values() for _, vals in series)]
        chosen = [names[j] for j in usable]
        pick = usable
        if not chosen:
            raise CsvError(f"{path}: no metric column with a number besides device_id and ts "
                           f"(found {', '.join(header)})")
    else:
        chosen = list(metric_names)
        pick = [names.index(n) if n in names else -1 for n in chosen]
        if chosen and all(j < 0 for j in pick):
            raise CsvError(f"{path}: none of the model's metrics is a column (the model reads "
                           f"{', '.join(chosen)}; found {', '.join(names) or 'no metric column'})")
    ignored = [names[j] for j in range(len(names)) if j not in pick]
    missing = [n for n, j in zip(chosen, pick, strict=True) if j < 0]
    ids = sorted(per_dev)
    t_max = max(len(per_dev[d]) for d in ids)
    m = max(len(chosen), 1)
    values = np.full((len(ids), t_max, m), np.nan)
    time = np.full((len(ids), t_max), np.nan)
    for a, device in enumerate(ids):
        series = sorted(per_dev[device], key=lambda r: r[0])
        time[a, : len(series)] = [t for t, _ in series]
        raw = np.array([vals for _, vals in series], dtype=np.float64).reshape(len(series), -1)
        for slot, j in enumerate(pick):
            if j >= 0:
                values[a, : len(series), slot] = raw[:, j]
        if len(series) > 1 and np.any(np.diff(time[a, : len(series)]) == 0):
            raise CsvError(f"{path}: device {device} has two readings with the same ts")
    grid = Grid(
        device_ids=np.array(ids, dtype=object), values=values, time=time,
        counts=np.zeros((len(ids), t_max, 0)), resets=[np.empty(0) for _ in ids],
        installed=time[:, 0].copy(), group=np.zeros(len(ids), dtype=np.int64),
        slot_names=[chosen],
    )
    return Readings(ids, chosen, grid, iso_time=iso_seen == {True}, ignored=ignored, missing=missing)


def read_failures(path: Path, readings: Readings) -> list[Failure]:
    """Failures of devices present in ``readings``; unknown devices are an error."""
    header, rows = _open_rows(path)
    lowered = [h.lower() for h in header]
    mi = lowered.index("mode") if "mode" in lowered else -1
    index = {d: i for i, d in enumerate(readings.device_ids)}
    out = []
    for line, row, device, t, iso in _records(path, header, rows):
        if device not in index:
            raise CsvError(f"{path}:{line}: device_id {device!r} has no readings")
        if iso != readings.iso_time:
            raise CsvError(f"{path}:{line}: ts form differs from the readings' ts")
        out.append(Failure(index[device], t, row[mi].strip() if mi >= 0 else ""))
    if not out:
        raise CsvError(f"{path}: no failures; training needs at least one")
    return out


def with_resets(readings: Readings, failures: list[Failure]) -> None:
    """Record failures as resets of the grid (history before a failure is not the repaired device)."""
    per: dict[int, list[float]] = {}
    for f in failures:
        per.setdefault(f.device_index, []).append(f.time)
    readings.grid.resets = [np.sort(np.array(per.get(i, []), dtype=np.float64))
                            for i in range(len(readings.device_ids))]
