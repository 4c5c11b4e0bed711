"""The clock every process shares: real time, or a simulated time running ``speed`` times faster."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Clock:
    """Maps real time to service time: ``sim = sim_anchor + (real - real_anchor) * speed``.

    All processes of one deployment get the same anchor (``FIELDOPS_CLOCK_ANCHOR``) so they agree
    on "now" even at an accelerated speed.
    """

    speed: float = 1.0
    real_anchor: datetime | None = None
    sim_anchor: datetime | None = None

    @classmethod
    def from_settings(cls, speed: float, anchor: str) -> Clock:
        if not anchor:
            return cls(speed=speed, real_anchor=utcnow(), sim_anchor=utcnow()) if speed != 1.0 else cls()
        real_s, _, sim_s = anchor.partition("/")
        return cls(speed=speed, real_anchor=_parse(real_s), sim_anchor=_parse(sim_s or real_s))

    def anchor_string(self) -> str:
        if self.real_anchor is None or self.sim_anchor is None:
            return ""
        return f"{self.real_anchor.isoformat()}/{self.sim_anchor.isoformat()}"

    def now(self) -> datetime:
        real = utcnow()
        if self.real_anchor is None or self.sim_anchor is None:
            return real
        return self.sim_anchor + (real - self.real_anchor) * self.speed

    def sleep(self, sim_seconds: float) -> None:
        """Sleep for ``sim_seconds`` of service time."""
        time.sleep(max(0.0, sim_seconds / self.speed))

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed


def service_clock(settings) -> Clock:
    """The clock named by FIELDOPS_CLOCK_SPEED and FIELDOPS_CLOCK_ANCHOR."""
    return Clock.from_settings(settings.clock_speed, settings.clock_anchor)


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        raise ValueError(f"clock anchor {text!r} must carry a UTC offset")
    return value.astimezone(UTC)
