"""The seed's own unit tests (the 12 at the bottom of flow.rs), as tests of the reference model.

Every scenario keeps the seed's options and numbers. Time is explicit: where the seed measured
a wall-clock sleep (``start.elapsed() >= 15ms``), the test asserts on the delay or sleep the
model returns, which the seed would have slept; where the seed slept to let the idle-reset
interval pass, the test advances ``now_ns``. The seed's ``prime_io_sample`` runs at one instant
(its enqueue, I/O report and done are microseconds apart), so here it takes no time at all,
which means it takes an I/O sample but no end-to-end sample.

Expected numbers come from the seed's assertions, made exact by hand from the seed's formulas;
each derivation is written next to the assertion.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowpace_reference import transitions as model
from flowpace_reference.config import normalise, options_from_mapping
from flowpace_reference.types import (
    Config,
    ControllerState,
    Emission,
    FlushDecision,
    FlushPlan,
    ForegroundRegime,
    Metric,
    MetricKind,
    Outcome,
    TaskState,
)

T0 = 1_000_000_000
"""When each scenario's controller is built: 1 s, an arbitrary non-zero instant."""

MS = 1_000_000
"""One millisecond in nanoseconds."""


def make_flow(**options: int) -> Config:
    """Return the seed's ``make_flow`` configuration: both features on, then the test's options."""
    return normalise(
        options_from_mapping({"enable_backpressure": True, "enable_flush_pacing": True, **options})
    )


@dataclass
class Flow:
    """A model controller and its clock, threaded through a scenario like the seed's object."""

    config: Config
    state: ControllerState
    now_ns: int = T0

    def enqueue(self, est_bytes: int) -> TaskState:
        """Enqueue a task now; return it."""
        step = model.enqueue(self.config, self.state, est_bytes, self.now_ns)
        self.state = step.state
        return step.task

    def io_built(self, task: TaskState, nbytes: int, elapsed_ns: int) -> TaskState:
        """Report the task's I/O; return the task after it."""
        step = model.io_built(self.config, self.state, task, nbytes, elapsed_ns)
        self.state = step.state
        return step.task

    def mark_done(self, task: TaskState) -> TaskState:
        """Finish the task now; return it."""
        step = model.mark_done(self.config, self.state, task, self.now_ns)
        self.state = step.state
        return step.task

    def before_flush(self, task: TaskState) -> FlushPlan:
        """Plan the task's flush now, sleep on the virtual clock, commit; return the plan."""
        plan = model.plan_flush(self.config, self.state, task, self.now_ns)
        self.now_ns += plan.sleep_ns
        self.state = model.commit_flush(self.state, plan, self.now_ns)
        return plan

    def prime_io_sample(self, nbytes: int, micros: int) -> None:
        """Run the seed's ``prime_io_sample``: one task written and done at one instant."""
        task = self.enqueue(nbytes)
        task = self.io_built(task, nbytes, micros * 1_000)
        self.mark_done(task)


def new_flow(config: Config) -> Flow:
    """Return a fresh controller built at `T0` (spec ST-1)."""
    return Flow(config=config, state=model.new_controller(config, T0))


def counter(metric: Metric) -> Emission:
    """Return a counter increment of one."""
    return Emission(kind=MetricKind.COUNTER, metric=metric, value=1)


def histogram(metric: Metric, value: int) -> Emission:
    """Return a histogram sample."""
    return Emission(kind=MetricKind.HISTOGRAM, metric=metric, value=value)


def test_foreground_backpressure_skips_cold_start_before_fail_safe_backlog() -> None:
    """Spec FC-6 rule 4, INV-3: cold start below the fail-safe does not delay."""
    flow = new_flow(
        make_flow(
            bp_floor_bps=1_000_000,
            bp_flush_unit_bytes=1_000,
            bp_soft_debt_units=2,
            bp_hard_debt_units=6,
            bp_stop_debt_units=12,
            bp_cold_start_fail_safe_units=4,
            bp_max_delay_us=20_000,
        )
    )
    flow.enqueue(3_000)

    decision = model.before_foreground_write(flow.config, flow.state, 1)

    # The seed: elapsed < 5 ms. Exactly: no I/O sample yet (0 < warmup 4), so cold start;
    # debt_mu = 3_000 * 1_000 // 1_000 = 3_000 < cold_mu = 4 * 1_000: no delay, no emission.
    assert decision.regime is ForegroundRegime.COLD_BELOW_FAIL_SAFE
    assert decision.delay_us == 0
    assert decision.emissions == ()


