"""Testing strategies for Hypothesis-based tests.

One home for every strategy the suite draws from: the model's tests, the implementation's tests
and the verification campaign all import from here. Values are biased towards the edges the
seed's arithmetic cares about (0, 1, ``U32_MAX``, ``U64_MAX``, multiples of the flush unit) and
thresholds are kept small, so that every regime (cold start, soft, hard, stop, pacing, bypasses,
idle reset) is reached in a few steps.

Names:

- `raw_options`: valid `Options` as a user writes them, zeros that normalise included (CFG-1).
- `configs`: normalised `Config` values (CFG-2, CFG-4).
- `states`: `ControllerState` values consistent with a configuration (ST-1).
- `far_states`: `ControllerState` values far from a new controller's, whatever the
  configuration: counters at or next to their ``u64`` limits, deadlines set, rare combinations
  (idle with debt), for runs that start there (ST-1, DIV-3, DIV-4).
- `tasks`: live `TaskState` values (ST-2).
- `byte_counts`, `threshold_debts`, `rates`, `sample_counts`, `elapsed_durations`, `times`,
  `outcomes`: the arguments of the operations.
- `sub_micros`: nanosecond remainders below a microsecond, for durations whose truncation to
  whole microseconds matters (AR-1, FC-2, FC-5, FC-10, FC-12).
"""

from __future__ import annotations

import functools
from typing import TypeVar

from hypothesis import strategies as st

from flowpace_reference.config import normalise
from flowpace_reference.transitions import ELAPSED_NS_LIMIT
from flowpace_reference.types import Config, ControllerState, Options, Outcome, TaskState
from flowpace_reference.u64 import NANOS_PER_MICRO, NANOS_PER_MILLI, U32_MAX, U64_MAX

T = TypeVar("T")

DEFAULT_NOW_NS = 3_600 * 10**9
"""The time states and tasks are drawn against unless a test names one: one hour in."""


# --- integers biased to the seed's edges -----------------------------------------------------
#
# Strategy factories are cached: composites call them on every draw, and building (and having
# Hypothesis validate) a fresh strategy each time costs more than the draw itself.


def or_default(
    strategy: st.SearchStrategy[T] | None, default: st.SearchStrategy[T]
) -> st.SearchStrategy[T]:
    """Return ``strategy``, or ``default`` when the caller named none."""
    return default if strategy is None else strategy


@functools.lru_cache(maxsize=1024)
def u32s(*, small: int = 16) -> st.SearchStrategy[int]:
    """Return ``u32`` values: mostly at most ``small``, sometimes anywhere, edges included."""
    return st.one_of(
        st.integers(0, small),
        st.sampled_from((0, 1, 2, 99, 100, 101, U32_MAX - 2, U32_MAX - 1, U32_MAX)),
        st.integers(0, U32_MAX),
    )


