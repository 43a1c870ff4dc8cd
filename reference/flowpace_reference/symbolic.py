"""Harnesses that let CrossHair check the invariants on concrete configurations (INV-1 to INV-9).

The docstring contracts of the model hold for every normalised configuration, and CrossHair
searches them with the configuration symbolic too. There, the debt in milli-units divides by a
symbolic flush unit, the throttled delay divides a symbolic size by a symbolic throughput, and
the precondition that the configuration is normalised takes some thirty comparisons: the
solver gives up on many paths and few reach the property. Each harness below fixes the
configuration to one of `CONFIGS`, keeps the state and the arguments symbolic, and states the
property as plain ``assert`` statements. The divisions by the flush unit then become
divisions by constants, and the search spends its time in the decisions.

CrossHair reads these functions in its ``asserts`` mode (``crosshair check
--analysis_kind=asserts flowpace_reference.symbolic``): the leading asserts are the
preconditions, every later assert is checked. That mode ignores the model's docstring
contracts, so a harness runs the model's code itself rather than trusting the contracts of the
functions it calls. Two properties need two calls and exist only here: the delay is monotone
in the debt (INV-5), and a task's life settles exactly what it charged (INV-1).
"""

from __future__ import annotations

import dataclasses
from typing import Final

from flowpace_reference.config import normalise
from flowpace_reference.contracts import at_stop, is_ewma_step, is_u64, may_delay
from flowpace_reference.measures import cold_start_ready, outstanding_charge
from flowpace_reference.transitions import (
    ELAPSED_NS_LIMIT,
    commit_flush,
    enqueue,
    foreground_delay_us,
    foreground_regime,
    io_built,
    mark_done,
    new_controller,
    plan_flush,
)
from flowpace_reference.types import (
    Config,
    ControllerState,
    FlushDecision,
    FlushPlan,
    ForegroundRegime,
    Options,
    Outcome,
    TaskState,
)
from flowpace_reference.u64 import NANOS_PER_MICRO, U64_MAX

CONFIGS: Final = (
    # Upstream's defaults, both features on: a 64 MiB flush unit, soft 8, hard 24, stop 48.
    normalise(Options(enable_backpressure=True, enable_flush_pacing=True)),
    # The seed's cold-start test: the fail-safe (4) lies between soft (2) and hard (6).
    normalise(
        Options(
            enable_backpressure=True,
            enable_flush_pacing=True,
            bp_floor_bps=1_000_000,
            bp_flush_unit_bytes=1_000,
            bp_soft_debt_units=2,
            bp_hard_debt_units=6,
            bp_stop_debt_units=12,
            bp_cold_start_fail_safe_units=4,
            bp_max_delay_us=20_000,
        )
    ),
    # The seed's steady-state test: thresholds 1, 2, 3, one sample to warm up, no guard.
    normalise(
        Options(
            enable_backpressure=True,
            enable_flush_pacing=True,
            bp_floor_bps=1_000_000,
            bp_flush_unit_bytes=1_000,
            bp_soft_debt_units=1,
            bp_hard_debt_units=2,
            bp_stop_debt_units=3,
            bp_pacing_soft_debt_units=1,
            bp_warmup_min_samples=1,
            bp_publish_guard_min_ratio_pct=100,
            bp_max_delay_us=50_000,
        )
    ),
    # Edges: a one-byte flush unit, a fail-safe above stop, the lowest ratios, the longest
    # delay a u64 holds (so that only saturation keeps the doubled delay in range).
    normalise(
        Options(
            enable_backpressure=True,
            enable_flush_pacing=True,
            bp_floor_bps=1,
            bp_flush_unit_bytes=1,
            bp_soft_debt_units=2,
            bp_hard_debt_units=3,
            bp_stop_debt_units=4,
            bp_cold_start_fail_safe_units=10,
            bp_pacing_soft_debt_units=1,
            bp_min_ratio_pct=1,
            bp_warmup_min_samples=2,
            bp_publish_guard_min_ratio_pct=1,
            bp_idle_reset_ms=1,
            bp_max_delay_us=U64_MAX,
        )
    ),
)
"""The configurations the harnesses fix, each chosen for the edges it puts in reach."""