def test_foreground_backpressure_sleeps_when_steady_state_debt_exceeds_stop() -> None:
    """Spec FC-6 rule 7, FC-8, INV-4: steady-state debt at or above stop delays the maximum."""
    flow = new_flow(
        make_flow(
            bp_floor_bps=1_000_000,
            bp_flush_unit_bytes=1_000,
            bp_soft_debt_units=1,
            bp_hard_debt_units=2,
            bp_stop_debt_units=3,
            bp_warmup_min_samples=1,
            bp_publish_guard_min_ratio_pct=100,
            bp_max_delay_us=20_000,
        )
    )
    flow.prime_io_sample(1_000, 1_000)
    flow.enqueue(10_000)

    decision = model.before_foreground_write(flow.config, flow.state, 1)

    # The seed: elapsed >= 15 000 µs. Exactly: one sample (>= warmup 1), steady state;
    # debt_mu = 10_000 * 1_000 // 1_000 = 10_000 >= stop_mu = 3_000, so the delay is the
    # maximum, 20 000 µs, reported after the sleep.
    assert decision.regime is ForegroundRegime.STOP
    assert decision.delay_us >= 15_000
    assert decision.delay_us == 20_000
    assert decision.emissions == (
        counter(Metric.FG_DELAY),
        histogram(Metric.FG_DELAY_MICROS, 20_000),
    )


def pacing_config(**options: int) -> Config:
    """Return the options the seed's pacing tests share, with the test's thresholds."""
    return make_flow(
        bp_floor_bps=1_000_000,
        bp_pacing_soft_debt_units=1,
        bp_warmup_min_samples=1,
        bp_max_delay_us=50_000,
        **options,
    )


def test_flush_pacing_sleeps_under_low_debt() -> None:
    """Spec FC-9 rule 8, FC-10: the second low-debt flush sleeps until the deadline."""
    flow = new_flow(
        pacing_config(
            bp_flush_unit_bytes=1_000_000,
            bp_soft_debt_units=1,
            bp_hard_debt_units=2,
            bp_stop_debt_units=3,
        )
    )
    # One sample of 10 000 bytes in 10 000 µs: 10_000 * 1_000_000 // 10_000 = 1 000 000 B/s.
    flow.prime_io_sample(10_000, 10_000)
    t1 = flow.enqueue(10_000)
    t2 = flow.enqueue(10_000)
    start = flow.now_ns

    first = flow.before_flush(t1)
    second = flow.before_flush(t2)

    # debt_mu = 20_000 * 1_000 // 1_000_000 = 20 <= pacing_mu = 1_000, warm: paced.
    # interval = 10_000 * 1_000_000 // 1_000_000 = 10 000 µs (below the 50 000 µs maximum).
    # The first flush finds no deadline (the prime's done marked idle) and does not sleep; it
    # sets the deadline to start + 10 ms. The second, at the same instant, sleeps until then.
    assert first.decision is FlushDecision.PACED
    assert (first.sleep_ns, first.interval_us, first.emissions) == (0, 10_000, ())
    assert second.decision is FlushDecision.PACED
    # The seed: elapsed >= 5 000 µs. Exactly: 10 ms, capped at 50 ms.
    assert second.sleep_ns >= 5_000_000
    assert second.sleep_ns == 10 * MS
    assert second.emissions == (
        counter(Metric.FLUSH_PACING_SLEEP),
        histogram(Metric.FLUSH_PACING_SLEEP_MICROS, 10_000),
    )
    # The second commits at start + 10 ms and pushes the deadline one more interval.
    assert flow.now_ns == start + 10 * MS
    assert flow.state.next_flush_at == start + 20 * MS


