"""Every weight of the dispatch objective, in one place.

The objective is a sum of integer cost units. One unit is one second of travel when
``travel_s`` is 1; every other weight is expressed relative to it:

- travel: ``travel_s`` per second of driving plus ``distance_m`` per metre driven;
- lateness past a job's response deadline: ``lateness_per_s[priority]`` per second late,
  steeply growing from P4 (low) to P1 (critical);
- overtime past a shift end: ``overtime_per_s`` per second (bounded by the technician's
  ``max_overtime_s``);
- unassigned jobs: ``unassigned[priority]``, so the least important are dropped first; one P1
  outweighs any number of P4 drops that a route could realistically trade against it;
- disruption: ``disruption`` once per already dispatched job that a re-plan moves to another
  technician, so re-plans only change what is worth a quarter of an hour of driving;
- overrides: ``override_dropped`` for leaving a dispatcher-assigned or pinned job unserved,
  large enough that the solver drops anything else first.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _lateness() -> dict[int, int]:
    return {1: 100, 2: 20, 3: 4, 4: 1}


def _unassigned() -> dict[int, int]:
    return {1: 10_000_000, 2: 1_000_000, 3: 100_000, 4: 20_000}


@dataclass(frozen=True, slots=True)
class Weights:
    travel_s: int = 1
    distance_m: int = 0
    lateness_per_s: dict[int, int] = field(default_factory=_lateness)
    overtime_per_s: int = 5
    unassigned: dict[int, int] = field(default_factory=_unassigned)
    disruption: int = 900
    override_dropped: int = 1_000_000_000

    def lateness(self, priority: int) -> int:
        return self.lateness_per_s.get(priority, self.lateness_per_s[max(self.lateness_per_s)])

    def drop(self, priority: int) -> int:
        return self.unassigned.get(priority, self.unassigned[max(self.unassigned)])


DEFAULT_WEIGHTS = Weights()

# Solomon benchmarks minimise distance only: arcs cost their (scaled) distance.
DISTANCE_ONLY = Weights(travel_s=0, distance_m=1)
