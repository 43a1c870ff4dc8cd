"""Derived quantities: debt in milli-units, throughput estimates, charges (spec AR-2 to AR-8).

Each function is a small, total, pure function of the configuration and state; the operations
in `flowpace_reference.transitions` are built from them.
"""

from __future__ import annotations

from typing import Final

from flowpace_reference.types import Config, ControllerState, TaskState
from flowpace_reference.u64 import U64_MAX, clamp_u64, saturating_mul  # noqa: F401  # U64_MAX is read by the contracts

MILLI: Final = 1_000
"""Milli-units per flush unit: debt is compared in thousandths of a flush unit."""

EWMA_ALPHA_NUM: Final = 20
EWMA_ALPHA_DEN: Final = 100
"""A new sample weighs 20/100 in the moving average."""

FLOOR_SAMPLE_DIVISOR: Final = 8
"""A sample raises the adaptive floor to an eighth of itself."""


def debt_milli_units(config: Config, debt_bytes: int) -> int:
    """
    Return ``debt_bytes`` in thousandths of a flush unit, at least 1 for any debt (spec AR-2).

    pre: config.bp_flush_unit_bytes >= 1
    pre: 0 <= debt_bytes <= U64_MAX
    post: (__return__ == 0) == (debt_bytes == 0)
    post: 0 <= __return__ <= U64_MAX
    """
    if debt_bytes == 0:
        return 0
    return clamp_u64(max(debt_bytes * MILLI // config.bp_flush_unit_bytes, 1))


def threshold_milli_units(units: int) -> int:
    """
    Return a threshold of ``units`` flush units in milli-units (spec AR-3).

    pre: 0 <= units <= U64_MAX
    post: (__return__ == units * 1000) | (units * 1000 > U64_MAX)
    post: (__return__ == U64_MAX) | (units * 1000 <= U64_MAX)
    """
    # crosshair: on specs_complete=True
    return saturating_mul(units, MILLI)


def cold_start_ready(config: Config, state: ControllerState) -> bool:
    """
    Return whether enough I/O samples arrived to leave cold start (spec AR-4).

    post: __return__ == (state.io_sample_count >= config.bp_warmup_min_samples)
    """
    # crosshair: on specs_complete=True
    return state.io_sample_count >= config.bp_warmup_min_samples


def disk_bps(config: Config, state: ControllerState) -> int:
    """
    Return the measured disk throughput, or 0 during cold start (spec AR-4).

    pre: 0 <= state.io_bps_ewma <= U64_MAX
    post: (__return__ == 0) == (state.io_sample_count < config.bp_warmup_min_samples)
    post: (__return__ == 0) | (__return__ == state.io_bps_ewma) | (__return__ == 1)
    post: (__return__ == 0) | (__return__ >= state.io_bps_ewma)
    """
    # crosshair: on specs_complete=True
    if not cold_start_ready(config, state):
        return 0
    return max(state.io_bps_ewma, 1)


def publish_guard_ratio_pct(config: Config, state: ControllerState) -> int:
    """
    Return the share of throughput to keep when end-to-end lags the disk (spec AR-5).

    A slower end-to-end rate than I/O rate means flushes queue behind publishing; steady-state
    foreground writes are then paced at that ratio, but never below the configured minimum.

    pre: 1 <= config.bp_publish_guard_min_ratio_pct <= 100
    pre: 0 <= state.io_bps_ewma <= U64_MAX and 0 <= state.e2e_bps_ewma <= U64_MAX
    post: (config.bp_publish_guard_min_ratio_pct <= __return__) & (__return__ <= 100)
    """
    # crosshair: on specs_complete=True
    # (Its callers need only these bounds: the ratio divides by a symbolic rate.)
    io = state.io_bps_ewma
    e2e = state.e2e_bps_ewma
    if io == 0 or e2e == 0 or e2e >= io:
        return 100
    return max(min(e2e * 100 // io, 100), config.bp_publish_guard_min_ratio_pct)


def ewma_update(old: int, sample: int) -> int:
    """
    Return the moving average after ``sample``; a zero sample changes nothing (spec AR-6).

    pre: 0 <= old <= U64_MAX
    pre: 0 <= sample <= U64_MAX
    post: sample != 0 or __return__ == old
    post: sample == 0 or old != 0 or __return__ == sample
    post: sample == 0 or old == 0 or min(old, sample) <= __return__ <= max(old, sample)
    """
    if sample == 0:
        return old
    if old == 0:
        return sample
    keep = EWMA_ALPHA_DEN - EWMA_ALPHA_NUM
    return clamp_u64((old * keep + sample * EWMA_ALPHA_NUM) // EWMA_ALPHA_DEN)


def raised_floor(config: Config, adaptive_floor_bps: int, sample: int) -> int:
    """
    Return the adaptive floor after a throughput ``sample`` (spec AR-7).

    pre: 0 <= adaptive_floor_bps <= U64_MAX
    pre: 0 <= sample <= U64_MAX
    post: __return__ >= adaptive_floor_bps
    post: __return__ >= config.bp_floor_bps
    """
    candidate = max(sample // FLOOR_SAMPLE_DIVISOR, config.bp_floor_bps)
    return max(adaptive_floor_bps, candidate)


def effective_floor_bps(config: Config, state: ControllerState) -> int:
    """
    Return the cold-start throughput: the larger of the floor and the adaptive floor (AR-7).

    post: __return__ >= config.bp_floor_bps
    post: __return__ >= state.adaptive_floor_bps
    post: (__return__ == config.bp_floor_bps) | (__return__ == state.adaptive_floor_bps)
    """
    # crosshair: on specs_complete=True
    return max(config.bp_floor_bps, state.adaptive_floor_bps)


def outstanding_charge(task: TaskState) -> int:
    """
    Return the debt ``task`` holds: its actual bytes once I/O was reported, else its estimate.

    Spec AR-8 and DIV-1. The seed keyed this on ``actual_bytes != 0``, which mistakes
    "0 bytes written" for "not written yet".

    post: __return__ == (task.actual_bytes if task.io_reported else task.est_bytes)
    """
    return task.actual_bytes if task.io_reported else task.est_bytes
