"""Observers, and the non-blocking and async variants of the two operations that sleep.

Expected values come from the reference model (delays, plans, commits) or from arithmetic
written out in the test, never from the implementation itself.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from flowpace import FlowController, FlowTask, InMemoryObserver, Metric, NoopObserver
from flowpace.observer import HistogramSummary
from flowpace.testing import ManualClock, RecordingObserver
from flowpace.testing import lock_factory as using_locks
from flowpace_reference import transitions as model
from flowpace_reference.types import Emission, MetricKind
from test_controller_api import PRIMED, RecordingLocks, make_rig

# PRIMED after make_rig: one sample of 1 MB/s (warm), soft 2 units of 1 000 bytes, hard 4,
# stop 8, and a debt of 500 + 600 = 1 100 bytes outstanding (the "live" and "built" tasks).


def pile_debt(ctl: FlowController, nbytes: int) -> None:
    """Enqueue ``nbytes`` of debt that stays outstanding."""
    ctl.on_enqueue_est(nbytes)


def model_delay_us(ctl: FlowController, write_bytes: int) -> int:
    """Return the model's foreground delay for the controller's current state."""
    return model.before_foreground_write(ctl.config, ctl.snapshot(), write_bytes).delay_us


FG_METRICS = [("counter", "FlowFgDelay"), ("histogram", "FlowFgDelayMicros")]


def metric_calls(observer: RecordingObserver) -> list[tuple[str, str, int]]:
    """Return the observer's calls as (kind, metric name, value)."""
    return [(call.kind.value, call.metric.value, call.value) for call in observer.calls]


# --- foreground writes -----------------------------------------------------------------------


def test_a_delayed_write_sleeps_the_models_delay_then_reports_it() -> None:
    # spec FC-7, FC-8: sleep the computed delay, then counter and histogram, in that order.
    rig = make_rig()
    pile_debt(rig.ctl, 2_000)  # 3 100 bytes: above soft, below hard
    expected = model_delay_us(rig.ctl, 700)
    assert expected > 0
    assert rig.ctl.before_foreground_write(700) == expected * 1_000  # ns (HARD-13)
    assert rig.clock.sleeps == (expected * 1_000,)
    assert metric_calls(rig.observer) == [
        ("counter", "FlowFgDelay", 1),
        ("histogram", "FlowFgDelayMicros", expected),
    ]


def test_the_nowait_write_returns_the_delay_in_ns_and_never_sleeps() -> None:
    # spec FC-7, FC-8: the same decision and metrics; the caller does the waiting.
    rig = make_rig()
    pile_debt(rig.ctl, 10_000)  # at stop: the maximum delay
    before = rig.ctl.snapshot()
    assert rig.ctl.before_foreground_write_nowait(700) == 50_000 * 1_000
    assert rig.clock.sleeps == ()
    assert rig.ctl.snapshot() == before
    assert metric_calls(rig.observer) == [
        ("counter", "FlowFgDelay", 1),
        ("histogram", "FlowFgDelayMicros", 50_000),
    ]
    assert rig.ctl.before_foreground_write_nowait(0) == 0  # FC-6: an empty write waits not


def test_the_async_write_awaits_the_delay_then_reports_it() -> None:
    # spec FC-8: the async variant awaits the injected sleep instead of blocking, and the
    # metrics still follow the sleep.
    clock, observer = ManualClock(), RecordingObserver()
    awaited: list[tuple[int, int]] = []

    async def sleep(duration_ns: int) -> None:
        awaited.append((duration_ns, len(observer.calls)))
        await clock.async_sleep_ns(duration_ns)

    ctl = FlowController(PRIMED, clock=clock, observer=observer, async_sleep=sleep)
    ctl.on_enqueue_est(9_000)  # cold start, above the fail-safe (8 units): delayed
    expected = model_delay_us(ctl, 300)
    assert expected > 0
    assert asyncio.run(ctl.before_foreground_write_async(300)) == expected * 1_000  # ns
    assert awaited == [(expected * 1_000, 0)]
    assert clock.monotonic_ns() == expected * 1_000
    assert len(observer.calls) == 2


def test_an_undelayed_write_neither_sleeps_nor_reports() -> None:
    # spec FC-6, INV-3: below soft in steady state: no delay, no sleep, no emission.
    rig = make_rig()
    assert rig.ctl.before_foreground_write(10**9) == 0
    assert asyncio.run(rig.ctl.before_foreground_write_async(10**9)) == 0
    assert rig.clock.sleeps == ()
    assert rig.observer.calls == ()


# --- flushes ---------------------------------------------------------------------------------