def test_flush_pacing_bypasses_under_high_debt() -> None:
    """Spec FC-9 rule 6: a debt above the pacing threshold bypasses pacing."""
    flow = new_flow(
        pacing_config(
            bp_flush_unit_bytes=10_000,
            bp_soft_debt_units=1,
            bp_hard_debt_units=2,
            bp_stop_debt_units=3,
        )
    )
    flow.prime_io_sample(10_000, 10_000)
    task = flow.enqueue(20_000)

    plan = flow.before_flush(task)

    # debt_mu = 20_000 * 1_000 // 10_000 = 2_000 > pacing_mu = 1_000: bypass, no deadline.
    assert plan.decision is FlushDecision.BYPASS_HIGH_DEBT
    assert plan.emissions == (counter(Metric.FLUSH_PACING_BYPASS_HIGH_DEBT),)
    assert plan.sleep_ns == 0
    assert flow.state.next_flush_at is None


def test_flush_pacing_bypasses_on_teardown_flag() -> None:
    """Spec FC-4, FC-9 rule 2: a task marked to bypass is not paced."""
    flow = new_flow(
        pacing_config(
            bp_flush_unit_bytes=1_000_000,
            bp_soft_debt_units=10,
            bp_hard_debt_units=20,
            bp_stop_debt_units=40,
        )
    )
    flow.prime_io_sample(10_000, 10_000)
    task = model.force_bypass(flow.enqueue(10_000))

    plan = flow.before_flush(task)

    # Without the flag this flush would be paced: debt_mu = 10 <= pacing_mu = 1_000, warm.
    assert plan.decision is FlushDecision.BYPASS_TEARDOWN
    assert plan.emissions == (counter(Metric.FLUSH_PACING_BYPASS_TEARDOWN),)
    assert flow.state.next_flush_at is None


def test_idle_reset_clears_stale_samples() -> None:
    """Spec FC-1, FC-12, AR-7: an enqueue after the idle-reset interval forgets throughput."""
    config = make_flow(
        bp_floor_bps=1_000_000,
        bp_flush_unit_bytes=1_000_000,
        bp_soft_debt_units=10,
        bp_hard_debt_units=20,
        bp_stop_debt_units=40,
        bp_idle_reset_ms=1,
    )
    flow = new_flow(config)
    task = flow.enqueue(20_000)
    task = flow.io_built(task, 20_000, 1 * MS)
    flow.mark_done(task)

    # The seed: io or e2e EWMA > 0. Exactly: the sample is 20_000 * 1_000_000 // 1_000 =
    # 20 000 000 B/s, the first, so the EWMA takes it whole; it raises the adaptive floor to
    # max(20_000_000 // 8, 1_000_000) = 2 500 000. The done, at the same instant, takes no
    # end-to-end sample (0 µs since enqueue) and marks the controller idle.
    assert flow.state.io_bps_ewma > 0 or flow.state.e2e_bps_ewma > 0
    assert flow.state.io_bps_ewma == 20_000_000
    assert flow.state.io_sample_count == 1
    assert flow.state.adaptive_floor_bps == 2_500_000
    assert flow.state.idle_since == T0

    # The seed sleeps 5 ms; here the clock moves 5 ms, past the 1 ms idle-reset interval.
    flow.now_ns += 5 * MS
    flow.enqueue(1)
    after = flow.state

    assert after.io_bps_ewma == 0
    assert after.e2e_bps_ewma == 0
    assert after.io_sample_count == 0
    assert after.adaptive_floor_bps == config.bp_floor_bps == 1_000_000
    assert after.idle_since is None
    assert after.debt_bytes == 1


def test_debt_reconciles_when_actual_exceeds_estimate() -> None:
    """Spec FC-1, FC-2, FC-5, AR-8: a larger actual size adds the difference, done settles it."""
    flow = new_flow(make_flow(bp_floor_bps=1_000_000))

    task = flow.enqueue(64)
    assert flow.state.debt_bytes == 64

    task = flow.io_built(task, 96, 10_000)
    assert flow.state.debt_bytes == 96

    flow.mark_done(task)
    assert flow.state.debt_bytes == 0


def test_debt_reconciles_when_actual_below_estimate() -> None:
    """Spec FC-1, FC-2, FC-5, AR-8: a smaller actual size settles the difference at once."""
    flow = new_flow(make_flow(bp_floor_bps=1_000_000))

    task = flow.enqueue(128)
    assert flow.state.debt_bytes == 128

    task = flow.io_built(task, 32, 10_000)
    assert flow.state.debt_bytes == 32

    flow.mark_done(task)
    assert flow.state.debt_bytes == 0


