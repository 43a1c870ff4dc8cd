"""The implementation's decisions behind the flat signatures of the model's twins (CrossHair).

``crosshair diffbehavior flowpace_reference.symbolic.NAME crosshair_impl_adapters.NAME``
compares each function here with the model's function of the same name and signature
(spec FC-2, FC-6 to FC-10, AR-6, CFG-2). The inputs are the same values: a configuration from
`flowpace_reference.symbolic.CONFIGS` and the state's fields; only the code that decides
differs. Out-of-domain arguments give None on both sides, by the model's own domain test.
"""

from __future__ import annotations

from typing import Any, cast

from flowpace import _rules
from flowpace.controller import FlowController
from flowpace.options import FlowOptions
from flowpace.testing import ManualClock
from flowpace_reference.config import config_as_dict
from flowpace_reference.contracts import is_u64
from flowpace_reference.symbolic import CONFIGS, in_state_domain
from flowpace_reference.transitions import ELAPSED_NS_LIMIT
from flowpace_reference.types import Config, FlushDecision
from flowpace_reference.u64 import NANOS_PER_MICRO, U64_MAX


def foreground_delay_at(  # noqa: PLR0917  # the twin's signature: one argument per symbolic input
    which: int,
    debt_bytes: int,
    io_bps: int,
    e2e_bps: int,
    samples: int,
    floor_raise: int,
    write_bytes: int,
) -> int | None:
    """Return the implementation's foreground delay under ``CONFIGS[which]`` (FC-6 to FC-8)."""
    if not 0 <= which < len(CONFIGS) or not in_state_domain(debt_bytes, io_bps, e2e_bps, samples):
        return None
    if not is_u64(floor_raise) or not is_u64(write_bytes):
        return None
    config = CONFIGS[which]
    return _rules.foreground_delay_us(
        _rules.tuning_of(config),
        write_bytes,
        debt=debt_bytes,
        samples=samples,
        io_bps=io_bps,
        e2e_bps=e2e_bps,
        adaptive_floor=min(config.bp_floor_bps + floor_raise, U64_MAX),
    )


def flush_plan_at(  # noqa: PLR0917  # the twin's signature: one argument per symbolic input
    which: int,
    debt_bytes: int,
    io_bps: int,
    samples: int,
    est_bytes: int,
    bypass: bool,
    teardown_scopes: int,
    starving_scopes: int,
) -> tuple[FlushDecision, int] | None:
    """Return the implementation's flush decision and pacing interval (FC-9, FC-10)."""
    if not 0 <= which < len(CONFIGS) or not in_state_domain(debt_bytes, io_bps, 0, samples):
        return None
    if not is_u64(est_bytes) or not is_u64(teardown_scopes) or not is_u64(starving_scopes):
        return None
    return _rules.flush_decision(
        _rules.tuning_of(CONFIGS[which]),
        est_bytes,
        force_bypass=bypass,
        teardown_scopes=teardown_scopes,
        starving_scopes=starving_scopes,
        debt=debt_bytes,
        samples=samples,
        io_bps=io_bps,
    )


def paced_flush_at(
    which: int, interval_us: int, deadline: int, now_ns: int, slept_ns: int
) -> tuple[int, int] | None:
    """Return the implementation's pacing sleep and the deadline it commits (FC-10)."""
    if not 0 <= which < len(CONFIGS) or not 1 <= interval_us <= CONFIGS[which].bp_max_delay_us:
        return None
    if deadline < -1 or now_ns < 0 or slept_ns < 0:
        return None
    current = None if deadline < 0 else deadline
    max_sleep_ns = CONFIGS[which].bp_max_delay_us * NANOS_PER_MICRO
    sleep_ns = _rules.pacing_sleep_ns(current, now_ns, max_sleep_ns)
    return sleep_ns, _rules.next_deadline(current, now_ns + sleep_ns + slept_ns, interval_us)


def io_sample_at(  # noqa: PLR0917  # the twin's signature: one argument per symbolic input
    which: int, io_bps: int, samples: int, floor_raise: int, nbytes: int, elapsed_ns: int
) -> tuple[int, int, int] | None:
    """Return the controller's I/O average, sample count and floor after an I/O report (FC-2)."""
    if not 0 <= which < len(CONFIGS) or not in_state_domain(nbytes, io_bps, 0, samples):
        return None
    if not is_u64(floor_raise) or not 0 <= elapsed_ns < ELAPSED_NS_LIMIT:
        return None
    config = CONFIGS[which]
    controller = FlowController(
        FlowOptions(**cast("dict[str, Any]", config_as_dict(config))), clock=ManualClock()
    )
    task = controller.on_enqueue_est(nbytes)
    # The moving average is updated inline on the controller's hot path: the state it starts
    # from is set field by field, as a snapshot would show it.
    controller._io_bps = io_bps
    controller._samples = samples
    # The controller holds the floor as floor * 8 + 7 (AR-7; FlowController.__init__).
    controller._floor_bound = min(config.bp_floor_bps + floor_raise, U64_MAX) * 8 + 7
    controller.on_io_built(task, nbytes, elapsed_ns)
    after = controller.snapshot()
    return after.io_bps_ewma, after.io_sample_count, after.adaptive_floor_bps


def normalised_options(  # noqa: PLR0917  # the twin's signature: one argument per symbolic input
    enable_backpressure: bool,
    enable_flush_pacing: bool,
    soft: int,
    hard: int,
    stop: int,
    cold: int,
    pacing: int,
    flush_unit: int,
    min_ratio: int,
    floor: int,
    warmup: int,
    guard: int,
    idle_reset_ms: int,
    max_delay_us: int,
) -> Config:
    """Return the implementation's normalised configuration, or raise as CFG-3 says (CFG-2)."""
    return FlowOptions(
        enable_backpressure=enable_backpressure,
        enable_flush_pacing=enable_flush_pacing,
        bp_soft_debt_units=soft,
        bp_hard_debt_units=hard,
        bp_stop_debt_units=stop,
        bp_cold_start_fail_safe_units=cold,
        bp_pacing_soft_debt_units=pacing,
        bp_flush_unit_bytes=flush_unit,
        bp_min_ratio_pct=min_ratio,
        bp_floor_bps=floor,
        bp_warmup_min_samples=warmup,
        bp_publish_guard_min_ratio_pct=guard,
        bp_idle_reset_ms=idle_reset_ms,
        bp_max_delay_us=max_delay_us,
    ).normalised()
