"""The simulated device models: metrics, operating regimes and failure modes with their physics.

Each :class:`ModelSpec` wraps the :class:`fieldops.domain.DeviceModel` that the rest of fieldops
sees (metrics with units and valid ranges, failure modes with skill, parts and repair duration) and
adds what only the simulator knows: how each metric responds to load and ambient temperature, how
noisy it is, and how each failure mode degrades the machine (hidden health 0 -> 1, failure at 1)
and shows in the metrics on the way.
"""

from __future__ import annotations

from dataclasses import dataclass

from fieldops.domain import DeviceModel, FailureMode, Metric, PartQuantity

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class MetricPhysics:
    """``value = base + load_gain * load + ambient_gain * (ambient_c - 20) + effects + noise``."""

    base: float
    load_gain: float = 0.0
    ambient_gain: float = 0.0
    noise_sd: float = 0.1


@dataclass(frozen=True, slots=True)
class Effect:
    """How a failure mode shifts one metric: ``magnitude * s ** power``.

    ``s`` is the progress through the degradation phase (0 until it starts, 1 at failure), so the
    shift comes in the last days; hidden wear before the phase does not show in the readings. A
    small power rises early in the phase, a large one only close to failure. With
    ``load_scaled`` the shift is proportional to the current load (e.g. extra current).
    """

    metric: str
    magnitude: float
    power: float = 1.0
    load_scaled: bool = False