def steady_state(config: Config, debt_bytes: int, io_bps: int, e2e_bps: int) -> ControllerState:
    """Return a controller in steady state with the given debt and moving averages."""
    return ControllerState(
        debt_bytes=debt_bytes,
        io_bps_ewma=io_bps,
        e2e_bps_ewma=e2e_bps,
        io_sample_count=config.bp_warmup_min_samples,
        adaptive_floor_bps=config.bp_floor_bps,
        teardown_bypass_scopes=0,
        arena_starving_scopes=0,
        idle_since=None,
        next_flush_at=None,
    )


def state_with(
    config: Config,
    debt_bytes: int,
    io_bps: int,
    e2e_bps: int,
    samples: int,
    floor_raise: int,
) -> ControllerState:
    """Return a controller with the given counters, its floor raised by ``floor_raise``."""
    return ControllerState(
        debt_bytes=debt_bytes,
        io_bps_ewma=io_bps,
        e2e_bps_ewma=e2e_bps,
        io_sample_count=samples,
        adaptive_floor_bps=min(config.bp_floor_bps + floor_raise, U64_MAX),
        teardown_bypass_scopes=0,
        arena_starving_scopes=0,
        idle_since=None,
        next_flush_at=None,
    )


def foreground_delay_bounds(
    which: int,
    debt_bytes: int,
    io_bps: int,
    e2e_bps: int,
    samples: int,
    floor_raise: int,
    write_bytes: int,
) -> None:
    """Check the delay's bound, its zero-delay regimes and its maximum at stop (INV-2..4)."""
    assert 0 <= which < len(CONFIGS)
    assert is_u64(debt_bytes)
    assert is_u64(write_bytes)
    assert is_u64(io_bps)
    assert is_u64(e2e_bps)
    assert is_u64(samples)
    assert is_u64(floor_raise)
    config = CONFIGS[which]
    state = state_with(config, debt_bytes, io_bps, e2e_bps, samples, floor_raise)
    delay = foreground_delay_us(config, state, write_bytes)
    assert 0 <= delay <= config.bp_max_delay_us, "INV-2"
    assert may_delay(config, state, write_bytes) or delay == 0, "INV-3"
    assert not at_stop(config, state, write_bytes) or delay == config.bp_max_delay_us, "INV-4"
    regime = foreground_regime(config, state, write_bytes)
    assert regime is not ForegroundRegime.NO_THROUGHPUT, "FC-6 rule 6 under CFG-4"


def delay_monotone_in_debt(
    which: int,
    debt_a: int,
    debt_b: int,
    io_bps: int,
    e2e_bps: int,
    samples: int,
    floor_raise: int,
    write_bytes: int,
) -> None:
    """Check that a larger debt never gives a shorter foreground delay (INV-5)."""
    assert 0 <= which < len(CONFIGS)
    assert 0 <= debt_a <= debt_b <= U64_MAX
    assert is_u64(write_bytes)
    assert is_u64(io_bps)
    assert is_u64(e2e_bps)
    assert is_u64(samples)
    assert is_u64(floor_raise)
    config = CONFIGS[which]
    smaller = state_with(config, debt_a, io_bps, e2e_bps, samples, floor_raise)
    larger = state_with(config, debt_b, io_bps, e2e_bps, samples, floor_raise)
    assert foreground_delay_us(config, smaller, write_bytes) <= foreground_delay_us(
        config, larger, write_bytes
    ), "INV-5"


