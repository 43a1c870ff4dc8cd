"""The predicates the model's contracts are written in (spec CFG-4, ST-1, ST-2).

The model's docstrings carry PEP 316 contracts (``pre:``, ``post:``, ``raises:``) that
CrossHair checks symbolically. A precondition names the domain an operation is specified on:
a normalised configuration (CFG-4), a state and a task whose counters are ``u64`` values
(ST-1, ST-2). Operations then state, as postconditions, that they keep the state in that
domain. These predicates say what the domains are, once; nothing in the model calls them.

The domain predicates join their comparisons with ``&``, not ``and``: on CrossHair's symbolic
values, ``and`` branches at every comparison, and a path must then take the right branch some
thirty times to get past a precondition, while ``&`` builds one formula the solver decides at
once.
"""

from __future__ import annotations

import dataclasses
from typing import Final, TypeVar

from flowpace_reference.measures import cold_start_ready, debt_milli_units, threshold_milli_units
from flowpace_reference.types import Config, ControllerState, ForegroundRegime, Options, TaskState
from flowpace_reference.u64 import NANOS_PER_MILLI, U32_MAX, U64_MAX

Value = TypeVar("Value", ControllerState, TaskState)

ZERO_DELAY_REGIMES: Final = frozenset(
    {
        ForegroundRegime.DISABLED,
        ForegroundRegime.EMPTY_WRITE,
        ForegroundRegime.NO_DEBT,
        ForegroundRegime.COLD_BELOW_FAIL_SAFE,
        ForegroundRegime.STEADY_BELOW_SOFT,
        ForegroundRegime.NO_THROUGHPUT,
    }
)
"""The regimes whose delay is 0 in the table of FC-6."""


def is_u64(value: int) -> bool:
    """Return whether ``value`` fits a ``u64``."""
    return (value >= 0) & (value <= U64_MAX)


def is_time(value: int | None) -> bool:
    """Return whether ``value`` is a time in nanoseconds (non-negative, unbounded) or None."""
    return value is None or value >= 0


def satisfies_guarantees(config: Config) -> bool:
    """Return whether ``config`` has every property a normalised configuration has (CFG-4)."""
    return (
        (config.bp_soft_debt_units >= 1)
        & (config.bp_hard_debt_units > config.bp_soft_debt_units)
        & (config.bp_stop_debt_units > config.bp_hard_debt_units)
        & (config.bp_stop_debt_units <= U32_MAX)
        & (config.bp_cold_start_fail_safe_units >= config.bp_soft_debt_units)
        & (config.bp_cold_start_fail_safe_units <= U32_MAX)
        & (config.bp_pacing_soft_debt_units >= 1)
        & (config.bp_pacing_soft_debt_units <= config.bp_soft_debt_units)
        & (config.bp_min_ratio_pct >= 1)
        & (config.bp_min_ratio_pct <= 100)
        & (config.bp_publish_guard_min_ratio_pct >= 1)
        & (config.bp_publish_guard_min_ratio_pct <= 100)
        & (config.bp_warmup_min_samples >= 1)
        & (config.bp_warmup_min_samples <= U32_MAX)
        & (config.bp_flush_unit_bytes >= 1)
        & (config.bp_flush_unit_bytes <= U64_MAX)
        & (config.bp_floor_bps >= 1)
        & (config.bp_floor_bps <= U64_MAX)
        & (config.bp_idle_reset_ms >= 1)
        & (config.bp_idle_reset_ms <= U64_MAX)
        & (config.bp_max_delay_us >= 1)
        & (config.bp_max_delay_us <= U64_MAX)
    )


def options_in_range(options: Options) -> bool:
    """
    Return whether `check_options` accepts the numbers of ``options`` (CFG-3, DIV-5).

    Each ``u32`` and ``u64`` option (the extended law's too, EXT-1) is within its width, and soft
    and hard normalise below ``u32::MAX`` (soft at most ``u32::MAX - 2``, so that the hard it
    forces is below too).
    """
    return (
        is_u32(options.bp_soft_debt_units)
        & is_u32(options.bp_hard_debt_units)
        & is_u32(options.bp_stop_debt_units)
        & is_u32(options.bp_cold_start_fail_safe_units)
        & is_u32(options.bp_pacing_soft_debt_units)
        & is_u32(options.bp_min_ratio_pct)
        & is_u32(options.bp_warmup_min_samples)
        & is_u32(options.bp_publish_guard_min_ratio_pct)
        & is_u64(options.bp_flush_unit_bytes)
        & is_u64(options.bp_floor_bps)
        & is_u64(options.bp_idle_reset_ms)
        & is_u64(options.bp_max_delay_us)
        & is_u32(options.ext_setpoint_units)  # spec EXT-1: the extended law's numbers
        & is_u64(options.ext_stop_wait_limit_ns)
        & (options.bp_soft_debt_units <= U32_MAX - 2)
        & (options.bp_hard_debt_units < U32_MAX)
    )