@dataclass(frozen=True, slots=True)
class ModeSpec:
    """A failure mode with its hidden degradation process.

    Onset after installation or repair is exponential with mean ``mean_onset_days``; from onset,
    hidden wear grows as a gamma process (scaled by load stress, slowed by preventive maintenance)
    that reaches the visible threshold (health 0.8) after about 0.8 * ``mean_progress_days``.
    ``regularity`` is the gamma shape over that progression (large: smooth, small: jumpy). Then the
    degradation phase: health climbs from 0.8 to failure at 1.0 in about ``warning_scale`` times
    the device's warning horizon (default 72 h), and the effects rise with it. A share
    ``sudden_share`` of failures skips the phase: the unit fails when wear reaches the threshold,
    without warning.
    """

    mode: FailureMode
    fault_code: str
    mean_onset_days: float
    mean_progress_days: float
    regularity: float
    effects: tuple[Effect, ...]
    fault_values: tuple[tuple[str, float], ...] = ()
    pm_resets: bool = False
    warning_scale: float = 1.0
    sudden_share: float = 0.05

    @property
    def code(self) -> str:
        return self.mode.code


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A device model and its simulation parameters. ``profile`` names the load pattern."""

    model: DeviceModel
    serial_prefix: str
    physics: tuple[MetricPhysics, ...]  # per metric slot
    modes: tuple[ModeSpec, ...]
    profile: str
    interval_s: int = 10  # nominal live reading interval

    def __post_init__(self) -> None:
        if len(self.physics) != len(self.model.metrics):
            raise ValueError(f"model {self.model.code}: one MetricPhysics per metric")
        names = {m.name for m in self.model.metrics}
        for ms in self.modes:
            for eff in ms.effects:
                if eff.metric not in names:
                    raise ValueError(f"model {self.model.code}: effect on unknown metric {eff.metric}")
            for metric, _ in ms.fault_values:
                if metric not in names:
                    raise ValueError(f"model {self.model.code}: fault value for unknown metric {metric}")

    @property
    def code(self) -> str:
        return self.model.code

    def metric_index(self, name: str) -> int:
        metric = self.model.metric(name)
        if metric is None:
            raise KeyError(f"model {self.code} has no metric {name}")
        return metric.index

    def mode_index(self, code: str) -> int:
        for i, ms in enumerate(self.modes):
            if ms.code == code:
                return i
        raise KeyError(f"model {self.code} has no failure mode {code}")


def _fm(code: str, name: str, skill: str, hours: float, *parts: tuple[str, int]) -> FailureMode:
    return FailureMode(code, name, skill, int(hours * 3600), tuple(PartQuantity(s, q) for s, q in parts))


# ---------------------------------------------------------------- parts catalogue

PARTS: tuple[tuple[str, str, float], ...] = (
    ("REF-R134A-10", "Refrigerant R134a, 10 kg cylinder", 240.0),
    ("SEAL-KIT-CH", "Chiller seal and O-ring kit", 85.0),
    ("BRG-CH-6312", "Chiller compressor bearing 6312", 310.0),
    ("CHEM-COIL-5L", "Condenser coil cleaner, 5 l", 45.0),
    ("CONT-3P-95A", "Contactor 3-pole 95 A", 180.0),
    ("FLT-AIR-AC", "Compressor intake filter element", 60.0),
    ("BRG-AC-6310", "Air-end bearing set", 420.0),
    ("OIL-SEAL-AC", "Shaft seal kit, air compressor", 120.0),
    ("OIL-AC-5L", "Compressor oil, 5 l", 70.0),
    ("MTR-AC-45KW", "Motor 45 kW rewind exchange", 2900.0),
    ("DOOR-ROLLER", "Landing door roller", 25.0),
    ("DOOR-BELT", "Door operator belt", 65.0),
    ("BRG-EL-6208", "Traction machine bearing", 150.0),
    ("ENC-1024", "Motor encoder 1024 ppr", 390.0),
    ("IGBT-MOD-75", "IGBT module 75 A", 640.0),
)


# ---------------------------------------------------------------- models


def _chiller() -> ModelSpec:
    model = DeviceModel(
        code="chiller",
        name="Water-cooled screw chiller 400 kW",
        metrics=(
            Metric(0, "chw_supply_temp_c", "degC", 2.0, 25.0),
            Metric(1, "chw_return_temp_c", "degC", 4.0, 30.0),
            Metric(2, "condenser_pressure_bar", "bar", 4.0, 25.0),
            Metric(3, "evaporator_pressure_bar", "bar", 0.5, 6.0),
            Metric(4, "compressor_current_a", "A", 0.0, 400.0),
            Metric(5, "vibration_mm_s", "mm/s", 0.0, 30.0),
            Metric(6, "oil_temp_c", "degC", 15.0, 110.0),
        ),
        failure_modes=(
            _fm("refrigerant_leak", "Refrigerant leak", "refrigeration", 4,
                ("REF-R134A-10", 2), ("SEAL-KIT-CH", 1)),
            _fm("bearing_wear", "Compressor bearing wear", "mechanical", 6, ("BRG-CH-6312", 2)),
            _fm("condenser_fouling", "Condenser fouling", "refrigeration", 3, ("CHEM-COIL-5L", 1)),
            _fm("contactor_failure", "Compressor contactor failure", "electrical", 1.5,
                ("CONT-3P-95A", 1)),
        ),
    )
    fm = {f.code: f for f in model.failure_modes}
    return ModelSpec(
        model=model,
        serial_prefix="CH",
        physics=(
            MetricPhysics(6.2, 1.2, 0.02, 0.15),  # supply: holds set point, drifts with load
            MetricPhysics(7.0, 5.5, 0.03, 0.2),  # return: supply + load-dependent delta-T
            MetricPhysics(8.0, 3.5, 0.22, 0.25),  # condenser: load and ambient
            MetricPhysics(3.6, -0.5, 0.0, 0.05),  # evaporator
            MetricPhysics(20.0, 240.0, 0.8, 4.0),  # current
            MetricPhysics(0.6, 2.2, 0.0, 0.2),  # vibration
            MetricPhysics(42.0, 18.0, 0.25, 0.8),  # oil temperature
        ),
        modes=(
            ModeSpec(fm["refrigerant_leak"], "CH-E21", 420, 35, 30.0, (
                Effect("evaporator_pressure_bar", -1.1, 1.0),
                Effect("chw_supply_temp_c", 2.5, 2.0, load_scaled=True),
                Effect("compressor_current_a", 25.0, 1.5, load_scaled=True),
            ), (("chw_supply_temp_c", 14.0), ("evaporator_pressure_bar", 1.2)), warning_scale=1.1),
            ModeSpec(fm["bearing_wear"], "CH-E37", 600, 25, 25.0, (
                Effect("vibration_mm_s", 5.0, 1.5),
                Effect("oil_temp_c", 9.0, 2.0),
                Effect("compressor_current_a", 8.0, 2.0, load_scaled=True),
            ), (("vibration_mm_s", 14.0),), warning_scale=1.0),
            ModeSpec(fm["condenser_fouling"], "CH-E12", 300, 40, 30.0, (
                Effect("condenser_pressure_bar", 4.0, 1.2, load_scaled=True),
                Effect("compressor_current_a", 30.0, 1.5, load_scaled=True),
                Effect("oil_temp_c", 5.0, 1.5),
            ), (("condenser_pressure_bar", 23.0),), pm_resets=True, warning_scale=1.2),
            ModeSpec(fm["contactor_failure"], "CH-E05", 900, 2, 10.0, (
                Effect("compressor_current_a", 25.0, 2.0),
            ), (("compressor_current_a", 0.0),), warning_scale=0.6, sudden_share=0.5),
        ),
        profile="comfort_cooling",
        interval_s=10,
    )


def _air_compressor() -> ModelSpec:
    model = DeviceModel(
        code="air_compressor",
        name="Oil-injected screw air compressor 45 kW",
        metrics=(
            Metric(0, "discharge_pressure_bar", "bar", 0.0, 13.0),
            Metric(1, "discharge_temp_c", "degC", 10.0, 130.0),
            Metric(2, "motor_current_a", "A", 0.0, 150.0),
            Metric(3, "vibration_mm_s", "mm/s", 0.0, 30.0),
            Metric(4, "oil_pressure_bar", "bar", 0.0, 6.0),
            Metric(5, "intake_filter_dp_mbar", "mbar", 0.0, 200.0),
            Metric(6, "duty_cycle_pct", "%", 0.0, 100.0),
        ),
        failure_modes=(
            _fm("filter_clogging", "Intake filter clogging", "mechanical", 1, ("FLT-AIR-AC", 1)),
            _fm("bearing_wear", "Air-end bearing wear", "mechanical", 8, ("BRG-AC-6310", 1)),
            _fm("oil_leak", "Oil leak at shaft seal", "mechanical", 3,
                ("OIL-SEAL-AC", 1), ("OIL-AC-5L", 2)),
            _fm("motor_winding_fault", "Motor winding insulation fault", "electrical", 5,
                ("MTR-AC-45KW", 1)),
        ),
    )
    fm = {f.code: f for f in model.failure_modes}
    return ModelSpec(
        model=model,
        serial_prefix="AC",
        physics=(
            MetricPhysics(6.8, 0.6, 0.0, 0.08),
            MetricPhysics(55.0, 25.0, 0.6, 0.8),
            MetricPhysics(12.0, 70.0, 0.0, 1.5),
            MetricPhysics(0.8, 1.6, 0.0, 0.15),
            MetricPhysics(3.2, 1.0, 0.0, 0.05),
            MetricPhysics(18.0, 12.0, 0.0, 1.5),
            MetricPhysics(2.0, 95.0, 0.0, 1.0),
        ),
        modes=(
            ModeSpec(fm["filter_clogging"], "AC-W10", 120, 30, 40.0, (
                Effect("intake_filter_dp_mbar", 120.0, 1.0),
                Effect("discharge_temp_c", 6.0, 2.0),
                Effect("motor_current_a", 6.0, 1.5, load_scaled=True),
            ), (("intake_filter_dp_mbar", 190.0), ("discharge_pressure_bar", 4.5)),
                pm_resets=True, warning_scale=1.2),
            ModeSpec(fm["bearing_wear"], "AC-E31", 700, 30, 25.0, (
                Effect("vibration_mm_s", 6.0, 1.8),
                Effect("discharge_temp_c", 8.0, 2.0),
            ), (("vibration_mm_s", 16.0),), warning_scale=1.0),
            ModeSpec(fm["oil_leak"], "AC-E44", 500, 20, 25.0, (
                Effect("oil_pressure_bar", -1.4, 1.2),
                Effect("discharge_temp_c", 22.0, 2.0),
            ), (("oil_pressure_bar", 0.6), ("discharge_temp_c", 112.0)), warning_scale=0.9),
            ModeSpec(fm["motor_winding_fault"], "AC-E02", 1100, 3, 10.0, (
                Effect("motor_current_a", 12.0, 2.0),
                Effect("vibration_mm_s", 0.6, 2.0),
            ), (("motor_current_a", 0.0),), warning_scale=0.6, sudden_share=0.5),
        ),
        profile="two_shift",
        interval_s=10,
    )


def _elevator_drive() -> ModelSpec:
    model = DeviceModel(
        code="elevator_drive",
        name="Gearless elevator traction drive 1000 kg",
        metrics=(
            Metric(0, "motor_current_a", "A", 0.0, 80.0),
            Metric(1, "motor_temp_c", "degC", 5.0, 120.0),
            Metric(2, "vibration_mm_s", "mm/s", 0.0, 20.0),
            Metric(3, "door_cycle_time_s", "s", 2.0, 15.0),
            Metric(4, "leveling_error_mm", "mm", 0.0, 50.0),
            Metric(5, "trips_per_h", "1/h", 0.0, 150.0),
            Metric(6, "cabinet_temp_c", "degC", 5.0, 70.0),
        ),
        failure_modes=(
            _fm("door_operator_wear", "Door operator wear", "elevator", 2,
                ("DOOR-ROLLER", 4), ("DOOR-BELT", 1)),
            _fm("bearing_wear", "Traction machine bearing wear", "elevator", 6, ("BRG-EL-6208", 1)),
            _fm("encoder_fault", "Motor encoder degradation", "electrical", 2, ("ENC-1024", 1)),
            _fm("igbt_failure", "Drive IGBT failure", "electrical", 3, ("IGBT-MOD-75", 1)),
        ),
    )
    fm = {f.code: f for f in model.failure_modes}
    return ModelSpec(
        model=model,
        serial_prefix="EL",
        physics=(
            MetricPhysics(3.0, 28.0, 0.0, 1.2),
            MetricPhysics(24.0, 30.0, 0.5, 0.6),
            MetricPhysics(0.4, 1.0, 0.0, 0.1),
            MetricPhysics(4.2, 0.3, 0.0, 0.12),
            MetricPhysics(2.0, 0.5, 0.0, 0.4),
            MetricPhysics(1.0, 110.0, 0.0, 3.0),
            MetricPhysics(27.0, 8.0, 0.35, 0.4),
        ),
        modes=(
            ModeSpec(fm["door_operator_wear"], "EL-E61", 240, 30, 30.0, (
                Effect("door_cycle_time_s", 4.5, 1.3),
                Effect("motor_current_a", 1.5, 2.0, load_scaled=True),
            ), (("door_cycle_time_s", 14.0), ("trips_per_h", 0.0)), pm_resets=True, warning_scale=1.1),
            ModeSpec(fm["bearing_wear"], "EL-E33", 800, 30, 25.0, (
                Effect("vibration_mm_s", 4.0, 1.7),
                Effect("motor_temp_c", 10.0, 2.0),
            ), (("vibration_mm_s", 9.0), ("trips_per_h", 0.0)), warning_scale=1.0),
            ModeSpec(fm["encoder_fault"], "EL-E72", 700, 10, 12.0, (
                Effect("leveling_error_mm", 18.0, 2.0),
                Effect("vibration_mm_s", 0.4, 2.0),
            ), (("leveling_error_mm", 45.0), ("trips_per_h", 0.0)), warning_scale=0.8, sudden_share=0.15),
            ModeSpec(fm["igbt_failure"], "EL-E90", 1200, 2, 10.0, (
                Effect("cabinet_temp_c", 4.0, 2.0),
            ), (("motor_current_a", 0.0), ("trips_per_h", 0.0)), warning_scale=0.6, sudden_share=0.5),
        ),
        profile="building_traffic",
        interval_s=10,
    )


MODEL_SPECS: dict[str, ModelSpec] = {spec.code: spec for spec in (_chiller(), _air_compressor(), _elevator_drive())}
MODELS: tuple[DeviceModel, ...] = tuple(spec.model for spec in MODEL_SPECS.values())
SKILLS: tuple[str, ...] = tuple(sorted({f.skill for m in MODELS for f in m.failure_modes}))
