"""Weather and operating regimes, as vectorised functions of epoch seconds.

Local time is Central European (UTC+1, UTC+2 from April to October: an approximation of the
daylight-saving rule that is close enough for load patterns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
YEAR_S = 365.25 * DAY_S


@dataclass(frozen=True, slots=True)
class CalendarParts:
    local_hour: np.ndarray  # fractional hour of the local day
    weekday: np.ndarray  # 0 = Monday
    day_of_year: np.ndarray  # fractional


def calendar(ts: np.ndarray) -> CalendarParts:
    ts = np.asarray(ts, dtype=float)
    months = (ts.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12) + 1
    offset_h = np.where((months >= 4) & (months <= 10), 2.0, 1.0)
    local = ts + offset_h * 3600.0
    days = np.floor(local / DAY_S)
    years = local.astype("datetime64[s]").astype("datetime64[Y]")
    year_start = years.astype("datetime64[s]").astype(np.int64).astype(float)
    return CalendarParts(
        local_hour=(local - days * DAY_S) / 3600.0,
        weekday=((days.astype(np.int64) + 3) % 7),
        day_of_year=(local - year_start) / DAY_S,
    )


@dataclass(frozen=True, slots=True)
class Climate:
    """Ambient temperature: season + day/night + a few slow 'weather' waves seeded per region."""

    mean_c: float = 9.0
    season_amp_c: float = 9.5
    daily_amp_c: float = 4.5
    seed: int = 0

    def ambient_c(self, ts: np.ndarray) -> np.ndarray:
        ts = np.asarray(ts, dtype=float)
        cal = calendar(ts)
        season = -self.season_amp_c * np.cos(2 * np.pi * (cal.day_of_year - 15.0) / 365.25)
        daily = self.daily_amp_c * np.sin(2 * np.pi * (cal.local_hour - 9.0) / 24.0)
        rng = np.random.default_rng(self.seed)
        periods = rng.uniform(2.0, 11.0, 4) * DAY_S
        phases = rng.uniform(0, 2 * np.pi, 4)
        amps = rng.uniform(1.0, 2.5, 4)
        weather = (amps[:, None] * np.sin(2 * np.pi * ts[None, :] / periods[:, None] + phases[:, None])).sum(0)
        return self.mean_c + season + daily + weather


MUNICH_CLIMATE = Climate(mean_c=9.0, season_amp_c=9.5, daily_amp_c=4.5, seed=1158)


def _bump(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((hour - centre) / width) ** 2)


def _plateau(hour: np.ndarray, start: float, end: float, ramp: float = 0.7) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(hour - start) / (ramp / 4))) - 1.0 / (1.0 + np.exp(-(hour - end) / (ramp / 4)))


def load_profile(profile: str, ts: np.ndarray, ambient_c: np.ndarray) -> np.ndarray:
    """Expected load (0..1) of a machine following ``profile`` at times ``ts``."""
    cal = calendar(ts)
    h, wd = cal.local_hour, cal.weekday
    weekday = wd < 5
    if profile == "comfort_cooling":  # office/retail chillers: occupied hours times cooling demand
        occupied = np.where(weekday, 0.25 + 0.75 * _plateau(h, 7.0, 19.0), 0.25 + 0.15 * _plateau(h, 9, 17))
        demand = np.clip((ambient_c - 6.0) / 22.0, 0.0, 1.0)
        return np.clip(0.08 + occupied * (0.15 + 0.8 * demand), 0.0, 1.0)
    if profile == "two_shift":  # production compressed air: two shifts on weekdays, Saturday morning
        weekday_load = 0.08 + 0.72 * _plateau(h, 6.0, 22.0) - 0.2 * _bump(h, 12.5, 0.4)
        saturday = 0.08 + 0.5 * _plateau(h, 6.0, 14.0)
        return np.clip(np.where(weekday, weekday_load, np.where(wd == 5, saturday, 0.08)), 0.0, 1.0)
    if profile == "building_traffic":  # office elevators: morning, lunch and evening peaks
        day = 0.04 + 0.3 * _plateau(h, 7.0, 19.5) + 0.5 * _bump(h, 8.4, 0.6)
        day += 0.3 * _bump(h, 12.4, 0.6) + 0.4 * _bump(h, 17.3, 0.7)
        weekend = 0.03 + 0.15 * _plateau(h, 9.0, 18.0)
        return np.clip(np.where(weekday, day, weekend), 0.0, 1.0)
    raise ValueError(f"profile: unknown load profile {profile!r}")