@functools.lru_cache(maxsize=1024)
def u64s(*, small: int = 1 << 20) -> st.SearchStrategy[int]:
    """Return ``u64`` values: mostly at most ``small``, sometimes anywhere, edges included."""
    return st.one_of(
        st.integers(0, small),
        st.sampled_from((0, 1, 2, U32_MAX, U64_MAX // 1_000, U64_MAX - 1, U64_MAX)),
        st.integers(0, U64_MAX),
    )


@functools.lru_cache(maxsize=1024)
def byte_counts(flush_unit_bytes: int | None = None) -> st.SearchStrategy[int]:
    """
    Return byte counts in ``u64``, biased to 0, 1, ``U64_MAX`` and flush-unit multiples.

    With ``flush_unit_bytes``, counts land on and next to whole and thousandth multiples of
    that unit, where the milli-unit thresholds of AR-2 and AR-3 flip.
    """
    edges = st.sampled_from((0, 1, 2, 1_000, U64_MAX - 1, U64_MAX))
    anywhere = st.one_of(st.integers(0, 1 << 24), st.integers(0, U64_MAX))
    if flush_unit_bytes is None:
        return st.one_of(edges, anywhere)
    unit = flush_unit_bytes
    near_units = st.builds(
        lambda units, delta: within_u64(units * unit + delta),
        st.integers(0, 64),
        st.integers(-2, 2),
    )
    near_milli_units = st.builds(
        lambda milli, delta: within_u64(milli * unit // 1_000 + delta),
        st.integers(0, 64_000),
        st.integers(-1, 1),
    )
    return st.one_of(edges, near_units, near_milli_units, anywhere)


def within_u64(value: int) -> int:
    """Return ``value`` brought into ``[0, U64_MAX]``."""
    return min(max(value, 0), U64_MAX)


@functools.lru_cache(maxsize=1024)
def threshold_debts(config: Config) -> st.SearchStrategy[int]:
    """
    Return debts on, next to and between the thresholds of ``config`` (spec AR-3, FC-6, FC-9).

    A threshold of ``u`` units is first reached by a debt of ``u * flush_unit_bytes`` bytes;
    debts a byte or two either side of it flip the regime, and debts between soft and stop
    land in the soft and hard zones.
    """
    unit = config.bp_flush_unit_bytes
    thresholds = (
        config.bp_soft_debt_units,
        config.bp_hard_debt_units,
        config.bp_stop_debt_units,
        config.bp_cold_start_fail_safe_units,
        config.bp_pacing_soft_debt_units,
    )
    near = st.builds(
        lambda units, delta: within_u64(units * unit + delta),
        st.sampled_from(thresholds),
        st.integers(-2, 2),
    )
    between = st.integers(
        within_u64(config.bp_soft_debt_units * unit),
        within_u64((config.bp_stop_debt_units + 1) * unit),
    )
    return st.one_of(near, between)


@functools.lru_cache(maxsize=1024)
def rates() -> st.SearchStrategy[int]:
    """Return throughputs in bytes per second, ``u64``, 0 (no estimate yet) included."""
    return st.one_of(
        st.sampled_from((0, 1, 2, 1_000_000, 16 << 20, U64_MAX)),
        st.integers(0, 1 << 32),
        st.integers(0, U64_MAX),
    )


@functools.lru_cache(maxsize=1024)
def sample_counts(config: Config) -> st.SearchStrategy[int]:
    """Return I/O sample counts around the warm-up threshold of ``config``, ``U64_MAX`` included."""
    warmup = config.bp_warmup_min_samples
    return st.one_of(
        st.integers(0, warmup + 2),
        st.sampled_from((0, warmup - 1, warmup, U64_MAX - 1, U64_MAX)),
        st.integers(0, U64_MAX),
    )


@functools.lru_cache(maxsize=1024)
def elapsed_durations() -> st.SearchStrategy[int]:
    """Return reported I/O durations in ns: sub-microsecond, typical, and up to the limit."""
    return st.one_of(
        st.sampled_from((0, 1, 999, 1_000, 1_001, ELAPSED_NS_LIMIT - 1)),
        st.integers(0, 10 * NANOS_PER_MILLI),
        st.integers(0, ELAPSED_NS_LIMIT - 1),
    )


@functools.lru_cache(maxsize=1024)
def sub_micros() -> st.SearchStrategy[int]:
    """
    Return a nanosecond remainder below a microsecond: mostly 0, else 1, 500 or 999.

    Added to a duration, it tells whole microseconds (``micros``, AR-1, the seed's
    ``as_micros()``) from a truncated, rounded or ignored nanosecond part.
    """
    return st.sampled_from((0, 0, 0, 1, 500, 999))


@functools.lru_cache(maxsize=1024)
def times(*, at_most: int = DEFAULT_NOW_NS) -> st.SearchStrategy[int]:
    """Return times in ns in ``[0, at_most]``, biased to both ends."""
    return st.one_of(
        st.sampled_from((0, at_most)),
        st.integers(max(at_most - 10 * NANOS_PER_MILLI, 0), at_most),
        st.integers(0, at_most),
    )


@functools.lru_cache(maxsize=1024)
def outcomes() -> st.SearchStrategy[Outcome]:
    """Return any task outcome."""
    return st.sampled_from(Outcome)


# --- options and configurations (spec CFG-1 to CFG-4) ----------------------------------------


@functools.lru_cache(maxsize=1024)
def flags(fixed: bool | None) -> st.SearchStrategy[bool]:
    """Return ``fixed`` if it is a bool, else either flag value."""
    return st.booleans() if fixed is None else st.just(fixed)


@functools.lru_cache(maxsize=1024)
def unit_counts() -> st.SearchStrategy[int]:
    """Return threshold option values in flush units: small, or at the ``u32`` edges."""
    return st.one_of(st.integers(0, 12), u32s())


@functools.lru_cache(maxsize=1024)
def percentages() -> st.SearchStrategy[int]:
    """Return percentage option values: mostly around [0, 100], sometimes the ``u32`` edges."""
    return st.one_of(st.integers(0, 120), u32s())


@st.composite
def raw_options(
    draw: st.DrawFn,
    *,
    enable_backpressure: bool | None = None,
    enable_flush_pacing: bool | None = None,
) -> Options:
    """
    Return options that `normalise` accepts (spec CFG-1, CFG-3), zeros included.

    Thresholds are mostly small so that regimes are reached with small debts; every value the
    seed can represent without overflowing (DIV-5) is possible. A flag given as a bool is fixed;
    left as None, it is drawn.
    """
    soft = draw(unit_counts().filter(lambda value: value <= U32_MAX - 2))
    normalised_soft = max(soft, 1)
    # The hard threshold normalises to soft + 1 when it is at most soft; either way it must
    # stay below U32_MAX (CFG-3).
    hard = draw(
        unit_counts().filter(
            lambda value: (
                (value <= normalised_soft and normalised_soft + 1 < U32_MAX)
                or normalised_soft < value < U32_MAX
            )
        )
    )
    return Options(
        enable_backpressure=draw(flags(enable_backpressure)),
        enable_flush_pacing=draw(flags(enable_flush_pacing)),
        bp_soft_debt_units=soft,
        bp_hard_debt_units=hard,
        bp_stop_debt_units=draw(unit_counts()),
        bp_cold_start_fail_safe_units=draw(unit_counts()),
        bp_pacing_soft_debt_units=draw(unit_counts()),
        bp_flush_unit_bytes=draw(
            st.one_of(st.sampled_from((0, 1, 1_000, 4_096, 1_000_000, 64 << 20)), u64s())
        ),
        bp_min_ratio_pct=draw(percentages()),
        bp_floor_bps=draw(st.one_of(st.sampled_from((0, 1, 1_000, 1_000_000)), u64s())),
        bp_warmup_min_samples=draw(st.one_of(st.integers(0, 5), u32s())),
        bp_publish_guard_min_ratio_pct=draw(percentages()),
        bp_idle_reset_ms=draw(st.one_of(st.integers(0, 10), u64s())),
        bp_max_delay_us=draw(
            st.one_of(st.sampled_from((0, 1, 1_000, 20_000, 50_000)), u64s(small=100_000))
        ),
    )


def configs(
    *,
    enable_backpressure: bool | None = None,
    enable_flush_pacing: bool | None = None,
) -> st.SearchStrategy[Config]:
    """Return normalised configurations (spec CFG-2, CFG-4); flags as in `raw_options`."""
    return raw_options(
        enable_backpressure=enable_backpressure, enable_flush_pacing=enable_flush_pacing
    ).map(normalise)


# --- controller and task states (spec ST-1, ST-2) --------------------------------------------


@functools.lru_cache(maxsize=1024)
def scope_counts() -> st.SearchStrategy[int]:
    """Return open-scope counts: mostly none or a few, sometimes at the ``u64`` edge."""
    return st.one_of(st.integers(0, 3), st.sampled_from((U64_MAX - 1, U64_MAX)))


@st.composite
def states(
    draw: st.DrawFn,
    config: Config,
    *,
    now_ns: int = DEFAULT_NOW_NS,
    debt_bytes: st.SearchStrategy[int] | None = None,
) -> ControllerState:
    """
    Return a controller state consistent with ``config`` at time ``now_ns`` (spec ST-1).

    The adaptive floor is at least the floor (INV-9); ``idle_since`` is not after ``now_ns``;
    the pacing deadline lies anywhere from the past up to a few maximum delays ahead.
    """
    floor = config.bp_floor_bps
    max_delay_ns = config.bp_max_delay_us * NANOS_PER_MICRO
    deadline = st.integers(max(now_ns - max_delay_ns, 0), now_ns + 3 * max_delay_ns)
    return ControllerState(
        debt_bytes=draw(
            or_default(
                debt_bytes,
                st.one_of(byte_counts(config.bp_flush_unit_bytes), threshold_debts(config)),
            )
        ),
        io_bps_ewma=draw(rates()),
        e2e_bps_ewma=draw(rates()),
        io_sample_count=draw(sample_counts(config)),
        adaptive_floor_bps=draw(
            st.one_of(
                st.just(floor),
                st.integers(floor, min(floor * 16, U64_MAX)),
                st.integers(floor, U64_MAX),
            )
        ),
        teardown_bypass_scopes=draw(scope_counts()),
        arena_starving_scopes=draw(scope_counts()),
        idle_since=draw(st.none() | times(at_most=now_ns)),
        next_flush_at=draw(st.none() | deadline),
    )


@st.composite
def tasks(
    draw: st.DrawFn,
    *,
    now_ns: int = DEFAULT_NOW_NS,
    est_bytes: st.SearchStrategy[int] | None = None,
    io_reported: bool | None = None,
) -> TaskState:
    """
    Return a live (not finished) task enqueued at or before ``now_ns`` (spec ST-2).

    A task that reported its I/O carries the ``FLUSHED`` outcome or one marked after it; one
    that did not carries any outcome marked since enqueue. ``io_reported`` fixes which, if
    given.
    """
    reported = draw(flags(io_reported))
    io_micros = draw(st.integers(0, 1 << 20)) if reported else 0
    return TaskState(
        enqueue_at=draw(times(at_most=now_ns)),
        est_bytes=draw(or_default(est_bytes, byte_counts())),
        actual_bytes=draw(byte_counts()) if reported else 0,
        io_micros=io_micros,
        outcome=draw(st.just(Outcome.FLUSHED) | outcomes()) if reported else draw(outcomes()),
        force_bypass=draw(st.booleans()),
        io_reported=reported,
        done=False,
    )


@functools.lru_cache(maxsize=1024)
def far_u64s() -> st.SearchStrategy[int]:
    """Return ``u64`` values at their ends: 0 to 2, or ``U64_MAX`` and just below it."""
    return st.sampled_from((0, 1, 2, U64_MAX - 2, U64_MAX - 1, U64_MAX))


@functools.lru_cache(maxsize=1)
def far_fields() -> dict[str, st.SearchStrategy[int]]:
    """
    Return the strategies of `far_states`, built once (composites run on every draw).

    Times are offsets: ``idle_back`` before now (``-1``: no idle spell), ``deadline_ahead``
    after now (``None`` is ``-2**64``: no deadline; negative offsets lie in the past).
    """
    small_debts = st.sampled_from((0, 0, 1, 999, 1_000, 2_500, 4_096, 8_000))
    no_time = -(2**64)
    return {
        "debt": st.one_of(small_debts, small_debts, far_u64s(), st.integers(0, U64_MAX)),
        "average": st.one_of(far_u64s(), st.sampled_from((100_000, 1_000_000)), rates()),
        "floor": st.one_of(
            st.just(0),
            st.sampled_from((U64_MAX // 8, U64_MAX - 1, U64_MAX)),
            st.integers(0, U64_MAX),
        ),
        "samples": st.one_of(far_u64s(), st.integers(0, 4)),
        # Scope counts at u64::MAX are drawn as often as not: only a start there reaches them.
        "at_limit": st.sampled_from((0, 1, 2, 3)),
        "small_scopes": st.sampled_from((0, 1, U64_MAX - 1)),
        "idle_back": st.one_of(
            st.just(no_time),
            st.sampled_from((0, 60 * 10**9, 2**63)),
            st.integers(0, 10 * NANOS_PER_MILLI),
        ),
        "deadline_ahead": st.one_of(
            st.just(no_time),
            st.sampled_from((1, 999, NANOS_PER_MILLI, -1, -(2**63))),
            st.integers(0, 10**9),
        ),
    }


@st.composite
def far_states(draw: st.DrawFn, *, now_ns: int, floor_bps: int = 1) -> ControllerState:
    """
    Return a state in the model's domain far from a new controller's (spec ST-1, INV-9).

    Every counter is drawn on its own, mostly at an end of its range: a debt of a few bytes or
    next to ``u64::MAX`` (DIV-3), scope counts at ``u64::MAX`` (ERR-2), the sample count at its
    saturation (DIV-4), averages and the adaptive floor at 0 or ``u64::MAX`` (the floor at
    least ``floor_bps``). ``idle_since`` is None, ``now_ns`` or older (as far back as time 0),
    whatever the debt: a debt with the controller idle is a state the seed's own runs reach
    only when a task estimated at 0 bytes reports its I/O after the others settled. The
    deadline lies behind or ahead of ``now_ns``, a nanosecond or more away. Only the floor
    depends on a configuration, so the state suits any; normal-sized values appear too, so that
    a run from such a state still reaches ordinary regimes.
    """
    fields = far_fields()
    at_limit = draw(fields["at_limit"])  # 0: both scopes at u64::MAX, 1, 2: one, 3: neither
    teardown = U64_MAX if at_limit in {0, 1} else draw(fields["small_scopes"])
    starving = U64_MAX if at_limit in {0, 2} else draw(fields["small_scopes"])
    idle_back = draw(fields["idle_back"])
    ahead = draw(fields["deadline_ahead"])
    return ControllerState(
        debt_bytes=draw(fields["debt"]),
        io_bps_ewma=draw(fields["average"]),
        e2e_bps_ewma=draw(fields["average"]),
        io_sample_count=draw(fields["samples"]),
        adaptive_floor_bps=max(draw(fields["floor"]), floor_bps),
        teardown_bypass_scopes=teardown,
        arena_starving_scopes=starving,
        idle_since=None if idle_back < 0 else max(now_ns - idle_back, 0),
        next_flush_at=None if ahead == -(2**64) else max(now_ns + ahead, 0),
    )
