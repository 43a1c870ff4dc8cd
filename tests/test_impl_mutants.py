"""Tests written for what the implementation's mutation run found alive (`tests/mutation.py`).

Each test pins specified behaviour that the state machine, the interleavings and the API tests
reached without checking: boundaries a drawn example rarely hits (a one-byte debt at a one-byte
flush unit, an I/O average of 0 in steady state, a floor of 1 byte/s, an I/O time beyond
``u64`` microseconds, a pacing deadline more than one maximal sleep ahead), sleeps that are not
whole microseconds, arguments of a subclass of ``int``, what the errors of misuse and of
options of the wrong type name, and a flush that another thread affects while it waits for the
pacing lock. Expected values are worked out from the spec's formulas in the comments and, where
a model step exists, also compared with the reference model's answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from flowpace import (
    FlowController,
    FlowOptions,
    FlowTask,
    Metric,
    TaskStateError,
)
from flowpace._sync import PACING_LOCK, LockLike, thread_lock
from flowpace.testing import ManualClock, RecordingObserver
from flowpace.testing import lock_factory as using_locks
from flowpace_reference import transitions as model
from flowpace_reference.types import FlushDecision
from flowpace_reference.u64 import U64_MAX


def rig(
    options: FlowOptions, *, lock_factory: Callable[[str], LockLike] = thread_lock
) -> tuple[FlowController, ManualClock, RecordingObserver]:
    """Return a controller with ``options`` on a manual clock at 0, and its observer."""
    clock, observer = ManualClock(), RecordingObserver()
    with using_locks(lock_factory):
        ctl = FlowController(
            options, clock=clock, observer=observer, async_sleep=clock.async_sleep_ns
        )
    return ctl, clock, observer


def model_delay_us(ctl: FlowController, write_bytes: int) -> int:
    """Return the model's foreground delay for the controller's state now (FC-6..8)."""
    return model.before_foreground_write(ctl.config, ctl.snapshot(), write_bytes).delay_us


def names(text: str, word: str) -> bool:
    """Return whether ``text`` holds ``word`` as a word of its own, not inside another."""
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text) is not None


def metric_calls(observer: RecordingObserver) -> list[tuple[Metric, int]]:
    """Return the observer's calls as (metric, value)."""
    return [(call.metric, call.value) for call in observer.calls]


# --- FC-6, FC-7: boundaries of the foreground delay ------------------------------------------

LONG_DELAYS = 2_000_000
"""A ``bp_max_delay_us`` (2 s) above the delays below, so that none of them is capped."""


def test_fc6_a_one_byte_debt_at_a_one_byte_unit_is_throttled_from_the_fail_safe() -> None:
    # spec FC-6 rule 4 (strict), AR-2: with a flush unit of 1 byte a debt of 1 byte is 1 000
    # milli-units, exactly the fail-safe of 1 unit, so a cold-start write is throttled (FC-7):
    # ratio = min(1_000 * 100 // 1_000, 100) = 100, target = 1_000_000 * 100 // 100 B/s, and a
    # 1 000-byte write waits 1_000 * 1_000_000 // 1_000_000 = 1 000 us.
    ctl, _, _ = rig(
        FlowOptions(
            enable_backpressure=True,
            bp_flush_unit_bytes=1,
            bp_soft_debt_units=1,
            bp_cold_start_fail_safe_units=1,
            bp_floor_bps=1_000_000,
        )
    )
    ctl.on_enqueue_est(1)
    assert model_delay_us(ctl, 1_000) == 1_000
    assert ctl.before_foreground_write_nowait(1_000) == 1_000 * 1_000


def warm_at_zero_throughput(
    options: FlowOptions, backlog: int = 1_500
) -> tuple[FlowController, FlowTask]:
    """
    Return a controller in steady state whose I/O average is 0, with ``backlog + 1`` bytes due.

    One I/O report of 1 byte in 2 s is a sample of ``1 * 1_000_000 // 2_000_000 = 0`` B/s: it
    counts towards the warm-up (FC-2) but leaves the average at 0 (AR-6), so the disk rate is
    ``max(0, 1) = 1`` (AR-4). That byte stays due; a task of ``backlog`` bytes is enqueued and
    returned.
    """
    ctl, _, _ = rig(options)
    primer = ctl.on_enqueue_est(1)
    ctl.on_io_built(primer, 1, 2_000_000_000)
    task = ctl.on_enqueue_est(backlog)
    state = ctl.snapshot()
    assert (state.io_sample_count, state.io_bps_ewma, state.debt_bytes) == (1, 0, backlog + 1)
    return ctl, task


