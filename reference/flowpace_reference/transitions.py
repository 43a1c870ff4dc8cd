"""The controller's operations as pure functions (spec FC-1 to FC-12, ERR-1 to ERR-3).

Each function takes the normalised configuration, the state before, its arguments and, where
time matters, the current time ``now_ns``; it returns the state after and what the caller
observes. Nothing here reads a clock, sleeps or mutates: the two operations that sleep are
split into a decision (what to sleep, decided at one time) and, for flush pacing, a commit
(the new deadline, fixed at the time the sleep ended), so the same model serves a virtual
clock and a real one.

Errors are raised before anything is computed, so a failing operation returns no new state
and the caller's state is, by construction, unchanged.
"""

from __future__ import annotations

import dataclasses

from flowpace_reference.contracts import (  # noqa: F401  # read by the contracts in docstrings
    ZERO_DELAY_REGIMES,
    at_stop,
    at_stop_at,
    idle_at_least,
    is_ewma_step,
    is_paced,
    is_time,
    is_u64,
    may_delay,
    may_delay_at,
    same_except,
    satisfies_guarantees,
    state_in_domain,
    task_in_domain,
    throttles_at,
)
from flowpace_reference.measures import (
    cold_start_ready,
    debt_milli_units,
    disk_bps,
    effective_floor_bps,
    ewma_update,
    outstanding_charge,
    publish_guard_ratio_pct,
    raised_floor,
    threshold_milli_units,
)
from flowpace_reference.types import (
    Config,
    ControllerState,
    DebtOverflowError,
    Emission,
    FlushDecision,
    FlushPlan,
    ForegroundDecision,
    ForegroundRegime,
    Metric,
    MetricKind,
    Outcome,
    TaskState,
    TaskStateError,
    TaskStep,
)
from flowpace_reference.u64 import (
    NANOS_PER_MICRO,
    NANOS_PER_MILLI,
    U32_MAX,  # noqa: F401  # read by the contracts
    U64_MAX,
    clamp_u64,
    duration_micros,
    rate_per_second,
    saturating_mul,
    saturating_sub,
)

ELAPSED_NS_LIMIT = (U64_MAX + 1) * 10**9
"""One past the longest duration a Rust ``Duration`` holds, in nanoseconds (spec ERR-3)."""


# --- argument checks (spec ERR-1, ERR-3) -----------------------------------------------------


