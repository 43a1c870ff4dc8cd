"""The controller's decisions: pure functions of integers, written from the seed's ``flow.rs``.

Every function here is pure and total on its documented domain; the controller calls them with
values it read under its state lock. Rust's ``u128`` intermediates are Python ints; every
result the seed clamps with ``.min(u64::MAX)`` or ``saturating_*`` is clamped here (spec AR-1).
The task lifecycle's own arithmetic (samples, moving averages, the adaptive floor) is inlined
in `flowpace.controller`, on its hot path.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Final

from flowpace_reference.types import Config, FlushDecision, ForegroundRegime
from flowpace_reference.u64 import U64_MAX

MILLI_PER_UNIT: Final = 1_000
"""Milli-units in one flush unit (spec AR-2)."""

MICROS_PER_SECOND: Final = 1_000_000
NANOS_PER_MICRO: Final = 1_000
NANOS_PER_MILLI: Final = 1_000_000

PERCENT: Final = 100


@dataclass(frozen=True, slots=True)
class Tuning:
    """The normalised configuration in the units the arithmetic uses; fixed for a controller."""

    backpressure: bool
    """Whether foreground writes may be delayed."""
    pacing: bool
    """Whether flushes may be paced."""
    unit_bytes: int
    """Bytes in one flush unit, at least 1."""
    soft_mu: int
    """The soft threshold in milli-units (spec AR-3)."""
    hard_mu: int
    """The hard threshold in milli-units."""
    stop_mu: int
    """The stop threshold in milli-units."""
    cold_mu: int
    """The cold-start fail-safe threshold in milli-units."""
    pacing_mu: int
    """The pacing threshold in milli-units."""
    min_ratio_pct: int
    """Lowest share of the base throughput a delayed write is paced at."""
    guard_min_pct: int
    """Lowest share the publish guard applies."""
    floor_bps: int
    """The configured cold-start throughput."""
    warmup: int
    """I/O samples needed to leave cold start."""
    idle_reset_ns: int
    """Idle time after which throughput history is forgotten, nanoseconds."""
    max_delay_us: int
    """Longest foreground delay or pacing sleep, microseconds."""
    max_sleep_ns: int
    """`max_delay_us` in nanoseconds."""
    cold_quiet_debt: int
    """The largest debt at which no cold-start write is delayed (U64_MAX if none ever is)."""
    warm_quiet_debt: int
    """The largest debt at which no steady-state write is delayed (U64_MAX if none ever is)."""


def tuning_of(config: Config) -> Tuning:
    """Return the arithmetic's view of a normalised configuration."""
    unit = max(config.bp_flush_unit_bytes, 1)  # the seed's `bp_flush_unit_bytes.max(1)`
    soft_mu = threshold_mu(config.bp_soft_debt_units)
    cold_mu = threshold_mu(config.bp_cold_start_fail_safe_units)
    enabled = config.enable_backpressure
    return Tuning(
        backpressure=enabled,
        pacing=config.enable_flush_pacing,
        unit_bytes=unit,
        soft_mu=soft_mu,
        hard_mu=threshold_mu(config.bp_hard_debt_units),
        stop_mu=threshold_mu(config.bp_stop_debt_units),
        cold_mu=cold_mu,
        pacing_mu=threshold_mu(config.bp_pacing_soft_debt_units),
        min_ratio_pct=config.bp_min_ratio_pct,
        guard_min_pct=config.bp_publish_guard_min_ratio_pct,
        floor_bps=config.bp_floor_bps,
        warmup=config.bp_warmup_min_samples,
        idle_reset_ns=config.bp_idle_reset_ms * NANOS_PER_MILLI,
        max_delay_us=config.bp_max_delay_us,
        max_sleep_ns=config.bp_max_delay_us * NANOS_PER_MICRO,
        # spec FC-6: cold start delays from the fail-safe on; steady state only above soft.
        cold_quiet_debt=quiet_debt_limit(cold_mu, unit) if enabled else U64_MAX,
        warm_quiet_debt=quiet_debt_limit(soft_mu + 1, unit) if enabled else U64_MAX,
    )


def threshold_mu(units: int) -> int:
    """Return a threshold of ``units`` flush units in milli-units, saturated (spec AR-3)."""
    return min(units * MILLI_PER_UNIT, U64_MAX)