def steady_delay_monotone_in_debt(
    which: int, debt_a: int, debt_b: int, io_bps: int, e2e_bps: int, write_bytes: int
) -> None:
    """Check INV-5 in steady state, where the moving averages and the publish guard act."""
    assert 0 <= which < len(CONFIGS)
    assert 0 <= debt_a <= debt_b <= U64_MAX
    assert is_u64(write_bytes)
    assert is_u64(io_bps)
    assert is_u64(e2e_bps)
    config = CONFIGS[which]
    smaller = steady_state(config, debt_a, io_bps, e2e_bps)
    larger = steady_state(config, debt_b, io_bps, e2e_bps)
    assert foreground_delay_us(config, smaller, write_bytes) <= foreground_delay_us(
        config, larger, write_bytes
    ), "INV-5"


def flush_pacing_bounds(
    which: int,
    debt_bytes: int,
    io_bps: int,
    est_bytes: int,
    deadline: int,
    now_ns: int,
    slept_ns: int,
) -> None:
    """Check a paced flush's sleep and interval bounds and the deadline it commits (INV-6)."""
    assert 0 <= which < len(CONFIGS)
    assert is_u64(debt_bytes)
    assert is_u64(io_bps)
    assert is_u64(est_bytes)
    assert deadline >= -1
    assert now_ns >= 0
    assert slept_ns >= 0
    config = CONFIGS[which]
    state = steady_state(config, debt_bytes, io_bps, 0)
    if deadline >= 0:
        state = dataclasses.replace(state, next_flush_at=deadline)
    task = TaskState(enqueue_at=0, est_bytes=est_bytes)
    plan = plan_flush(config, state, task, now_ns)
    assert 0 <= plan.sleep_ns <= config.bp_max_delay_us * NANOS_PER_MICRO, "INV-6 sleep"
    assert plan.decision is FlushDecision.PACED or plan.sleep_ns == 0, "FC-9"
    if plan.decision is FlushDecision.PACED:
        assert 1 <= plan.interval_us <= config.bp_max_delay_us, "INV-6 interval"
        woke = now_ns + plan.sleep_ns + slept_ns
        after = commit_flush(state, plan, woke)
        assert after.next_flush_at is not None, "FC-10"
        assert after.next_flush_at >= woke + plan.interval_us * NANOS_PER_MICRO, "FC-10"
        assert deadline < 0 or after.next_flush_at >= deadline, "FC-10"