def test_metadata_only_mark_done_settles_once_without_ewma_sample() -> None:
    """Spec FC-3, FC-5: a task that never wrote settles its estimate and takes no sample."""
    flow = new_flow(make_flow(bp_floor_bps=1_000_000))

    task = flow.enqueue(128)
    assert flow.state.debt_bytes == 128

    task = model.mark_outcome(task, Outcome.META_ONLY)
    # Time passes before done, so a flushed task would take an end-to-end sample here.
    flow.now_ns += 1 * MS
    flow.mark_done(task)

    assert flow.state.debt_bytes == 0
    assert flow.state.io_bps_ewma == 0
    assert flow.state.e2e_bps_ewma == 0


def test_teardown_scope_bypasses_pacing_for_normal_tasks() -> None:
    """Spec FC-11, FC-9 rule 2: an open teardown scope bypasses pacing for any task."""
    flow = new_flow(
        pacing_config(
            bp_flush_unit_bytes=1_000_000,
            bp_soft_debt_units=10,
            bp_hard_debt_units=12,
            bp_stop_debt_units=15,
        )
    )
    flow.prime_io_sample(10_000, 10_000)
    task = flow.enqueue(10_000)
    flow.state = model.enter_teardown(flow.state)
    plan = flow.before_flush(task)
    flow.state = model.leave_teardown(flow.state)

    assert not task.force_bypass
    assert plan.decision is FlushDecision.BYPASS_TEARDOWN
    assert plan.emissions == (counter(Metric.FLUSH_PACING_BYPASS_TEARDOWN),)
    assert flow.state.teardown_bypass_scopes == 0
    assert flow.state.next_flush_at is None


def test_arena_starving_scope_is_reference_counted() -> None:
    """Spec FC-11, FC-9 rule 3, FC-10: pacing resumes only when every starving scope closed."""
    flow = new_flow(
        pacing_config(
            bp_flush_unit_bytes=1_000_000,
            bp_soft_debt_units=10,
            bp_hard_debt_units=12,
            bp_stop_debt_units=15,
        )
    )
    flow.prime_io_sample(10_000, 10_000)
    task = flow.enqueue(10_000)
    flow.state = model.enter_starving(flow.state)
    flow.state = model.enter_starving(flow.state)
    flow.state = model.leave_starving(flow.state)
    plan = flow.before_flush(task)

    assert flow.state.arena_starving_scopes == 1
    assert plan.decision is FlushDecision.BYPASS_ARENA_STARVATION
    assert plan.emissions == (counter(Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION),)
    assert flow.state.next_flush_at is None

    flow.state = model.leave_starving(flow.state)
    start = flow.now_ns
    plan = flow.before_flush(task)

    # Paced: debt_mu = 10_000 * 1_000 // 1_000_000 = 10 <= 1_000, one sample of 1 000 000 B/s;
    # no deadline yet, so no sleep; interval 10_000 * 1_000_000 // 1_000_000 = 10 000 µs.
    assert flow.state.arena_starving_scopes == 0
    assert plan.decision is FlushDecision.PACED
    assert plan.sleep_ns == 0
    assert flow.state.next_flush_at is not None
    assert flow.state.next_flush_at == start + 10 * MS


def test_flush_pacing_uses_dedicated_threshold_instead_of_foreground_soft_limit() -> None:
    """Spec FC-9 rule 6, FC-6 rule 5: pacing has its own threshold, below foreground soft."""
    flow = new_flow(
        pacing_config(
            bp_flush_unit_bytes=10_000,
            bp_soft_debt_units=8,
            bp_hard_debt_units=24,
            bp_stop_debt_units=48,
        )
    )
    flow.prime_io_sample(10_000, 10_000)
    task = flow.enqueue(20_000)
    foreground = model.before_foreground_write(flow.config, flow.state, 1)
    plan = flow.before_flush(task)

    # debt_mu = 20_000 * 1_000 // 10_000 = 2_000: above pacing_mu = 1_000, so the flush
    # bypasses pacing, yet at most soft_mu = 8_000, so foreground writes are not delayed.
    assert plan.decision is FlushDecision.BYPASS_HIGH_DEBT
    assert flow.state.next_flush_at is None
    assert foreground.regime is ForegroundRegime.STEADY_BELOW_SOFT
    assert foreground.delay_us == 0