def milli_units(debt_bytes: int, unit_bytes: int) -> int:
    """Return a debt in milli-units: 0 for none, else at least 1, clamped (spec AR-2)."""
    if debt_bytes == 0:
        return 0
    return min(max(debt_bytes * MILLI_PER_UNIT // unit_bytes, 1), U64_MAX)


def quiet_debt_limit(first_delayed_mu: int, unit_bytes: int) -> int:
    """
    Return the largest debt in bytes whose milli-units are below ``first_delayed_mu``.

    For a debt ``d >= 1`` and ``first_delayed_mu >= 2``, ``milli_units(d) < first_delayed_mu``
    iff ``d * 1000 // unit < first_delayed_mu`` iff ``d * 1000 < first_delayed_mu * unit``.
    The foreground fast path compares the debt with this limit instead of converting it.
    """
    return min((first_delayed_mu * unit_bytes - 1) // MILLI_PER_UNIT, U64_MAX)


def rate_bps(amount: int, micros: int) -> int:
    """Return ``amount`` per second over ``micros`` (>= 1) microseconds, clamped (spec AR-4)."""
    return min(amount * MICROS_PER_SECOND // micros, U64_MAX)


def publish_guard_pct(io_bps: int, e2e_bps: int, guard_min_pct: int) -> int:
    """Return the share of the target kept when end-to-end lags I/O throughput (spec AR-5)."""
    if io_bps == 0 or e2e_bps == 0 or e2e_bps >= io_bps:
        return PERCENT
    return max(min(e2e_bps * PERCENT // io_bps, PERCENT), guard_min_pct)


def foreground_delay_us(  # noqa: PLR0913 - state fields one by one: callers allocate nothing
    tuning: Tuning,
    write_bytes: int,
    *,
    debt: int,
    samples: int,
    io_bps: int,
    e2e_bps: int,
    adaptive_floor: int,
) -> int:
    """Return how long a foreground write of ``write_bytes`` waits, microseconds (FC-6..8)."""
    if not tuning.backpressure or write_bytes == 0 or debt == 0:
        return 0  # spec FC-6
    debt_mu = milli_units(debt, tuning.unit_bytes)
    cold = samples < tuning.warmup
    if cold:
        if debt_mu < tuning.cold_mu:
            return 0  # spec FC-6: cold start collects samples below the fail-safe
        base_mu, base_bps = tuning.cold_mu, max(tuning.floor_bps, adaptive_floor)
    else:
        if debt_mu <= tuning.soft_mu:
            return 0  # spec FC-6: steady state at or below soft
        base_mu, base_bps = tuning.soft_mu, max(io_bps, 1)
    # The seed returns early when base_bps is 0; both bases are at least 1 here (floor >= 1 by
    # CFG-4, disk rate >= 1 by AR-4), so that return cannot fire in a consistent state.
    if debt_mu >= tuning.stop_mu:
        return tuning.max_delay_us  # spec FC-8
    # spec FC-7: pace the write at a share of the base throughput that shrinks as debt grows.
    ratio = min(max(min(base_mu * PERCENT // debt_mu, PERCENT), tuning.min_ratio_pct), PERCENT)
    target = max(min(base_bps * ratio, U64_MAX) // PERCENT, 1)
    if not cold:
        guard = publish_guard_pct(io_bps, e2e_bps, tuning.guard_min_pct)
        target = max(min(target * guard, U64_MAX) // PERCENT, 1)
    delay = rate_bps(write_bytes, target)
    if debt_mu >= tuning.hard_mu:
        delay = min(delay * 2, U64_MAX)
    return min(delay, tuning.max_delay_us)


def foreground_regime(tuning: Tuning, debt: int, samples: int) -> ForegroundRegime:
    """Return the regime a write of one byte is in at ``debt`` and ``samples`` (FC-6, HARD-8)."""
    if not tuning.backpressure:
        return ForegroundRegime.DISABLED
    if debt == 0:
        return ForegroundRegime.NO_DEBT
    debt_mu = milli_units(debt, tuning.unit_bytes)
    cold = samples < tuning.warmup
    if cold and debt_mu < tuning.cold_mu:
        return ForegroundRegime.COLD_BELOW_FAIL_SAFE
    if not cold and debt_mu <= tuning.soft_mu:
        return ForegroundRegime.STEADY_BELOW_SOFT
    if debt_mu >= tuning.stop_mu:
        return ForegroundRegime.STOP
    if cold:
        return ForegroundRegime.COLD_THROTTLED
    return ForegroundRegime.HARD_ZONE if debt_mu >= tuning.hard_mu else ForegroundRegime.SOFT_ZONE


def flush_decision(  # noqa: PLR0913 - called under the state lock, which allocates nothing
    tuning: Tuning,
    est_bytes: int,
    *,
    force_bypass: bool,
    teardown_scopes: int,
    starving_scopes: int,
    debt: int,
    samples: int,
    io_bps: int,
) -> tuple[FlushDecision, int]:
    """Return whether a flush is paced, or why not, and its pacing interval in us (FC-9, FC-10)."""
    # spec FC-9: the seed's checks, in the seed's order.
    if not tuning.pacing:
        return FlushDecision.PACING_DISABLED, 0
    if force_bypass or teardown_scopes != 0:
        return FlushDecision.BYPASS_TEARDOWN, 0
    if starving_scopes != 0:
        return FlushDecision.BYPASS_ARENA_STARVATION, 0
    if debt == 0:
        return FlushDecision.NO_DEBT, 0
    if samples < tuning.warmup:
        return FlushDecision.COLD_START, 0
    if milli_units(debt, tuning.unit_bytes) > tuning.pacing_mu:
        return FlushDecision.BYPASS_HIGH_DEBT, 0
    disk_bps = max(io_bps, 1)  # spec AR-4: warm, so the disk rate is at least 1
    # spec FC-10: the interval is the estimate's time at the disk rate, within [1, max delay].
    interval_us = max(min(rate_bps(max(est_bytes, 1), disk_bps), tuning.max_delay_us), 1)
    return FlushDecision.PACED, interval_us


def pacing_sleep_ns(deadline_ns: int | None, now_ns: int, max_sleep_ns: int) -> int:
    """Return how long a paced flush waits for the deadline, capped at the max (spec FC-10)."""
    if deadline_ns is None or deadline_ns <= now_ns:
        return 0
    return min(deadline_ns - now_ns, max_sleep_ns)


def next_deadline(deadline_ns: int | None, now_ns: int, interval_us: int) -> int:
    """Return the deadline after a paced flush commits at ``now_ns`` (spec FC-10, DIV-6)."""
    base = now_ns if deadline_ns is None else max(deadline_ns, now_ns)
    return base + interval_us * NANOS_PER_MICRO


# --- checked values (spec HARD-2) -------------------------------------------------------------

SHOWN_BITS: Final = 256
"""Integers wider than this are shown by their width, not their digits, in error messages."""


def shown(value: object) -> str:
    """
    Return ``value`` as an error message shows it; never raise (spec HARD-2).

    An exact int is shown in decimal unless it is wider than `SHOWN_BITS` (its decimal form
    may exceed the interpreter's limit on digits, and would flood the message): then by its
    width. Anything else by its ``repr``, or by its type's name if that ``repr`` raises.
    """
    if type(value) is int:
        if value.bit_length() <= SHOWN_BITS:
            return str(value)
        sign = "-" if value < 0 else ""
        return f"{sign}<an int of {value.bit_length()} bits>"
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a message must be made whatever the value's repr does
        return f"<{type(value).__name__} object with a failing repr>"


def exact_int(value: object, name: str) -> int:
    """
    Return ``value`` as an exact `int`, converted once; TypeError naming ``name`` if not one.

    Spec HARD-2, ERR-3, CFG-3: ``value`` must be an `int` and not a `bool`. An `int`
    subclass is converted by `operator.index`, which for an `int` returns a plain `int` of its
    stored value without calling any method the subclass overrides, so the value range-checked
    and used afterwards is that one value, whatever the subclass's comparisons or ``__int__``
    say.
    """
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {shown(value)}")
    try:
        return operator.index(value)  # always a plain int (Python >= 3.10)
    except Exception as error:  # a value claiming to be an int that is not one
        raise TypeError(f"{name} must be an int, got {shown(value)}") from error