def io_built_conserves_debt(
    which: int,
    others_bytes: int,
    est_bytes: int,
    nbytes: int,
    elapsed_ns: int,
    io_bps: int,
    samples: int,
) -> None:
    """Check that io_built moves exactly the task's charge and keeps INV-8 and INV-9."""
    assert 0 <= which < len(CONFIGS)
    assert others_bytes >= 0
    assert est_bytes >= 0
    assert nbytes >= 0
    assert others_bytes + max(est_bytes, nbytes) <= U64_MAX
    assert 0 <= elapsed_ns < ELAPSED_NS_LIMIT
    assert is_u64(io_bps)
    assert is_u64(samples)
    config = CONFIGS[which]
    before = state_with(config, others_bytes + est_bytes, io_bps, 0, samples, 0)
    task = TaskState(enqueue_at=0, est_bytes=est_bytes)
    step = io_built(config, before, task, nbytes, elapsed_ns)
    assert step.state.debt_bytes == others_bytes + nbytes, "INV-1"
    assert outstanding_charge(step.task) == nbytes, "AR-8"
    assert step.state.adaptive_floor_bps >= before.adaptive_floor_bps, "INV-9"
    micros = min(elapsed_ns // NANOS_PER_MICRO, U64_MAX)
    if nbytes != 0 and micros != 0:
        sample = min(nbytes * 1_000_000 // micros, U64_MAX)
        assert is_ewma_step(io_bps, sample, step.state.io_bps_ewma), "INV-8"
        assert step.state.io_sample_count == min(samples + 1, U64_MAX), "FC-2"
    else:
        assert step.state.io_bps_ewma == io_bps, "FC-2: no sample"
        assert step.state.io_sample_count == samples, "FC-2: no sample"


def task_life_settles_its_charge(
    which: int,
    est_a: int,
    est_b: int,
    nbytes_a: int,
    elapsed_ns: int,
    done_at: int,
    b_written: bool,
    nbytes_b: int,
) -> None:
    """Check that two tasks' lives leave no debt and an idle controller (INV-1, FC-12)."""
    assert 0 <= which < len(CONFIGS)
    assert est_a >= 0
    assert est_b >= 0
    assert nbytes_a >= 0
    assert nbytes_b >= 0
    assert max(est_a, nbytes_a) + max(est_b, nbytes_b) <= U64_MAX
    assert 0 <= elapsed_ns < ELAPSED_NS_LIMIT
    assert done_at >= 0
    config = CONFIGS[which]
    state = new_controller(config, 0)
    first = enqueue(config, state, est_a, 0)
    second = enqueue(config, first.state, est_b, 0)
    assert second.state.debt_bytes == est_a + est_b, "INV-1 enqueue"
    built = io_built(config, second.state, first.task, nbytes_a, elapsed_ns)
    assert built.state.debt_bytes == nbytes_a + est_b, "INV-1 io_built"
    state, task_b = built.state, second.task
    if b_written:
        step = io_built(config, state, task_b, nbytes_b, elapsed_ns)
        state, task_b = step.state, step.task
    assert state.debt_bytes == outstanding_charge(built.task) + outstanding_charge(task_b)
    state = mark_done(config, state, built.task, done_at).state
    assert state.debt_bytes == outstanding_charge(task_b), "INV-1 mark_done"
    last = mark_done(config, state, task_b, done_at)
    assert last.state.debt_bytes == 0, "INV-1"
    assert last.state.idle_since is not None, "FC-12"
    assert last.state.next_flush_at is None, "FC-12"
    assert last.state.adaptive_floor_bps >= config.bp_floor_bps, "INV-9"
    assert b_written or last.state.io_sample_count <= 1, "FC-2"
    assert last.task.outcome is (Outcome.FLUSHED if b_written else Outcome.UNKNOWN)


def idle_reset_forgets_history(which: int, idle_ms: int, est_bytes: int, io_bps: int) -> None:
    """Check that an enqueue after the idle interval, and only then, forgets history (FC-12)."""
    assert 0 <= which < len(CONFIGS)
    assert 0 <= idle_ms <= 10 * CONFIGS[which].bp_idle_reset_ms
    assert is_u64(est_bytes)
    assert 1 <= io_bps <= U64_MAX
    config = CONFIGS[which]
    warm = dataclasses.replace(steady_state(config, 0, io_bps, io_bps), idle_since=0)
    step = enqueue(config, warm, est_bytes, idle_ms * 1_000_000)
    if idle_ms >= config.bp_idle_reset_ms:
        assert step.state.io_bps_ewma == 0, "FC-12"
        assert step.state.e2e_bps_ewma == 0, "FC-12"
        assert not cold_start_ready(config, step.state), "FC-12: cold again"
        assert step.state.adaptive_floor_bps == config.bp_floor_bps, "INV-9 reset"
    else:
        assert step.state.io_bps_ewma == io_bps
        assert cold_start_ready(config, step.state)
    assert step.state.debt_bytes == est_bytes, "FC-1"
    assert step.state.idle_since is None, "FC-1"


# --- the decisions with flat signatures, for `crosshair diffbehavior` --------------------------
#
# Each function below has a twin of the same name and signature over the implementation
# (tests/crosshair_impl_adapters.py); `crosshair diffbehavior` looks for arguments on which
# the two return different values or raise different exceptions. Arguments outside the
# domain the specification covers give None on both sides, by the same test.


def in_state_domain(debt_bytes: int, io_bps: int, e2e_bps: int, samples: int) -> bool:
    """Return whether the counters are u64 values, as every controller state's are (ST-1)."""
    return is_u64(debt_bytes) & is_u64(io_bps) & is_u64(e2e_bps) & is_u64(samples)


def foreground_delay_at(
    which: int,
    debt_bytes: int,
    io_bps: int,
    e2e_bps: int,
    samples: int,
    floor_raise: int,
    write_bytes: int,
) -> int | None:
    """Return the foreground delay under ``CONFIGS[which]`` (spec FC-6 to FC-8)."""
    if not 0 <= which < len(CONFIGS) or not in_state_domain(debt_bytes, io_bps, e2e_bps, samples):
        return None
    if not is_u64(floor_raise) or not is_u64(write_bytes):
        return None
    config = CONFIGS[which]
    state = state_with(config, debt_bytes, io_bps, e2e_bps, samples, floor_raise)
    return foreground_delay_us(config, state, write_bytes)


def flush_plan_at(
    which: int,
    debt_bytes: int,
    io_bps: int,
    samples: int,
    est_bytes: int,
    bypass: bool,
    teardown_scopes: int,
    starving_scopes: int,
) -> tuple[FlushDecision, int] | None:
    """Return the flush decision and the pacing interval under ``CONFIGS[which]`` (FC-9, FC-10)."""
    if not 0 <= which < len(CONFIGS) or not in_state_domain(debt_bytes, io_bps, 0, samples):
        return None
    if not is_u64(est_bytes) or not is_u64(teardown_scopes) or not is_u64(starving_scopes):
        return None
    config = CONFIGS[which]
    state = dataclasses.replace(
        state_with(config, debt_bytes, io_bps, 0, samples, 0),
        teardown_bypass_scopes=teardown_scopes,
        arena_starving_scopes=starving_scopes,
    )
    task = TaskState(enqueue_at=0, est_bytes=est_bytes, force_bypass=bypass)
    plan = plan_flush(config, state, task, 0)
    return plan.decision, plan.interval_us


def paced_flush_at(
    which: int, interval_us: int, deadline: int, now_ns: int, slept_ns: int
) -> tuple[int, int] | None:
    """Return a paced flush's sleep and the deadline it commits after sleeping (FC-10)."""
    if not 0 <= which < len(CONFIGS) or not 1 <= interval_us <= CONFIGS[which].bp_max_delay_us:
        return None
    if deadline < -1 or now_ns < 0 or slept_ns < 0:
        return None
    config = CONFIGS[which]
    state = steady_state(config, 1, 1, 0)
    if deadline >= 0:
        state = dataclasses.replace(state, next_flush_at=deadline)
    sleep_ns = plan_flush(config, state, TaskState(enqueue_at=0, est_bytes=1), now_ns).sleep_ns
    plan = FlushPlan(decision=FlushDecision.PACED, interval_us=interval_us, sleep_ns=sleep_ns)
    after = commit_flush(state, plan, now_ns + sleep_ns + slept_ns)
    assert after.next_flush_at is not None  # a paced commit sets a deadline
    return sleep_ns, after.next_flush_at


def io_sample_at(
    which: int, io_bps: int, samples: int, floor_raise: int, nbytes: int, elapsed_ns: int
) -> tuple[int, int, int] | None:
    """Return the I/O average, sample count and adaptive floor after an I/O report (FC-2, AR-6)."""
    if not 0 <= which < len(CONFIGS) or not in_state_domain(nbytes, io_bps, 0, samples):
        return None
    if not is_u64(floor_raise) or not 0 <= elapsed_ns < ELAPSED_NS_LIMIT:
        return None
    config = CONFIGS[which]
    state = state_with(config, nbytes, io_bps, 0, samples, floor_raise)
    after = io_built(config, state, TaskState(enqueue_at=0, est_bytes=nbytes), nbytes, elapsed_ns)
    return after.state.io_bps_ewma, after.state.io_sample_count, after.state.adaptive_floor_bps


def normalised_options(
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
    """Return the normalised configuration of these options, or raise as CFG-3 says (CFG-2)."""
    return normalise(
        Options(
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
        )
    )