def check_u64(name: str, value: int) -> None:
    """
    Raise TypeError or ValueError, naming ``name``, unless ``value`` is a u64 (spec ERR-3).

    post: is_u64(value)
    raises: TypeError, ValueError
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"{name} must be in [0, {U64_MAX}], got {value}")


def check_elapsed(elapsed_ns: int) -> None:
    """
    Raise TypeError or ValueError unless a Rust ``Duration`` holds ``elapsed_ns`` (ERR-3).

    post: 0 <= elapsed_ns < ELAPSED_NS_LIMIT
    raises: TypeError, ValueError
    """
    if isinstance(elapsed_ns, bool) or not isinstance(elapsed_ns, int):
        raise TypeError(f"elapsed_ns must be an int, got {elapsed_ns!r}")
    if not 0 <= elapsed_ns < ELAPSED_NS_LIMIT:
        raise ValueError(f"elapsed_ns must be in [0, {ELAPSED_NS_LIMIT}), got {elapsed_ns}")


def check_live(task: TaskState, operation: str) -> None:
    """
    Raise TaskStateError if ``task`` is finished (spec ERR-1, DIV-2).

    post: not task.done
    raises: TaskStateError
    """
    if task.done:
        raise TaskStateError(f"{operation} on a finished task")


def checked_debt(debt: int) -> int:
    """
    Return ``debt`` unless it exceeds ``u64::MAX``; then raise (spec ERR-2, DIV-3).

    pre: debt >= 0
    post: __return__ == debt <= U64_MAX
    raises: DebtOverflowError
    """
    if debt > U64_MAX:
        raise DebtOverflowError(f"debt would exceed u64::MAX ({debt} > {U64_MAX})")
    return debt


# --- construction (spec ST-1) ----------------------------------------------------------------


def new_controller(config: Config, now_ns: int) -> ControllerState:
    """
    Return the state of a controller built at ``now_ns`` (spec ST-1).

    pre: satisfies_guarantees(config)
    pre: now_ns >= 0
    post: state_in_domain(config, __return__)
    post: __return__.debt_bytes == 0 and __return__.idle_since == now_ns
    post: __return__.adaptive_floor_bps == config.bp_floor_bps
    post: not cold_start_ready(config, __return__)
    """
    return ControllerState(
        debt_bytes=0,
        io_bps_ewma=0,
        e2e_bps_ewma=0,
        io_sample_count=0,
        adaptive_floor_bps=config.bp_floor_bps,
        teardown_bypass_scopes=0,
        arena_starving_scopes=0,
        idle_since=now_ns,
        next_flush_at=None,
    )


# --- idle handling (spec FC-12) --------------------------------------------------------------


def idle_expired(config: Config, state: ControllerState, now_ns: int) -> bool:
    """
    Return whether the controller has been idle for at least the idle-reset interval (FC-12).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: state.idle_since is None or now_ns >= state.idle_since
    post: state.idle_since is not None or not __return__
    post: __return__ == idle_at_least(state, now_ns, config.bp_idle_reset_ms)
    """
    if state.idle_since is None:
        return False
    return now_ns - state.idle_since >= config.bp_idle_reset_ms * NANOS_PER_MILLI


def forget_throughput(config: Config, state: ControllerState) -> ControllerState:
    """
    Return ``state`` with throughput history forgotten after an idle spell (spec FC-12).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    post: state_in_domain(config, __return__)
    post: __return__.io_bps_ewma == 0 and __return__.e2e_bps_ewma == 0
    post: __return__.io_sample_count == 0 and not cold_start_ready(config, __return__)
    post: __return__.adaptive_floor_bps == config.bp_floor_bps
    post: __return__.debt_bytes == state.debt_bytes
    post: __return__.idle_since == state.idle_since
    post: __return__.next_flush_at == state.next_flush_at
    """
    return dataclasses.replace(
        state,
        io_bps_ewma=0,
        e2e_bps_ewma=0,
        io_sample_count=0,
        adaptive_floor_bps=config.bp_floor_bps,
    )


def mark_idle(state: ControllerState, now_ns: int) -> ControllerState:
    """
    Return ``state`` marked idle from ``now_ns`` (unless already) with no pacing deadline.

    Spec FC-12.

    pre: now_ns >= 0
    post: state.idle_since is None or __return__.idle_since == state.idle_since
    post: state.idle_since is not None or __return__.idle_since == now_ns
    post: __return__.next_flush_at is None
    post: __return__.debt_bytes == state.debt_bytes
    """
    idle_since = now_ns if state.idle_since is None else state.idle_since
    return dataclasses.replace(state, idle_since=idle_since, next_flush_at=None)


# --- throughput samples (spec AR-6, AR-7) ----------------------------------------------------


def with_io_sample(config: Config, state: ControllerState, sample: int) -> ControllerState:
    """
    Return ``state`` after an I/O throughput sample: EWMA, floor and sample count (FC-2).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(sample)
    post: state_in_domain(config, __return__)
    post: is_ewma_step(state.io_bps_ewma, sample, __return__.io_bps_ewma)
    post: __return__.io_sample_count == min(state.io_sample_count + 1, U64_MAX)
    post: __return__.adaptive_floor_bps >= state.adaptive_floor_bps
    post: __return__.e2e_bps_ewma == state.e2e_bps_ewma
    """
    return dataclasses.replace(
        state,
        io_bps_ewma=ewma_update(state.io_bps_ewma, sample),
        adaptive_floor_bps=floor_after(config, state.adaptive_floor_bps, sample),
        # The seed's counter wraps after 2**64 samples; it saturates here (DIV-4).
        io_sample_count=min(state.io_sample_count + 1, U64_MAX),
    )


def with_e2e_sample(config: Config, state: ControllerState, sample: int) -> ControllerState:
    """
    Return ``state`` after an end-to-end throughput sample: EWMA and floor (spec FC-5).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(sample)
    post: state_in_domain(config, __return__)
    post: is_ewma_step(state.e2e_bps_ewma, sample, __return__.e2e_bps_ewma)
    post: __return__.io_sample_count == state.io_sample_count
    post: __return__.adaptive_floor_bps >= state.adaptive_floor_bps
    post: __return__.io_bps_ewma == state.io_bps_ewma
    """
    return dataclasses.replace(
        state,
        e2e_bps_ewma=ewma_update(state.e2e_bps_ewma, sample),
        adaptive_floor_bps=floor_after(config, state.adaptive_floor_bps, sample),
    )


def floor_after(config: Config, adaptive_floor_bps: int, sample: int) -> int:
    """
    Return the adaptive floor after ``sample``; a zero sample is ignored like the EWMA's.

    Spec AR-6: the seed returns from ``update_ewma`` before raising the floor when the sample
    is 0.

    pre: satisfies_guarantees(config)
    pre: config.bp_floor_bps <= adaptive_floor_bps <= U64_MAX
    pre: is_u64(sample)
    post: adaptive_floor_bps <= __return__ <= U64_MAX
    post: sample != 0 or __return__ == adaptive_floor_bps
    """
    if sample == 0:
        return adaptive_floor_bps
    return raised_floor(config, adaptive_floor_bps, sample)


# --- the task lifecycle (spec FC-1 to FC-5) --------------------------------------------------


def enqueue(config: Config, state: ControllerState, est_bytes: int, now_ns: int) -> TaskStep:
    """
    Return the controller with a new task of ``est_bytes`` enqueued at ``now_ns`` (FC-1).

    Raises TypeError or ValueError for a bad estimate (ERR-3) and DebtOverflowError when
    the debt would exceed u64::MAX (ERR-2).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(est_bytes) and state.debt_bytes + est_bytes <= U64_MAX
    pre: now_ns >= 0 and (state.idle_since is None or now_ns >= state.idle_since)
    post: __return__.state.debt_bytes == state.debt_bytes + est_bytes
    post: state_in_domain(config, __return__.state)
    post: __return__.task == TaskState(enqueue_at=now_ns, est_bytes=est_bytes)
    post: __return__.state.idle_since is None
    post: __return__.state.adaptive_floor_bps in (state.adaptive_floor_bps, config.bp_floor_bps)
    post: idle_expired(config, state, now_ns) or __return__.state.io_bps_ewma == state.io_bps_ewma
    post: not idle_expired(config, state, now_ns) or __return__.state.io_sample_count == 0
    post: __return__.state.next_flush_at == state.next_flush_at
    """
    check_u64("est_bytes", est_bytes)
    debt = checked_debt(state.debt_bytes + est_bytes)
    if idle_expired(config, state, now_ns):
        state = forget_throughput(config, state)
    state = dataclasses.replace(state, debt_bytes=debt, idle_since=None)
    return TaskStep(state=state, task=TaskState(enqueue_at=now_ns, est_bytes=est_bytes))


def io_built(
    config: Config,
    state: ControllerState,
    task: TaskState,
    nbytes: int,
    elapsed_ns: int,
) -> TaskStep:
    """
    Return the controller and task after the task's I/O wrote ``nbytes`` in ``elapsed_ns``.

    Spec FC-2: the task's charge moves from its estimate to ``nbytes``; a non-empty write
    with a non-zero duration is an I/O throughput sample. Raises TaskStateError for a
    finished task or a second report (ERR-1), DebtOverflowError (ERR-2), TypeError or
    ValueError for bad arguments (ERR-3).

    pre: satisfies_guarantees(config) and state_in_domain(config, state) and task_in_domain(task)
    pre: is_u64(nbytes) and 0 <= elapsed_ns < ELAPSED_NS_LIMIT
    pre: outstanding_charge(task) <= state.debt_bytes
    pre: nbytes <= task.est_bytes or state.debt_bytes + (nbytes - task.est_bytes) <= U64_MAX
    post: __return__.state.debt_bytes == state.debt_bytes - task.est_bytes + nbytes
    post: outstanding_charge(__return__.task) == nbytes
    post: __return__.task.outcome is Outcome.FLUSHED and __return__.task.io_reported
    post: state_in_domain(config, __return__.state) and task_in_domain(__return__.task)
    post: __return__.state.adaptive_floor_bps >= state.adaptive_floor_bps
    post: __return__.state.io_sample_count - state.io_sample_count in (0, 1)
    post: __return__.state.e2e_bps_ewma == state.e2e_bps_ewma
    post: __return__.state.idle_since == state.idle_since
    post: __return__.state.next_flush_at == state.next_flush_at
    raises: TaskStateError
    """
    check_u64("nbytes", nbytes)
    check_elapsed(elapsed_ns)
    check_live(task, "io_built")
    if task.io_reported:
        raise TaskStateError("io_built reported twice for one task")
    est = task.est_bytes
    if nbytes > est:
        debt = checked_debt(state.debt_bytes + (nbytes - est))
    else:
        debt = saturating_sub(state.debt_bytes, est - nbytes)
    state = dataclasses.replace(state, debt_bytes=debt)
    io_micros = duration_micros(elapsed_ns)
    if nbytes != 0 and io_micros != 0:
        state = with_io_sample(config, state, rate_per_second(nbytes, io_micros))
    task = dataclasses.replace(
        task,
        actual_bytes=nbytes,
        io_micros=io_micros,
        outcome=Outcome.FLUSHED,
        io_reported=True,
    )
    return TaskStep(state=state, task=task)


def mark_outcome(task: TaskState, outcome: Outcome) -> TaskState:
    """
    Return ``task`` marked with ``outcome`` (spec FC-3).

    Raises TaskStateError for a finished task (ERR-1), TypeError for a non-outcome (ERR-3).

    post: __return__.outcome == outcome
    post: outstanding_charge(__return__) == outstanding_charge(task)
    post: same_except(__return__, task, "outcome")
    raises: TaskStateError
    """
    if not isinstance(outcome, Outcome):
        raise TypeError(f"outcome must be an Outcome, got {outcome!r}")
    check_live(task, "mark_outcome")
    return dataclasses.replace(task, outcome=outcome)


def force_bypass(task: TaskState) -> TaskState:
    """
    Return ``task`` marked to bypass flush pacing (spec FC-4).

    Raises TaskStateError for a finished task (ERR-1).

    post: __return__.force_bypass
    post: same_except(__return__, task, "force_bypass")
    raises: TaskStateError
    """
    check_live(task, "force_bypass")
    return dataclasses.replace(task, force_bypass=True)


def mark_done(config: Config, state: ControllerState, task: TaskState, now_ns: int) -> TaskStep:
    """
    Return the controller and task after the task finished at ``now_ns`` (spec FC-5).

    The task's outstanding charge is settled; a debt left at zero marks the controller idle
    (FC-12); a flushed task with a non-zero charge and duration is an end-to-end sample.
    Raises TaskStateError for a finished task (ERR-1).

    pre: satisfies_guarantees(config) and state_in_domain(config, state) and task_in_domain(task)
    pre: now_ns >= task.enqueue_at
    pre: outstanding_charge(task) <= state.debt_bytes
    post: __return__.state.debt_bytes == state.debt_bytes - outstanding_charge(task)
    post: __return__.task.done
    post: same_except(__return__.task, task, "done")
    post: state_in_domain(config, __return__.state)
    post: __return__.state.debt_bytes != 0 or __return__.state.next_flush_at is None
    post: __return__.state.debt_bytes != 0 or __return__.state.idle_since is not None
    post: __return__.state.adaptive_floor_bps >= state.adaptive_floor_bps
    post: task.outcome is Outcome.FLUSHED or __return__.state.e2e_bps_ewma == state.e2e_bps_ewma
    post: __return__.state.io_bps_ewma == state.io_bps_ewma
    post: __return__.state.io_sample_count == state.io_sample_count
    raises: TaskStateError
    """
    check_live(task, "mark_done")
    settle = outstanding_charge(task)
    debt = saturating_sub(state.debt_bytes, settle)
    state = dataclasses.replace(state, debt_bytes=debt)
    if debt == 0:
        state = mark_idle(state, now_ns)
    if task.outcome is Outcome.FLUSHED and settle != 0:
        e2e_micros = duration_micros(now_ns - task.enqueue_at)
        if e2e_micros != 0:
            state = with_e2e_sample(config, state, rate_per_second(settle, e2e_micros))
    return TaskStep(state=state, task=dataclasses.replace(task, done=True))


# --- foreground backpressure (spec FC-6 to FC-8) ---------------------------------------------
#
# The delay is built from small steps, each with its own contract, so that each proof is one
# CrossHair can finish (spec "Proof structure", LEM-1 to LEM-9): the debt in milli-units
# (AR-2), the regime that debt falls in (`regime_at`, linear in the debt), and the throttled
# arithmetic (`throttle_ratio_pct`, `share_of`, `rate_per_second`, `capped_delay`), whose
# divisions by symbolic values are the nonlinear part. The functions marked
# ``crosshair: specs_complete`` are, for their callers' proofs, exactly their contracts: a
# caller's proof assumes them, and each is proven on its own.


def foreground_regime(config: Config, state: ControllerState, write_bytes: int) -> ForegroundRegime:
    """
    Return the rule that decides the delay of a ``write_bytes`` foreground write (FC-6).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(write_bytes)
    post: __return__ is not ForegroundRegime.NO_THROUGHPUT
    post: (__return__ in ZERO_DELAY_REGIMES) != may_delay(config, state, write_bytes)
    post: (__return__ is ForegroundRegime.STOP) == at_stop(config, state, write_bytes)
    post: __return__ is not ForegroundRegime.COLD_THROTTLED or not cold_start_ready(config, state)
    """
    debt_mu = debt_milli_units(config, state.debt_bytes)
    ready = cold_start_ready(config, state)
    return regime_at(config, ready, write_bytes, debt_mu, base_throughput(config, state))


def regime_at(
    config: Config, ready: bool, write_bytes: int, debt_mu: int, base_bps: int
) -> ForegroundRegime:
    """
    Return the FC-6 rule for a write when the debt is ``debt_mu`` milli-units (LEM-6).

    ``ready`` is whether the controller left cold start (AR-4) and ``base_bps`` its base
    throughput. The zero-delay rules are tried in the seed's order; the first that applies
    decides. A debt is zero exactly when its milli-units are (AR-2), so rule 3 reads the
    milli-units: the regime is a function of ``debt_mu``, the state's other fields fixed.

    pre: satisfies_guarantees(config)
    pre: is_u64(write_bytes) and is_u64(debt_mu) and 1 <= base_bps <= U64_MAX
    post: __return__ is not ForegroundRegime.NO_THROUGHPUT
    post: (__return__ in ZERO_DELAY_REGIMES) != may_delay_at(config, ready, write_bytes, debt_mu)
    post: (__return__ is ForegroundRegime.STOP) == at_stop_at(config, ready, write_bytes, debt_mu)
    post: __return__ is not ForegroundRegime.COLD_THROTTLED or not ready
    post: __return__ not in THROTTLED_REGIMES or debt_mu >= 1
    """
    if not config.enable_backpressure:
        return ForegroundRegime.DISABLED
    if write_bytes == 0:
        return ForegroundRegime.EMPTY_WRITE
    if debt_mu == 0:
        return ForegroundRegime.NO_DEBT
    cold_start = not ready
    # Cold start throttles *at* its threshold, steady state only *above* soft: the seed's
    # `<` and `<=` differ on purpose and the spec keeps both.
    if cold_start and debt_mu < threshold_milli_units(config.bp_cold_start_fail_safe_units):
        return ForegroundRegime.COLD_BELOW_FAIL_SAFE
    if not cold_start and debt_mu <= threshold_milli_units(config.bp_soft_debt_units):
        return ForegroundRegime.STEADY_BELOW_SOFT
    if base_bps == 0:
        return ForegroundRegime.NO_THROUGHPUT
    if debt_mu >= threshold_milli_units(config.bp_stop_debt_units):
        return ForegroundRegime.STOP
    if cold_start:
        return ForegroundRegime.COLD_THROTTLED
    if debt_mu >= threshold_milli_units(config.bp_hard_debt_units):
        return ForegroundRegime.HARD_ZONE
    return ForegroundRegime.SOFT_ZONE


def base_throughput(config: Config, state: ControllerState) -> int:
    """
    Return the throughput delays are computed from: the floor cold, the disk rate warm.

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    post: (__return__ >= 1) & (__return__ <= U64_MAX)
    """
    # crosshair: on specs_complete=True
    if cold_start_ready(config, state):
        return disk_bps(config, state)
    return effective_floor_bps(config, state)


def base_milli_units(config: Config, state: ControllerState) -> int:
    """
    Return the threshold the throttle ratio is taken against: fail-safe cold, soft warm (FC-7).

    pre: satisfies_guarantees(config)
    post: (1_000 <= __return__) & (__return__ <= U32_MAX * 1_000)
    """
    # crosshair: on specs_complete=True
    if cold_start_ready(config, state):
        return threshold_milli_units(config.bp_soft_debt_units)
    return threshold_milli_units(config.bp_cold_start_fail_safe_units)


def throttle_ratio_pct(base_mu: int, debt_mu: int, min_ratio_pct: int) -> int:
    """
    Return the share, in percent, of the base throughput a throttled write keeps (FC-7, LEM-2).

    It shrinks as the debt grows past the base threshold, never below ``min_ratio_pct``.

    pre: 0 <= base_mu <= U64_MAX and 1 <= debt_mu <= U64_MAX
    pre: 1 <= min_ratio_pct <= 100
    post: (min_ratio_pct <= __return__) & (__return__ <= 100)
    """
    # crosshair: on specs_complete=True
    ratio_pct = min(base_mu * 100 // debt_mu, 100)
    return min(max(ratio_pct, min_ratio_pct), 100)


def share_of(bps: int, pct: int) -> int:
    """
    Return ``pct`` percent of ``bps``, at least 1 byte/s (FC-7, LEM-3).

    pre: 0 <= bps <= U64_MAX and 0 <= pct <= 100
    post: (1 <= __return__) & ((__return__ <= bps) | (__return__ == 1))
    """
    # crosshair: on specs_complete=True
    return max(saturating_mul(bps, pct) // 100, 1)


def target_throughput(config: Config, state: ControllerState, ratio_pct: int) -> int:
    """
    Return the throughput a throttled write is paced at: its share, then the guard (FC-7, AR-5).

    The publish guard applies in steady state only.

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: 1 <= ratio_pct <= 100
    post: (1 <= __return__) & (__return__ <= U64_MAX)
    """
    # crosshair: on specs_complete=True
    target_bps = share_of(base_throughput(config, state), ratio_pct)
    if cold_start_ready(config, state):
        target_bps = share_of(target_bps, publish_guard_ratio_pct(config, state))
    return target_bps


def capped_delay(config: Config, raw_delay_us: int, debt_mu: int) -> int:
    """
    Return a throttled delay doubled at or above hard, then capped at the maximum (FC-7, LEM-5).

    pre: satisfies_guarantees(config)
    pre: is_u64(raw_delay_us) and is_u64(debt_mu)
    post: 0 <= __return__ <= config.bp_max_delay_us
    post: __return__ >= min(raw_delay_us, config.bp_max_delay_us)
    """
    delay = raw_delay_us
    if debt_mu >= threshold_milli_units(config.bp_hard_debt_units):
        delay = saturating_mul(delay, 2)
    return min(delay, config.bp_max_delay_us)


def throttled_delay_at(
    config: Config, state: ControllerState, write_bytes: int, debt_mu: int
) -> int:
    """
    Return the delay of a throttled write when the debt is ``debt_mu`` milli-units (FC-7).

    The write is paced at a share of the base throughput that shrinks as the debt grows past
    the base threshold, never below ``bp_min_ratio_pct``; in steady state the publish guard
    scales it further; at or above hard the delay doubles; it never exceeds the maximum.

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(write_bytes) and 1 <= debt_mu <= U64_MAX
    post: (0 <= __return__) & (__return__ <= config.bp_max_delay_us)
    """
    # crosshair: on specs_complete=True
    ratio_pct = throttle_ratio_pct(
        base_milli_units(config, state), debt_mu, config.bp_min_ratio_pct
    )
    target_bps = target_throughput(config, state, ratio_pct)
    return capped_delay(config, rate_per_second(write_bytes, target_bps), debt_mu)


def throttled_delay_us(config: Config, state: ControllerState, write_bytes: int) -> int:
    """
    Return the delay of a throttled write below the stop threshold (spec FC-7).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(write_bytes)
    pre: state.debt_bytes >= 1
    post: 0 <= __return__ <= config.bp_max_delay_us
    """
    return throttled_delay_at(
        config, state, write_bytes, debt_milli_units(config, state.debt_bytes)
    )


def delay_in_regime(config: Config, regime: ForegroundRegime, throttled_us: int) -> int:
    """
    Return the delay FC-6 gives ``regime``, ``throttled_us`` being FC-7's delay (FC-8, LEM-6).

    pre: 0 <= throttled_us <= config.bp_max_delay_us
    post: 0 <= __return__ <= config.bp_max_delay_us
    post: (__return__ == 0) or (regime not in ZERO_DELAY_REGIMES)
    post: regime is not ForegroundRegime.STOP or __return__ == config.bp_max_delay_us
    post: regime not in THROTTLED_REGIMES or __return__ == throttled_us
    """
    # crosshair: on specs_complete=True
    if regime is ForegroundRegime.STOP:
        return config.bp_max_delay_us
    if regime in THROTTLED_REGIMES:
        return throttled_us
    return 0


def delay_at(  # noqa: PLR0913, PLR0917  # the state's three inputs to the delay, and the write's
    config: Config, ready: bool, base_bps: int, nbytes: int, debt_mu: int, throttled_us: int
) -> int:
    """
    Return the delay of an ``nbytes`` foreground write when the debt is ``debt_mu`` milli-units.

    Spec FC-6 to FC-8 and INV-2 to INV-4, stated on the debt in milli-units as the spec
    states them: ``ready`` and ``base_bps`` are the state's readiness (AR-4) and base
    throughput, ``throttled_us`` FC-7's delay at this debt, which only a throttled regime uses.

    pre: satisfies_guarantees(config)
    pre: is_u64(nbytes) and is_u64(debt_mu) and 1 <= base_bps <= U64_MAX
    pre: 0 <= throttled_us <= config.bp_max_delay_us
    post: (0 <= __return__) & (__return__ <= config.bp_max_delay_us)
    post: may_delay_at(config, ready, nbytes, debt_mu) or __return__ == 0
    post: not at_stop_at(config, ready, nbytes, debt_mu) or __return__ == config.bp_max_delay_us
    post: not throttles_at(config, ready, nbytes, debt_mu) or __return__ == throttled_us
    """
    # crosshair: on specs_complete=True
    regime = regime_at(config, ready, nbytes, debt_mu, base_bps)
    return delay_in_regime(config, regime, throttled_us)


def foreground_delay_us(config: Config, state: ControllerState, write_bytes: int) -> int:
    """
    Return the microseconds a ``write_bytes`` foreground write waits (spec FC-6 to FC-8).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(write_bytes)
    post: 0 <= __return__ <= config.bp_max_delay_us
    post: may_delay(config, state, write_bytes) or __return__ == 0
    post: not at_stop(config, state, write_bytes) or __return__ == config.bp_max_delay_us
    """
    debt_mu = debt_milli_units(config, state.debt_bytes)
    # FC-7's delay is computed wherever it is defined (a non-zero debt) and used only in a
    # throttled regime: the regime choice and the arithmetic stay apart (LEM-6, LEM-7).
    throttled_us = throttled_delay_at(config, state, write_bytes, debt_mu) if debt_mu >= 1 else 0
    ready = cold_start_ready(config, state)
    base_bps = base_throughput(config, state)
    return delay_at(config, ready, base_bps, write_bytes, debt_mu, throttled_us)


THROTTLED_REGIMES = frozenset(
    {ForegroundRegime.COLD_THROTTLED, ForegroundRegime.SOFT_ZONE, ForegroundRegime.HARD_ZONE}
)
"""Regimes whose delay comes from the throughput formula of FC-7."""


def before_foreground_write(
    config: Config, state: ControllerState, write_bytes: int
) -> ForegroundDecision:
    """
    Return how long a ``write_bytes`` foreground write waits and what it reports (FC-6..8).

    The write changes no state. A non-zero delay is reported after it was slept. Raises
    TypeError or ValueError for a bad size (ERR-3).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    pre: is_u64(write_bytes)
    post: 0 <= __return__.delay_us <= config.bp_max_delay_us
    post: (__return__.regime in ZERO_DELAY_REGIMES) != may_delay(config, state, write_bytes)
    post: (__return__.regime is ForegroundRegime.STOP) == at_stop(config, state, write_bytes)
    post: (__return__.delay_us == 0) == (__return__.emissions == ())
    post: __return__.emissions == () or __return__.emissions[-1].value == __return__.delay_us
    """
    check_u64("write_bytes", write_bytes)
    regime = foreground_regime(config, state, write_bytes)
    delay_us = foreground_delay_us(config, state, write_bytes)
    emissions: tuple[Emission, ...] = ()
    if delay_us != 0:
        emissions = (
            Emission(kind=MetricKind.COUNTER, metric=Metric.FG_DELAY, value=1),
            Emission(kind=MetricKind.HISTOGRAM, metric=Metric.FG_DELAY_MICROS, value=delay_us),
        )
    return ForegroundDecision(regime=regime, delay_us=delay_us, emissions=emissions)


# --- flush pacing (spec FC-9, FC-10) ---------------------------------------------------------


def flush_decision(config: Config, state: ControllerState, task: TaskState) -> FlushDecision:
    """
    Return whether a flush of ``task`` is paced, or why not, in the seed's order (FC-9).

    pre: satisfies_guarantees(config) and state_in_domain(config, state)
    post: config.enable_flush_pacing or __return__ is FlushDecision.PACING_DISABLED
    post: __return__ is not FlushDecision.NO_THROUGHPUT
    post: (__return__ is FlushDecision.PACED) == is_paced(config, state, task)
    """
    if not config.enable_flush_pacing:
        return FlushDecision.PACING_DISABLED
    if task.force_bypass or state.teardown_bypass_scopes != 0:
        return FlushDecision.BYPASS_TEARDOWN
    if state.arena_starving_scopes != 0:
        return FlushDecision.BYPASS_ARENA_STARVATION
    if state.debt_bytes == 0:
        return FlushDecision.NO_DEBT
    if not cold_start_ready(config, state):
        return FlushDecision.COLD_START
    pacing_soft = threshold_milli_units(config.bp_pacing_soft_debt_units)
    if debt_milli_units(config, state.debt_bytes) > pacing_soft:
        return FlushDecision.BYPASS_HIGH_DEBT
    if disk_bps(config, state) == 0:
        return FlushDecision.NO_THROUGHPUT
    return FlushDecision.PACED


BYPASS_METRICS = {
    FlushDecision.BYPASS_TEARDOWN: Metric.FLUSH_PACING_BYPASS_TEARDOWN,
    FlushDecision.BYPASS_ARENA_STARVATION: Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION,
    FlushDecision.BYPASS_HIGH_DEBT: Metric.FLUSH_PACING_BYPASS_HIGH_DEBT,
}
"""The counter each bypass increments (spec FC-9)."""


def pacing_interval_us(config: Config, state: ControllerState, task: TaskState) -> int:
    """
    Return how long a paced flush of ``task`` holds back the next one, in µs (spec FC-10).

    pre: satisfies_guarantees(config) and state_in_domain(config, state) and task_in_domain(task)
    pre: cold_start_ready(config, state)
    post: 1 <= __return__ <= config.bp_max_delay_us
    """
    return interval_for(config, task.est_bytes, disk_bps(config, state))


def interval_for(config: Config, est_bytes: int, disk_rate_bps: int) -> int:
    """
    Return the pacing interval of an ``est_bytes`` flush at ``disk_rate_bps`` (FC-10, LEM-8).

    A zero-byte task counts as one byte; the interval is at least 1 µs and at most the maximum.

    pre: satisfies_guarantees(config)
    pre: is_u64(est_bytes) and 1 <= disk_rate_bps <= U64_MAX
    post: 1 <= __return__ <= config.bp_max_delay_us
    """
    nbytes = max(est_bytes, 1)
    return max(min(rate_per_second(nbytes, disk_rate_bps), config.bp_max_delay_us), 1)


def pacing_sleep_ns(config: Config, deadline: int | None, now_ns: int) -> int:
    """
    Return how long a paced flush asking at ``now_ns`` sleeps before ``deadline`` (FC-10).

    Until the deadline, at most the maximum delay; no deadline, or one passed, is no sleep.

    pre: satisfies_guarantees(config)
    pre: now_ns >= 0 and is_time(deadline)
    post: 0 <= __return__ <= config.bp_max_delay_us * NANOS_PER_MICRO
    post: deadline is None or __return__ <= max(deadline - now_ns, 0)
    post: deadline is not None or __return__ == 0
    """
    if deadline is not None and deadline > now_ns:
        return min(deadline - now_ns, config.bp_max_delay_us * NANOS_PER_MICRO)
    return 0


def plan_flush(config: Config, state: ControllerState, task: TaskState, now_ns: int) -> FlushPlan:
    """
    Return what a flush of ``task`` starting at ``now_ns`` does before it may run (FC-9, FC-10).

    A paced flush sleeps until the pacing deadline, at most the maximum delay; the first
    paced flush after idle never sleeps. Raises TaskStateError for a finished task (ERR-1).

    pre: satisfies_guarantees(config) and state_in_domain(config, state) and task_in_domain(task)
    pre: now_ns >= 0
    post: 0 <= __return__.sleep_ns <= config.bp_max_delay_us * NANOS_PER_MICRO
    post: __return__.decision is FlushDecision.PACED or __return__.sleep_ns == 0
    post: __return__.decision is FlushDecision.PACED or __return__.interval_us == 0
    post: __return__.decision is not FlushDecision.PACED or __return__.interval_us >= 1
    post: __return__.interval_us <= config.bp_max_delay_us
    post: state.next_flush_at is None or __return__.sleep_ns <= max(state.next_flush_at - now_ns, 0)
    post: state.next_flush_at is not None or __return__.sleep_ns == 0
    post: (__return__.sleep_ns != 0) == (len(__return__.emissions) == 2)
    post: __return__.decision is flush_decision(config, state, task)
    raises: TaskStateError
    """
    check_live(task, "before_flush")
    decision = flush_decision(config, state, task)
    if decision in BYPASS_METRICS:
        counter = Emission(kind=MetricKind.COUNTER, metric=BYPASS_METRICS[decision], value=1)
        return FlushPlan(decision=decision, emissions=(counter,))
    if decision is not FlushDecision.PACED:
        return FlushPlan(decision=decision)
    sleep_ns = pacing_sleep_ns(config, state.next_flush_at, now_ns)
    emissions: tuple[Emission, ...] = ()
    if sleep_ns != 0:
        slept_us = duration_micros(sleep_ns)
        emissions = (
            Emission(kind=MetricKind.COUNTER, metric=Metric.FLUSH_PACING_SLEEP, value=1),
            Emission(
                kind=MetricKind.HISTOGRAM, metric=Metric.FLUSH_PACING_SLEEP_MICROS, value=slept_us
            ),
        )
    return FlushPlan(
        decision=decision,
        interval_us=pacing_interval_us(config, state, task),
        sleep_ns=sleep_ns,
        emissions=emissions,
    )


def commit_flush(state: ControllerState, plan: FlushPlan, now_ns: int) -> ControllerState:
    """
    Return the controller once a planned flush may start at ``now_ns`` (spec FC-10).

    A paced flush pushes the deadline one interval past the later of the current deadline and
    now; any other plan changes nothing. The deadline is read here, at commit time.

    pre: now_ns >= 0 and is_time(state.next_flush_at)
    pre: plan.interval_us >= 0
    post: plan.decision is FlushDecision.PACED or __return__ == state
    post: same_except(__return__, state, "next_flush_at")
    post: plan.decision is not FlushDecision.PACED or __return__.next_flush_at is not None
    post: __return__ == state or __return__.next_flush_at >= now_ns + plan.interval_us * 1000
    post: state.next_flush_at is None or __return__.next_flush_at >= state.next_flush_at
    """
    if plan.decision is not FlushDecision.PACED:
        return state
    base = now_ns if state.next_flush_at is None else max(state.next_flush_at, now_ns)
    return dataclasses.replace(state, next_flush_at=base + plan.interval_us * NANOS_PER_MICRO)


# --- bypass scopes (spec FC-11) --------------------------------------------------------------


def enter_teardown(state: ControllerState) -> ControllerState:
    """
    Return ``state`` with one more teardown scope open (spec FC-11).

    pre: 0 <= state.teardown_bypass_scopes < U64_MAX
    post: __return__.teardown_bypass_scopes == state.teardown_bypass_scopes + 1
    post: same_except(__return__, state, "teardown_bypass_scopes")
    """
    return dataclasses.replace(
        state, teardown_bypass_scopes=checked_scope(state.teardown_bypass_scopes + 1)
    )


def leave_teardown(state: ControllerState) -> ControllerState:
    """
    Return ``state`` with one teardown scope fewer; none open stays none (spec FC-11).

    pre: is_u64(state.teardown_bypass_scopes)
    post: __return__.teardown_bypass_scopes == max(state.teardown_bypass_scopes - 1, 0)
    post: same_except(__return__, state, "teardown_bypass_scopes")
    """
    return dataclasses.replace(
        state, teardown_bypass_scopes=saturating_sub(state.teardown_bypass_scopes, 1)
    )


def enter_starving(state: ControllerState) -> ControllerState:
    """
    Return ``state`` with one more arena-starvation scope open (spec FC-11).

    pre: 0 <= state.arena_starving_scopes < U64_MAX
    post: __return__.arena_starving_scopes == state.arena_starving_scopes + 1
    post: same_except(__return__, state, "arena_starving_scopes")
    """
    return dataclasses.replace(
        state, arena_starving_scopes=checked_scope(state.arena_starving_scopes + 1)
    )


def leave_starving(state: ControllerState) -> ControllerState:
    """
    Return ``state`` with one arena-starvation scope fewer; none open stays none (FC-11).

    pre: is_u64(state.arena_starving_scopes)
    post: __return__.arena_starving_scopes == max(state.arena_starving_scopes - 1, 0)
    post: same_except(__return__, state, "arena_starving_scopes")
    """
    return dataclasses.replace(
        state, arena_starving_scopes=saturating_sub(state.arena_starving_scopes, 1)
    )


def checked_scope(count: int) -> int:
    """
    Return ``count`` unless it exceeds ``u64::MAX``; then raise (spec ERR-2, DIV-3).

    pre: count >= 0
    post: __return__ == count <= U64_MAX
    raises: DebtOverflowError
    """
    if count > U64_MAX:
        raise DebtOverflowError(f"scope count would exceed u64::MAX ({count})")
    return clamp_u64(count)