ZERO_RATE = FlowOptions(
    enable_backpressure=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=1,
    bp_warmup_min_samples=1,
    bp_max_delay_us=LONG_DELAYS,
)
"""Steady state after one sample, soft at 1 000 bytes, delays up to 2 s."""


def test_fc7_a_disk_rate_of_one_byte_per_second_paces_at_one_byte_per_second() -> None:
    # spec AR-4, FC-7, AR-5: 1 501 milli-units is above soft (1 000): ratio = 1_000 * 100 //
    # 1_501 = 66, target = max(1 * 66 // 100, 1) = 1 B/s; the guard is 100 % (I/O average 0),
    # so target = max(1 * 100 // 100, 1) = 1, and 1 byte waits 1 * 1_000_000 // 1 = 1 000 000
    # us (below hard: no doubling; below the 2 s maximum).
    ctl, _ = warm_at_zero_throughput(ZERO_RATE)
    assert model_delay_us(ctl, 1) == 1_000_000
    assert ctl.before_foreground_write_nowait(1) == 1_000_000 * 1_000


def test_fc7_the_full_ratio_paces_at_the_disk_rate_itself() -> None:
    # spec CFG-2 step 1, FC-7: with bp_min_ratio_pct = 100 the ratio is max(66, 100) = 100, so
    # target = max(1 * 100 // 100, 1) = 1 B/s, the disk rate of AR-4 itself: 1 000 000 us.
    ctl, _ = warm_at_zero_throughput(dataclasses.replace(ZERO_RATE, bp_min_ratio_pct=100))
    assert model_delay_us(ctl, 1) == 1_000_000
    assert ctl.before_foreground_write_nowait(1) == 1_000_000 * 1_000


def test_fc7_a_floor_of_one_byte_per_second_paces_cold_start_at_one_byte_per_second() -> None:
    # spec AR-7, FC-7: in cold start the base is the effective floor, max(1, 1) = 1 B/s; at the
    # fail-safe (1 000 of 1 000 milli-units) ratio = 100, target = max(1 * 100 // 100, 1) = 1,
    # with no guard in cold start: 1 byte waits 1 000 000 us.
    ctl, _, _ = rig(
        FlowOptions(
            enable_backpressure=True,
            bp_flush_unit_bytes=1_000,
            bp_soft_debt_units=1,
            bp_cold_start_fail_safe_units=1,
            bp_floor_bps=1,
            bp_max_delay_us=LONG_DELAYS,
        )
    )
    ctl.on_enqueue_est(1_000)
    assert model_delay_us(ctl, 1) == 1_000_000
    assert ctl.before_foreground_write_nowait(1) == 1_000_000 * 1_000


def test_fc10_a_disk_rate_of_one_byte_per_second_spaces_flushes_by_their_size() -> None:
    # spec AR-4, FC-10: in steady state the disk rate is max(0, 1) = 1 B/s; 2 bytes of debt are
    # 2 milli-units, below pacing (2 000), so the 1-byte task is paced with interval
    # max(min(1 * 1_000_000 // 1, 2_000_000), 1) = 1 000 000 us: the deadline is 1 s ahead.
    options = FlowOptions(
        enable_flush_pacing=True,
        bp_flush_unit_bytes=1_000,
        bp_warmup_min_samples=1,
        bp_max_delay_us=LONG_DELAYS,
    )
    ctl, task = warm_at_zero_throughput(options, backlog=1)
    plan = model.plan_flush(ctl.config, ctl.snapshot(), task.snapshot(), 0)
    assert (plan.decision, plan.interval_us) == (FlushDecision.PACED, 1_000_000)
    assert ctl.before_flush_nowait(task) == 0
    assert ctl.snapshot().next_flush_at == 1_000_000 * 1_000


# --- ERR-3: an argument of a subclass of int -------------------------------------------------


class Count(int):
    """A subclass of ``int``: an ``int`` for ERR-3, and not a ``bool``."""

    __slots__ = ()