def paced_rig() -> tuple[FlowController, ManualClock, RecordingObserver, list[FlowTask]]:
    """Return a warm controller (1 MB/s) whose two live 1 000-byte tasks are paced."""
    clock, observer = ManualClock(), RecordingObserver()
    ctl = FlowController(PRIMED, clock=clock, observer=observer, async_sleep=clock.async_sleep_ns)
    primer = ctl.on_enqueue_est(1_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)
    ctl.on_mark_done(primer)
    tasks = [ctl.on_enqueue_est(1_000), ctl.on_enqueue_est(1_000)]
    return ctl, clock, observer, tasks


def test_nowait_flushes_reserve_their_slots_at_decision_time() -> None:
    # spec FC-10, DIV-6: a non-blocking flush decides as the model's plan at time t and
    # commits as the model's commit at t + sleep; it sleeps nothing itself.
    ctl, clock, observer, tasks = paced_rig()
    config, now = ctl.config, clock.monotonic_ns()
    expected_state = ctl.snapshot()
    waits = []
    for task in tasks:
        plan = model.plan_flush(config, expected_state, task.snapshot(), now)
        expected_state = model.commit_flush(expected_state, plan, now + plan.sleep_ns)
        waits.append(plan.sleep_ns)
        assert ctl.before_flush_nowait(task) == plan.sleep_ns
        assert ctl.snapshot() == expected_state
    assert waits == [0, 1_000_000]  # 1 000 bytes at 1 MB/s: the second waits 1 ms
    assert clock.sleeps == ()
    assert metric_calls(observer) == [
        ("counter", "FlowFlushPacingSleep", 1),
        ("histogram", "FlowFlushPacingSleepMicros", 1_000),
    ]


def test_async_flushes_await_their_slots() -> None:
    # spec FC-10: the async variant reserves as the non-blocking one, then awaits the wait.
    ctl, clock, observer, tasks = paced_rig()

    async def flush_both() -> list[int]:
        return [await ctl.before_flush_async(task) for task in tasks]

    assert asyncio.run(flush_both()) == [0, 1_000_000]  # ns (HARD-13)
    assert clock.sleeps == (1_000_000,)
    assert ctl.snapshot().next_flush_at == 2_000_000  # the second slot ends 1 ms after the first
    assert len(observer.calls) == 2


def test_a_blocking_flush_sleeps_then_commits_against_the_state_at_commit_time() -> None:
    # spec FC-10, DIV-6: the second paced flush sleeps until the deadline, then commits.
    ctl, clock, observer, tasks = paced_rig()
    assert ctl.before_flush(tasks[0]) == 0
    assert ctl.snapshot().next_flush_at == 1_000_000
    assert ctl.before_flush(tasks[1]) == 1_000_000  # ns (HARD-13)
    assert clock.sleeps == (1_000_000,)
    assert ctl.snapshot().next_flush_at == 2_000_000
    assert [call.metric for call in observer.calls] == [
        Metric.FLUSH_PACING_SLEEP,
        Metric.FLUSH_PACING_SLEEP_MICROS,
    ]


# --- observers -------------------------------------------------------------------------------


def test_the_in_memory_observer_keeps_counters_and_histogram_summaries() -> None:
    # spec FC-8, FC-10: totals users can read: counts, and count/sum/max per histogram.
    clock, observer = ManualClock(), InMemoryObserver()
    ctl = FlowController(PRIMED, clock=clock, observer=observer)
    ctl.on_enqueue_est(20_000)  # at stop: every write takes the maximum
    ctl.before_foreground_write(1)
    ctl.before_foreground_write(2)
    with ctl.teardown_bypass():
        ctl.before_flush(ctl.on_enqueue_est(1))
    snapshot = observer.snapshot()
    assert snapshot.counters[Metric.FG_DELAY] == 2
    assert snapshot.counters[Metric.FLUSH_PACING_BYPASS_TEARDOWN] == 1
    assert snapshot.counters[Metric.FLUSH_PACING_SLEEP] == 0
    assert snapshot.histograms[Metric.FG_DELAY_MICROS] == HistogramSummary(2, 100_000, 50_000)
    assert snapshot.histograms[Metric.FLUSH_PACING_SLEEP_MICROS] == HistogramSummary()


def test_the_noop_observer_is_the_default_and_ignores_everything() -> None:
    # spec FC-8: without an observer the controller still works and reports nowhere.
    NoopObserver().counter(Metric.FG_DELAY, 1)
    NoopObserver().histogram(Metric.FG_DELAY_MICROS, 1)
    ctl = FlowController(PRIMED, clock=ManualClock())
    ctl.on_enqueue_est(20_000)
    assert ctl.before_foreground_write(1) == 50_000_000  # ns: 50 ms