def is_u32(value: int) -> bool:
    """Return whether ``value`` fits a ``u32``."""
    return (value >= 0) & (value <= U32_MAX)


def state_in_domain(config: Config, state: ControllerState) -> bool:
    """
    Return whether ``state`` is a controller state under ``config`` (ST-1, INV-7, INV-9).

    Every counter is a ``u64``, every time is non-negative, and the adaptive floor is at
    least the configured floor.
    """
    return (
        is_u64(state.debt_bytes)
        & is_u64(state.io_bps_ewma)
        & is_u64(state.e2e_bps_ewma)
        & is_u64(state.io_sample_count)
        & (state.adaptive_floor_bps >= config.bp_floor_bps)
        & (state.adaptive_floor_bps <= U64_MAX)
        & is_u64(state.teardown_bypass_scopes)
        & is_u64(state.arena_starving_scopes)
        & is_time(state.idle_since)
        & is_time(state.next_flush_at)
    )


def task_in_domain(task: TaskState) -> bool:
    """Return whether ``task``'s sizes and duration are ``u64`` values and its time valid (ST-2)."""
    return (
        (task.enqueue_at >= 0)
        & is_u64(task.est_bytes)
        & is_u64(task.actual_bytes)
        & is_u64(task.io_micros)
    )


def same_except(new: Value, old: Value, field: str) -> bool:
    """Return whether ``new`` and ``old`` are equal in every field but ``field``."""
    return dataclasses.replace(new, **{field: getattr(old, field)}) == old


def is_ewma_step(old: int, sample: int, new: int) -> bool:
    """Return whether a moving average may go from ``old`` to ``new`` on ``sample`` (INV-8)."""
    if sample == 0:
        return new == old
    if old == 0:
        return new == sample
    return min(old, sample) <= new <= max(old, sample)


def idle_at_least(state: ControllerState, now_ns: int, millis: int) -> bool:
    """Return whether at ``now_ns`` the controller has been idle for ``millis`` ms or more."""
    return state.idle_since is not None and (now_ns - state.idle_since) // NANOS_PER_MILLI >= millis


def may_delay(config: Config, state: ControllerState, write_bytes: int) -> bool:
    """Return whether INV-3 allows a foreground write a delay, at the state's debt (AR-2)."""
    debt_mu = debt_milli_units(config, state.debt_bytes)
    return may_delay_at(config, cold_start_ready(config, state), write_bytes, debt_mu)


def may_delay_at(config: Config, ready: bool, write_bytes: int, debt_mu: int) -> bool:
    """
    Return whether INV-3 allows a foreground write a delay when the debt is ``debt_mu``.

    ``ready`` is whether the controller left cold start (AR-4).

    Backpressure is on, the write is not empty and the debt reaches its regime's threshold:
    the fail-safe in cold start, above soft in steady state. A debt is zero exactly when its
    milli-units are (AR-2).
    """
    if not config.enable_backpressure or write_bytes == 0 or debt_mu == 0:
        return False
    if ready:
        return debt_mu > threshold_milli_units(config.bp_soft_debt_units)
    return debt_mu >= threshold_milli_units(config.bp_cold_start_fail_safe_units)


def at_stop(config: Config, state: ControllerState, write_bytes: int) -> bool:
    """Return whether INV-4 fixes a write's delay at the maximum: it may delay, debt >= stop."""
    debt_mu = debt_milli_units(config, state.debt_bytes)
    return at_stop_at(config, cold_start_ready(config, state), write_bytes, debt_mu)


def at_stop_at(config: Config, ready: bool, write_bytes: int, debt_mu: int) -> bool:
    """Return whether INV-4 fixes the delay at the maximum when the debt is ``debt_mu``."""
    return may_delay_at(config, ready, write_bytes, debt_mu) and debt_mu >= threshold_milli_units(
        config.bp_stop_debt_units
    )


def throttles_at(config: Config, ready: bool, write_bytes: int, debt_mu: int) -> bool:
    """Return whether FC-7 decides the delay: INV-3 allows one and INV-4 does not fix it."""
    return may_delay_at(config, ready, write_bytes, debt_mu) and not at_stop_at(
        config, ready, write_bytes, debt_mu
    )


def is_paced(config: Config, state: ControllerState, task: TaskState) -> bool:
    """
    Return whether FC-9 paces a flush of ``task``.

    Pacing is on, nothing bypasses it, the controller is in steady state and the debt is
    neither zero nor above the pacing threshold.
    """
    bypass = task.force_bypass or state.teardown_bypass_scopes or state.arena_starving_scopes
    debt_mu = debt_milli_units(config, state.debt_bytes)
    pacing_mu = threshold_milli_units(config.bp_pacing_soft_debt_units)
    return (
        config.enable_flush_pacing
        and not bypass
        and cold_start_ready(config, state)
        and 0 < debt_mu <= pacing_mu
    )