def test_err3_subclasses_of_int_are_valid_arguments() -> None:
    # spec ERR-3: "an int, not a bool, in range" is valid, a subclass of int included; the
    # model takes them (isinstance), and so must the implementation, with the same result:
    # an elapsed time of 0 is valid (and takes no sample, FC-2).
    ctl, _, _ = rig(FlowOptions())
    task = ctl.on_enqueue_est(Count(100))
    ctl.on_io_built(task, Count(60), Count(0))
    config = ctl.config
    step = model.enqueue(config, model.new_controller(config, 0), 100, 0)
    step = model.io_built(config, step.state, step.task, 60, 0)
    assert ctl.snapshot() == step.state
    assert task.snapshot() == step.task
    second = ctl.on_enqueue_est(Count(40))
    ctl.on_io_built(second, 40, Count(2_000_000))  # 40 bytes in 2 ms: 20 000 B/s
    assert ctl.snapshot().io_bps_ewma == 40 * 1_000_000 // 2_000
    assert ctl.before_foreground_write_nowait(Count(0)) == 0


def test_st2_an_io_time_beyond_u64_microseconds_is_clamped_to_u64_max() -> None:
    # spec ERR-3, AR-1, FC-2, ST-2: an elapsed time of (U64_MAX + 1) * 1_000 ns is valid (below
    # 2**64 * 10**9) and is micros = clamp(U64_MAX + 1) = U64_MAX whole us; the sample
    # 1_000 * 1_000_000 // U64_MAX = 0 B/s is counted and leaves the average at 0 (AR-6).
    ctl, _, _ = rig(FlowOptions())
    task = ctl.on_enqueue_est(1_000)
    ctl.on_io_built(task, 1_000, (U64_MAX + 1) * 1_000)
    config = ctl.config
    step = model.enqueue(config, model.new_controller(config, 0), 1_000, 0)
    step = model.io_built(config, step.state, step.task, 1_000, (U64_MAX + 1) * 1_000)
    assert (ctl.snapshot(), task.snapshot()) == (step.state, step.task)
    assert task.snapshot().io_micros == U64_MAX
    assert (step.state.io_sample_count, step.state.io_bps_ewma) == (1, 0)


# --- FC-10: deadlines more than one maximal sleep ahead ---------------------------------------

SLOW_DISK = FlowOptions(
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_pacing_soft_debt_units=4,
    bp_warmup_min_samples=1,
    bp_max_delay_us=1_000,
)
"""Pacing on, warm after one sample; paced up to 4 units of debt; a maximal sleep of 1 ms."""

MAX_SLEEP_NS = 1_000_000
"""``bp_max_delay_us`` of `SLOW_DISK` in nanoseconds: the longest sleep, and every interval."""


SlowDisk = tuple[FlowController, ManualClock, RecordingObserver, list[FlowTask]]


def slow_disk_tasks(count: int) -> SlowDisk:
    """
    Return a warm controller on a disk of 1 000 B/s and ``count`` live 1 000-byte tasks.

    Each task's pacing interval is min(1_000 * 1_000_000 // 1_000, 1_000) = 1 000 us (FC-10):
    the maximal sleep, so that each reservation pushes the deadline by a maximal sleep.
    """
    ctl, clock, observer = rig(SLOW_DISK)
    primer = ctl.on_enqueue_est(1_000)
    ctl.on_io_built(primer, 1_000, 1_000_000_000)  # 1 000 bytes in 1 s
    ctl.on_mark_done(primer)
    assert observer.calls == ()
    return ctl, clock, observer, [ctl.on_enqueue_est(1_000) for _ in range(count)]


def test_fc10_a_nowait_reservation_behind_a_far_deadline_starts_at_the_deadline() -> None:
    # spec FC-10: the commit's base is max(next_flush_at, t2), and t2 = t + sleep_ns where the
    # sleep is capped at the maximum. Three reservations at t = 0 with intervals of 1 ms:
    # 0 + 1 ms; then max(1 ms, 0 + 1 ms) + 1 ms = 2 ms; then the sleep is min(2 ms, 1 ms) =
    # 1 ms, so t2 = 1 ms but the base is the deadline, 2 ms: the deadline becomes 3 ms.
    ctl, clock, _, tasks = slow_disk_tasks(3)
    expected = ctl.snapshot()
    for task in tasks:
        plan = model.plan_flush(ctl.config, expected, task.snapshot(), 0)
        expected = model.commit_flush(expected, plan, plan.sleep_ns)
        assert ctl.before_flush_nowait(task) == plan.sleep_ns
    assert ctl.snapshot() == expected
    assert expected.next_flush_at == 3 * MAX_SLEEP_NS
    clock.advance_ns(2 * MAX_SLEEP_NS)  # the next flush at 2 ms waits for the 3 ms deadline
    late = ctl.on_enqueue_est(0)
    assert ctl.before_flush_nowait(late) == MAX_SLEEP_NS


