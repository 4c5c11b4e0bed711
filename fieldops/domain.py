"""Frozen domain values shared by every layer. No I/O here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import IntEnum, StrEnum

MAX_METRICS = 8  # metric slots per device model; telemetry stores one real[] of this many at most


class Priority(IntEnum):
    """P1 is the most urgent."""

    CRITICAL = 1
    HIGH = 2
    NORMAL = 3
    LOW = 4


class JobStatus(StrEnum):
    NEW = "new"
    SCHEDULED = "scheduled"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    UNRESOLVED = "unresolved"
    CANCELLED = "cancelled"


OPEN_JOB_STATUSES = frozenset(
    {JobStatus.NEW, JobStatus.SCHEDULED, JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE}
)


class JobType(StrEnum):
    REPAIR = "repair"
    INSPECTION = "inspection"
    PREVENTIVE = "preventive"
    INSTALLATION = "installation"


class JobSource(StrEnum):
    CUSTOMER = "customer"
    FAULT_EVENT = "fault_event"
    PREDICTION = "prediction"
    PREVENTIVE_SCHEDULE = "preventive_schedule"
    FOLLOW_UP = "follow_up"


class StockKind(StrEnum):
    WAREHOUSE = "warehouse"
    VAN = "van"


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0) or not (-180.0 <= self.lon <= 180.0):
            raise ValueError(f"coordinates out of range: {self.lat}, {self.lon}")


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    name: str
    contract: str = "standard"


@dataclass(frozen=True, slots=True)
class Site:
    id: int
    customer_id: int
    name: str
    address: str
    location: GeoPoint
    region: str = "default"


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured quantity of a device model; ``index`` is its slot in the telemetry array."""

    index: int
    name: str
    unit: str
    min_value: float
    max_value: float

    def __post_init__(self) -> None:
        if not 0 <= self.index < MAX_METRICS:
            raise ValueError(f"metric {self.name}: index must be in [0, {MAX_METRICS})")
        if not self.min_value < self.max_value:
            raise ValueError(f"metric {self.name}: min_value must be below max_value")

    def accepts(self, value: float) -> bool:
        return math.isfinite(value) and self.min_value <= value <= self.max_value


@dataclass(frozen=True, slots=True)
class PartQuantity:
    sku: str
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"part {self.sku}: quantity must be positive")


@dataclass(frozen=True, slots=True)
class FailureMode:
    """How a device model fails, and what a repair of it needs."""

    code: str
    name: str
    skill: str
    repair_duration_s: int
    parts: tuple[PartQuantity, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceModel:
    code: str
    name: str
    metrics: tuple[Metric, ...]
    failure_modes: tuple[FailureMode, ...] = ()
    id: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.metrics) <= MAX_METRICS:
            raise ValueError(f"model {self.code}: 1 to {MAX_METRICS} metrics")
        indexes = [m.index for m in self.metrics]
        if sorted(indexes) != list(range(len(indexes))):
            raise ValueError(f"model {self.code}: metric indexes must be 0..n-1")
        if len({m.name for m in self.metrics}) != len(self.metrics):
            raise ValueError(f"model {self.code}: duplicate metric name")

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def failure_mode(self, code: str) -> FailureMode | None:
        return next((f for f in self.failure_modes if f.code == code), None)


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    serial: str
    model_code: str
    site_id: int
    installed_at: datetime


@dataclass(frozen=True, slots=True)
class Reading:
    """One timestamped set of metric values from one device; ``values[i]`` is metric slot i."""

    device_id: int
    ts: datetime
    values: tuple[float | None, ...]
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Shift:
    start: time
    end: time
    break_start: time | None = None
    break_end: time | None = None
    break_duration_s: int = 0


@dataclass(frozen=True, slots=True)
class Technician:
    id: int
    name: str
    skills: frozenset[str]
    home: GeoPoint
    shift: Shift
    region: str = "default"


@dataclass(frozen=True, slots=True)
class Part:
    id: int
    sku: str
    name: str
    unit_cost: float = 0.0


@dataclass(frozen=True, slots=True)
class StockLocation:
    id: int
    kind: StockKind
    name: str
    location: GeoPoint | None = None
    technician_id: int | None = None


@dataclass(frozen=True, slots=True)
class TimeWindow:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("time window must end after it starts")


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    device_id: int | None
    site_id: int
    type: JobType
    source: JobSource
    status: JobStatus
    priority: int
    estimated_duration_s: int
    required_skills: frozenset[str] = frozenset()
    required_parts: tuple[PartQuantity, ...] = ()
    failure_mode: str | None = None
    windows: tuple[TimeWindow, ...] = ()
    response_due: datetime | None = None
    resolution_due: datetime | None = None
    version: int = 1


@dataclass(frozen=True, slots=True)
class Visit:
    """One stop of a technician's planned route."""

    technician_id: int
    sequence: int
    arrival: datetime
    departure: datetime
    job_id: int | None = None
    pickup_location_id: int | None = None
    travel_s: int = 0
    distance_m: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    created_at: datetime
    visits: tuple[Visit, ...] = ()
    unassigned: tuple[tuple[int, str], ...] = field(default=())  # (job id, reason)