class FailingObserver(RecordingObserver):
    """Records each call, then raises on it."""

    def counter(self, metric: Metric, delta: int) -> None:
        """Record, then fail."""
        super().counter(metric, delta)
        raise ConnectionError(metric.value)

    def histogram(self, metric: Metric, value: int) -> None:
        """Record, then fail."""
        super().histogram(metric, value)
        raise ConnectionError(metric.value)


def failing_rig() -> tuple[FlowController, ManualClock, FailingObserver, RecordingLocks]:
    """Return a warm controller (1 MB/s) whose observer raises on every call."""
    clock, observer, locks = ManualClock(), FailingObserver(), RecordingLocks()
    with using_locks(locks):
        ctl = FlowController(PRIMED, clock=clock, observer=observer)
    primer = ctl.on_enqueue_est(1_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)
    ctl.on_mark_done(primer)
    return ctl, clock, observer, locks


def test_an_observer_that_raises_leaves_the_controller_consistent() -> None:
    # spec DIV-6, INV-1: observer calls happen after the state change, outside every lock:
    # the error reaches the caller, the debt is conserved and the controller keeps working.
    ctl, clock, _, locks = failing_rig()
    task = ctl.on_enqueue_est(10_000)  # 10 units: above stop
    with pytest.raises(ConnectionError, match="FlowFgDelay"):
        ctl.before_foreground_write(1)
    assert clock.sleeps == (50_000_000,)  # it slept first, as the seed does
    assert locks.held() == []
    with ctl.teardown_bypass(), pytest.raises(ConnectionError, match="BypassTeardown"):
        ctl.before_flush(task)
    assert locks.held() == []
    assert ctl.snapshot().debt_bytes == 10_000
    ctl.on_io_built(task, 9_000, 1_000_000)
    ctl.on_mark_done(task)
    assert ctl.snapshot().debt_bytes == 0
    assert ctl.snapshot().teardown_bypass_scopes == 0


def test_an_observer_that_raises_after_a_pacing_sleep_keeps_the_commit() -> None:
    # spec FC-10, DIV-6: the deadline is committed and both locks released before reporting.
    ctl, clock, observer, locks = failing_rig()
    first, second = ctl.on_enqueue_est(1_000), ctl.on_enqueue_est(1_000)
    assert ctl.before_flush(first) == 0
    deadline = ctl.snapshot().next_flush_at
    assert deadline == clock.monotonic_ns() + 1_000_000
    with pytest.raises(ConnectionError, match="FlowFlushPacingSleep"):
        ctl.before_flush(second)
    assert locks.held() == []
    assert ctl.snapshot().next_flush_at == deadline + 1_000_000
    assert observer.calls == (
        Emission(MetricKind.COUNTER, Metric.FLUSH_PACING_SLEEP, 1),
    )  # the histogram was never reached


def test_the_observer_is_never_called_under_a_controller_lock() -> None:
    # spec DIV-6: every call an operation makes to its observer comes after both locks are
    # released.
    held_during_calls: list[list[str]] = []
    locks = RecordingLocks()

    class Watching(RecordingObserver):
        def counter(self, metric: Metric, delta: int) -> None:
            held_during_calls.append(locks.held())
            super().counter(metric, delta)

        def histogram(self, metric: Metric, value: int) -> None:
            held_during_calls.append(locks.held())
            super().histogram(metric, value)

    clock = ManualClock()
    with using_locks(locks):
        ctl = FlowController(PRIMED, clock=clock, observer=Watching())
    primer = ctl.on_enqueue_est(1_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)
    ctl.on_mark_done(primer)
    tasks = [ctl.on_enqueue_est(1_000) for _ in range(2)]
    for task in tasks:
        ctl.before_flush(task)
    ctl.on_enqueue_est(10_000)
    ctl.before_foreground_write(5)
    ctl.before_flush(tasks[0])  # high debt now: a bypass
    assert len(held_during_calls) == 5
    assert all(held == [] for held in held_during_calls)


def test_the_in_memory_observer_is_thread_safe() -> None:
    # spec DIV-6: concurrent increments are all counted (bounded joins).
    observer = InMemoryObserver()

    def bump() -> None:
        for _ in range(2_000):
            observer.counter(Metric.FG_DELAY, 1)
            observer.histogram(Metric.FG_DELAY_MICROS, 3)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    snapshot = observer.snapshot()
    assert snapshot.counters[Metric.FG_DELAY] == 8_000
    assert snapshot.histograms[Metric.FG_DELAY_MICROS] == HistogramSummary(8_000, 24_000, 3)