def test_fc10_a_blocking_flush_behind_a_far_deadline_commits_after_the_deadline() -> None:
    # spec FC-10, DIV-6: two reservations leave the deadline at 2 ms; a blocking flush at 0
    # sleeps min(2 ms, 1 ms) = 1 ms, wakes at 1 ms and commits against the deadline as it is
    # then: max(2 ms, 1 ms) + 1 ms = 3 ms.
    ctl, clock, _, tasks = slow_disk_tasks(3)
    assert [ctl.before_flush_nowait(task) for task in tasks[:2]] == [0, MAX_SLEEP_NS]
    state = ctl.snapshot()
    plan = model.plan_flush(ctl.config, state, tasks[2].snapshot(), 0)
    expected = model.commit_flush(state, plan, plan.sleep_ns)
    assert ctl.before_flush(tasks[2]) == MAX_SLEEP_NS  # ns (HARD-13)
    assert clock.sleeps == (MAX_SLEEP_NS,)
    assert ctl.snapshot() == expected
    assert expected.next_flush_at == 3 * MAX_SLEEP_NS


# --- FC-10: sleeps that are not whole microseconds ------------------------------------------


def test_fc10_a_sleep_of_1500_ns_reports_one_whole_microsecond() -> None:
    # spec FC-10: the histogram gets micros(sleep_ns), the planned sleep in whole microseconds:
    # 1 500 ns is 1 us, not 1.5; spec HARD-13: the async flush returns the sleep exactly, in ns.
    ctl, clock, observer, tasks = slow_disk_tasks(2)
    assert ctl.before_flush_nowait(tasks[0]) == 0  # deadline at 1 ms
    clock.advance_ns(MAX_SLEEP_NS - 1_500)
    waited = asyncio.run(ctl.before_flush_async(tasks[1]))
    assert (waited, type(waited)) == (1_500, int)
    assert clock.sleeps == (1_500,)
    assert metric_calls(observer) == [
        (Metric.FLUSH_PACING_SLEEP, 1),
        (Metric.FLUSH_PACING_SLEEP_MICROS, 1),
    ]
    assert all(type(call.value) is int for call in observer.calls)


# --- ERR-1: every flush form names itself ----------------------------------------------------


@pytest.mark.parametrize("operation", ["before_flush_nowait", "before_flush_async"])
def test_err1_a_flush_of_a_finished_task_names_its_operation(operation: str) -> None:
    # spec ERR-1: the message names the operation; the non-blocking and async flushes are
    # operations of their own (test_error_messages covers before_flush).
    ctl, _, _ = rig(SLOW_DISK)
    task = ctl.on_enqueue_est(100)
    ctl.on_mark_done(task)
    flushes: dict[str, Callable[[], object]] = {
        "before_flush_nowait": lambda: ctl.before_flush_nowait(task),
        "before_flush_async": lambda: asyncio.run(ctl.before_flush_async(task)),
    }
    with pytest.raises(TaskStateError) as caught:
        flushes[operation]()
    assert names(str(caught.value), operation), caught.value
    assert names(str(caught.value), "done"), caught.value


# --- DIV-6: a flush whose state changes while it waits for the pacing lock -------------------


class InterruptedPacingLock:
    """
    A lock factory whose pacing lock runs ``action`` once, just before it is first acquired.

    That is where another thread acts on the controller while a blocking flusher waits for the
    pacing lock, between its first decision and the decision it makes holding the lock.
    """

    def __init__(self, action: Callable[[], None]) -> None:
        """Run ``action`` before the pacing lock is first taken."""
        self.action: Callable[[], None] | None = action

    def __call__(self, name: str) -> LockLike:
        """Make the lock ``name``: the state lock as usual, the pacing lock interrupted."""
        lock = thread_lock(name)
        if name != PACING_LOCK:
            return lock
        return _Interrupted(lock, self)


class _Interrupted:
    """A lock that runs its factory's pending action before it is acquired."""

    def __init__(self, lock: LockLike, factory: InterruptedPacingLock) -> None:
        """Wrap ``lock``."""
        self._lock = lock
        self._factory = factory

    def _interrupt(self) -> None:
        """Run the pending action, once."""
        action, self._factory.action = self._factory.action, None
        if action is not None:
            action()

    def acquire(self) -> bool:
        """Run the pending action, then acquire."""
        self._interrupt()
        return self._lock.acquire()

    def release(self) -> None:
        """Release."""
        self._lock.release()

    def __enter__(self) -> object:
        """Run the pending action, then acquire."""
        self._interrupt()
        return self._lock.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        """Release."""
        self._lock.release()


@contextmanager
def interrupted_flush(
    action: Callable[[FlowController, FlowTask], None],
) -> Iterator[tuple[FlowController, FlowTask, RecordingObserver]]:
    """
    Yield a warm controller whose next blocking flush of the yielded task is interrupted.

    The task (1 000 bytes on a 1 MB/s disk) is paced when the flush first decides; ``action``
    then runs on the controller and the task before the flush takes the pacing lock.
    """
    factory = InterruptedPacingLock(lambda: None)
    ctl, _, observer = rig(SLOW_DISK, lock_factory=factory)
    primer = ctl.on_enqueue_est(1_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)  # 1 MB/s
    ctl.on_mark_done(primer)
    task = ctl.on_enqueue_est(1_000)
    plan = model.plan_flush(ctl.config, ctl.snapshot(), task.snapshot(), 0)
    assert plan.decision is FlushDecision.PACED
    factory.action = lambda: action(ctl, task)
    yield ctl, task, observer


def test_div6_a_flush_whose_task_is_settled_meanwhile_is_misuse_named_before_flush() -> None:
    # spec DIV-6, ERR-1: the flush takes effect at its decision under the pacing lock, after
    # the settle: the model's plan_flush of a finished task raises, naming the operation, and
    # the flush changes nothing (no deadline, no emission).
    with interrupted_flush(lambda ctl, task: ctl.on_mark_done(task)) as (ctl, task, observer):
        expected = model.mark_done(ctl.config, ctl.snapshot(), task.snapshot(), 0)
        with pytest.raises(TaskStateError) as caught:
            ctl.before_flush(task)
        assert names(str(caught.value), "before_flush"), caught.value
        assert (ctl.snapshot(), task.snapshot()) == (expected.state, expected.task)
        assert observer.calls == ()


def test_div6_a_flush_that_a_teardown_scope_opens_on_meanwhile_bypasses_pacing() -> None:
    # spec DIV-6, FC-9 rule 2: a teardown scope opened before the flush's decision under the
    # pacing lock makes it bypass pacing: it returns 0 at once, commits no deadline and emits
    # the teardown counter once.
    with interrupted_flush(lambda ctl, _: ctl.enter_teardown_bypass()) as (ctl, task, observer):
        expected = model.enter_teardown(ctl.snapshot())
        assert ctl.before_flush(task) == 0
        assert ctl.snapshot() == expected
        assert metric_calls(observer) == [(Metric.FLUSH_PACING_BYPASS_TEARDOWN, 1)]


# --- CFG-3: options of the wrong type --------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("enable_backpressure", 1, "1"),  # a flag must be a bool
        ("bp_soft_debt_units", "8", "'8'"),  # a number must be an int
        ("bp_floor_bps", True, "True"),  # ... and not a bool
    ],
)
def test_cfg3_an_option_of_the_wrong_type_is_named_with_its_value(
    option: str, value: object, shown: str
) -> None:
    # spec CFG-3: a TypeError whose message names the option it rejects and shows the value
    # (test_error_messages covers unknown names and values out of range).
    with pytest.raises(TypeError) as caught:
        FlowOptions(**{option: value})  # type: ignore[arg-type]  # the wrong type is the point
    assert names(str(caught.value), option), caught.value
    assert names(str(caught.value), shown), caught.value
