"""Deterministic interleavings: the scheduler checked, then the controller under it (DIV-6).

The first part pins `scheduler` on toy objects whose races are known: an unlocked
read-modify-write loses an update under some schedule and a locked one never does; opposite lock
orders deadlock and the run says so; a thread that blocks where the scheduler cannot see fails
with its stack; a read-modify-write between two lines, which no lock-level point splits, is
split by line-level preemption, within a bound of one preemption too. Only then is the scheduler
trusted with the controller, in four kinds of runs, each history checked for linearizability
against the model (`linearizability.check_run`):

- drawn runs of three threads (task lifecycles, writes, scopes, snapshots), switching at every
  lock acquire and release, clock read and sleep; the same with clocks that disagree (each
  thread reads its own drawn, non-decreasing times, so readings are applied out of order and
  every operation must raise its reading to the latest time applied, spec DIV-6); and drawn
  runs of two threads preempted at the lines of the controller's core as well
  (`scheduler.CORE_FILES`), the line choices drawn as "stay unless drawn otherwise";
- flush races: a flush of either form against each operation that changes what it decides
  from, under drawn schedules, with frozen and with disagreeing clocks;
- races of two operations on shared fields (`LINE_RACES`: writes, the foreground fast path,
  snapshots, I/O reports, settles, scopes, flushes against settles and late clocks) under every
  schedule with at most one preemption, at any line or lock-level point, for drawn clocks;
- a non-blocking flush against each race under every schedule at lock level.

Hypothesis tests come before the plain ones, so that a planted bug fails with a falsifying
example (what the campaign's hunts count).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Final

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from flowpace import FlowController
from flowpace.testing import lock_factory as using_locks
from flowpace.verify import campaign_settings, record_stats
from flowpace_reference.types import Options
from linearizability import (
    CLOCK_STEPS_NS,
    ConcurrentRun,
    HistoryRecorder,
    Script,
    ThreadObserver,
    check_run,
    concurrent_runs,
    implementation_options,
    thread_times,
)
from scheduler import (
    CORE_FILES,
    Chooser,
    DeadlockError,
    HangError,
    LineGap,
    ReplayChooser,
    ScheduledLock,
    Scheduler,
    exhaust,
)

# --- the scheduler on a toy account ----------------------------------------------------------


class Account:
    """A balance updated by read, schedule point, write: racy unless ``locked``."""

    def __init__(self, scheduler: Scheduler, *, locked: bool) -> None:
        """Open an account with balance 0 on ``scheduler``."""
        self.scheduler = scheduler
        self.lock = scheduler.lock("account")
        self.locked = locked
        self.balance = 0

    def deposit(self, amount: int) -> None:
        """Add ``amount``: read the balance, pass a schedule point, write the sum."""
        if self.locked:
            with self.lock:
                self._read_modify_write(amount)
        else:
            self._read_modify_write(amount)

    def _read_modify_write(self, amount: int) -> None:
        """Read, let the scheduler switch, then write."""
        seen = self.balance
        self.scheduler.point("between read and write")
        self.balance = seen + amount


def deposits(choose: Chooser, *, locked: bool, threads: int = 2) -> int:
    """Return the balance after ``threads`` threads each deposit 1 under ``choose``."""
    scheduler = Scheduler(choose)
    account = Account(scheduler, locked=locked)
    for index in range(threads):
        scheduler.spawn(f"t{index}", lambda: account.deposit(1))
    scheduler.run()
    return account.balance


def test_some_schedule_loses_an_unlocked_update_and_none_a_locked_one() -> None:
    # spec DIV-6: the scheduler reaches the interleaving a lost update needs, and a lock rules
    # it out under every schedule.
    balances: list[int] = []
    runs = exhaust(lambda choose: balances.append(deposits(choose, locked=False)))
    assert runs == len(balances) > 1
    assert set(balances) == {1, 2}
    locked: list[int] = []
    exhaust(lambda choose: locked.append(deposits(choose, locked=True)))
    assert set(locked) == {2}


@pytest.mark.no_crosshair("threads")
def test_hypothesis_finds_and_shrinks_a_lost_update() -> None:
    # spec DIV-6: schedules drawn by Hypothesis find the race and shrink it to one switch
    # each way, the least a lost update needs.
    found: list[Scheduler] = []

    @settings(database=None, suppress_health_check=[HealthCheck.nested_given])
    @given(st.data())
    def three_deposits(data: st.DataObject) -> None:
        def choose(names: Sequence[str]) -> int:
            return data.draw(st.integers(0, len(names) - 1))

        scheduler = Scheduler(choose)
        account = Account(scheduler, locked=False)
        for index in range(3):
            scheduler.spawn(f"t{index}", lambda: account.deposit(1))
        scheduler.run()
        found.append(scheduler)
        assert account.balance == 3

    with pytest.raises(AssertionError):
        three_deposits()
    assert found[-1].switches <= 3


def test_opposite_lock_orders_deadlock_under_some_schedule() -> None:
    # spec DIV-6: a lock-order cycle is reported as a deadlock, naming who waits for whom.
    outcomes: list[str] = []

    def run_once(choose: Chooser) -> None:
        scheduler = Scheduler(choose)
        first, second = scheduler.lock("first"), scheduler.lock("second")
        scheduler.spawn("a", nested(first, second))
        scheduler.spawn("b", nested(second, first))
        try:
            scheduler.run()
        except DeadlockError as error:
            outcomes.append("deadlock" if "waits for" in str(error) else "unexplained deadlock")
        else:
            outcomes.append("ok")

    exhaust(run_once)
    assert set(outcomes) == {"deadlock", "ok"}


def nested(outer: ScheduledLock, inner: ScheduledLock) -> Callable[[], None]:
    """Return a thread body that takes ``outer`` then ``inner``."""

    def body() -> None:
        with outer, inner:
            pass

    return body


def test_a_worker_error_is_raised_on_the_main_thread() -> None:
    # spec DIV-6: a failing thread fails the test, whatever the other threads do.
    scheduler = Scheduler(ReplayChooser())
    lock = scheduler.lock("held")

    def fail() -> None:
        with lock:
            raise KeyError("boom")

    scheduler.spawn("ok", nested(lock, scheduler.lock("other")))
    scheduler.spawn("fails", fail)
    with pytest.raises(KeyError, match="boom"):
        scheduler.run()


def test_a_thread_blocked_outside_the_scheduler_fails_with_its_stack() -> None:
    # spec DIV-6: a hang is bounded and reported with a stack dump, never waited out.
    never = threading.Event()
    scheduler = Scheduler(ReplayChooser(), step_timeout=0.2)

    def stuck() -> None:
        never.wait()

    scheduler.spawn("stuck", stuck)
    try:
        with pytest.raises(HangError, match="stuck") as caught:
            scheduler.run()
        assert "never.wait()" in str(caught.value)
    finally:
        never.set()


class TwoLineCount:
    """A count bumped by a read-modify-write over two lines, with no schedule point between."""

    def __init__(self) -> None:
        """Start at 0."""
        self.value = 0

    def bump(self, times: int = 1) -> None:
        """Add 1, ``times`` times: read the count on one line, write it on the next."""
        for _ in range(times):
            seen = self.value
            self.value = seen + 1


THIS_FILE: Final = __file__
"""This module: its lines are the schedule points of the toy runs below."""


def bumps(scheduler: Scheduler, times: int = 1) -> int:
    """Return the count after two threads of ``scheduler`` each bump it ``times`` times."""
    count = TwoLineCount()
    for index in range(2):
        scheduler.spawn(f"t{index}", functools.partial(count.bump, times))
    scheduler.run()
    return count.value


def test_line_preemption_splits_a_read_modify_write_that_no_lock_point_splits() -> None:
    # spec DIV-6: lock-level points never fall between two lines of unlocked code, so no
    # schedule loses the update; with the lines of this file as points, one schedule does,
    # and it needs only one preemption.
    def outcomes(*, lines: bool, max_preemptions: int | None = None) -> list[Scheduler]:
        runs: list[Scheduler] = []

        def run_once(choose: Chooser) -> None:
            files = [THIS_FILE] if lines else []
            scheduler = Scheduler(choose, preempt_lines=files, max_preemptions=max_preemptions)
            scheduler.trace.append(("count", str(bumps(scheduler))))
            runs.append(scheduler)

        exhaust(run_once)
        return runs

    def counts(runs: list[Scheduler]) -> set[str]:
        return {label for run in runs for name, label in run.trace if name == "count"}

    assert counts(outcomes(lines=False)) == {"2"}
    everything = outcomes(lines=True)
    assert counts(everything) == {"1", "2"}
    points = {label for run in everything for name, label in run.trace if name != "count"}
    assert points
    assert all(label.startswith("line test_interleavings.py:") for label in points)
    bounded = outcomes(lines=True, max_preemptions=1)
    assert len(bounded) < len(everything)
    assert counts(bounded) == {"1", "2"}
    assert max(run.preemptions for run in bounded) == 1
    assert counts(outcomes(lines=True, max_preemptions=0)) == {"2"}, "each bump runs whole"


@pytest.mark.no_crosshair("threads")
def test_hypothesis_finds_a_lost_update_between_two_lines_with_drawn_gaps() -> None:
    # spec DIV-6: line-level choices drawn as "stay unless drawn otherwise" (the gaps) find
    # the race between two lines; the failing schedule preempted a thread at a line.
    found: list[Scheduler] = []

    @settings(database=None, suppress_health_check=[HealthCheck.nested_given])
    @given(st.data())
    def bumped_eight_times_each(data: st.DataObject) -> None:
        scheduler = Scheduler(
            drawn_choice(data), preempt_lines=[THIS_FILE], line_gap=drawn_line_gap(data)
        )
        found.append(scheduler)
        assert bumps(scheduler, times=8) == 16

    with pytest.raises(AssertionError):
        bumped_eight_times_each()
    assert any(label.startswith("line ") for _, label in found[-1].trace)
    assert found[-1].preemptions >= 1


# --- the controller under drawn schedules ----------------------------------------------------

MAIN_THREAD = -1
"""The thread number of calls made on the main thread, before and after the scheduled run."""


def run_scheduled(
    run: ConcurrentRun,
    choose: Chooser,
    *,
    after: Sequence[tuple[str, tuple[Hashable, ...]]] = (),
    lines: bool = False,
    line_gap: LineGap | None = None,
    max_preemptions: int | None = None,
) -> Scheduler:
    """
    Run ``run`` under ``choose``, then ``after`` on the main thread; check it; return the run.

    The implementation's own locks are the scheduler's (through the private lock factory of
    flowpace._sync), and every clock read and sleep is a schedule point too, so ``choose``
    picks the thread at every place a preemption between operations can matter (spec DIV-6).
    With ``lines``, every line of the controller's core is a point as well (line-level
    preemption, `scheduler.CORE_FILES`), spaced by ``line_gap``; ``max_preemptions`` bounds
    the preemptions (`Scheduler`). The schedule is noted for Hypothesis if the run fails.
    """
    scheduler = Scheduler(
        choose,
        preempt_lines=CORE_FILES if lines else (),
        line_gap=line_gap,
        max_preemptions=max_preemptions,
    )
    clock = run.clock()
    observer = ThreadObserver()
    with using_locks(scheduler.lock):
        controller = FlowController(
            implementation_options(run.options), clock=clock, observer=observer
        )
    clock.now_ns, clock.point = run.now_ns, scheduler.point
    ticks = itertools.count()
    recorder = HistoryRecorder(controller, clock, observer, ticks.__next__)
    recorder.run(MAIN_THREAD, run.prelude)
    for number, script in enumerate(run.scripts):
        scheduler.spawn(f"thread {number}", functools.partial(recorder.run, number, script))
    try:
        scheduler.run()
        recorder.run(MAIN_THREAD, [*after, ("snapshot", ())])
        check_run(run, recorder.history, controller.snapshot())
    except BaseException:
        if currently_in_test_context():  # exhaustive runs have no Hypothesis example to note on
            note(scheduler.describe_trace())
        raise
    return scheduler


@pytest.mark.no_crosshair("threads and a scheduler")
@campaign_settings()
@given(run=concurrent_runs(threads=3, actions=3), data=st.data())
def test_controller_is_linearizable_under_every_drawn_schedule(
    run: ConcurrentRun, data: st.DataObject
) -> None:
    # spec DIV-6, INV-1, INV-7: Hypothesis chooses the thread at every schedule point.
    def choose(names: Sequence[str]) -> int:
        return data.draw(st.integers(0, len(names) - 1), label="next thread")

    scheduler = run_scheduled(run, choose)
    CAMPAIGN_STATS["examples"] += 1
    CAMPAIGN_STATS["steps"] += len(scheduler.trace)
    CAMPAIGN_STATS["switches"] += scheduler.switches
    event(f"{len(run.scripts)} threads, {min(scheduler.switches, 10)}+ switches")


def drawn_choice(data: st.DataObject) -> Chooser:
    """Return a chooser that draws the next thread; 0, the shrink target, does not switch."""

    def choose(names: Sequence[str]) -> int:
        return data.draw(st.integers(0, len(names) - 1), label="next thread")

    return choose


# --- racing flushers -------------------------------------------------------------------------
# A flush decides from a consistent read of the state and commits its deadline in a second
# critical section (spec DIV-6, FC-10); `before_flush_nowait` commits only if nothing it read
# changed in between, and decides again otherwise. These runs aim at that window.

UNIT: Final = 1_000
"""Bytes per flush unit in the races below."""

RACE_OPTIONS: Final = Options(
    enable_backpressure=False,
    enable_flush_pacing=True,
    bp_pacing_soft_debt_units=2,
    bp_flush_unit_bytes=UNIT,
    bp_warmup_min_samples=1,
    bp_max_delay_us=50_000,
)
"""Pacing on and warm after one sample; two half-unit tasks are paced (below 2 units)."""

SNAPSHOT: Final[tuple[str, tuple[Hashable, ...]]] = ("snapshot", ())
SETTLE: Final[Script] = [("mark_done", (1,)), ("mark_done", (2,)), ("mark_done", (3,))]
"""Settles every task of the prelude after a race."""

HALF, EMPTY, OTHER = 1, 3, 2
"""The prelude's tasks: two of half a unit (one flushed, one the other thread's), one empty."""

RACES: Final[dict[str, tuple[int, Script, Script]]] = {
    # Another flusher reserves the next slot: the nowait flush must not reserve the same one.
    "before_flush_nowait": (HALF, [("before_flush_nowait", (OTHER,))], SETTLE),
    "before_flush": (HALF, [("before_flush", (OTHER,))], SETTLE),
    # Each changes the flush's decision or interval; the snapshot makes the order observable.
    "enqueue": (HALF, [("enqueue", (4, 2 * UNIT)), SNAPSHOT], [*SETTLE, ("mark_done", (4,))]),
    "io_built": (HALF, [("io_built", (OTHER, UNIT // 2, 100_000)), SNAPSHOT], SETTLE),
    "enter_teardown": (
        HALF,
        [("enter_teardown", ()), SNAPSHOT],
        [*SETTLE, ("leave_teardown", ())],
    ),
    "enter_starving": (
        HALF,
        [("enter_starving", ()), SNAPSHOT],
        [*SETTLE, ("leave_starving", ())],
    ),
    # Another thread acts on the flushing task itself (misuse, but it must stay atomic). An
    # empty task's settle leaves the debt as it is: only the task shows it is done.
    "force_bypass": (HALF, [("force_bypass", (HALF,)), SNAPSHOT], SETTLE),
    "mark_done": (EMPTY, [("mark_done", (EMPTY,)), SNAPSHOT], SETTLE),
}
"""Per race: the task thread 0 flushes, what thread 1 does meanwhile, what is settled after."""

EXHAUSTED_RACES: Final = tuple(race for race in RACES if race != "before_flush")
"""The races small enough to run under every schedule (a blocking flush has over 10,000)."""


def flush_race(first: str, second: str) -> tuple[ConcurrentRun, Script]:
    """
    Return a run where thread 0 does ``first`` on a task while thread 1 runs the race ``second``.

    The prelude warms the controller and charges three tasks, all paced at the start. What the
    race left open is settled on the main thread after the run (the second value; settling a
    task twice is an error both sides agree on), so the checks of the run's end (INV-1, INV-7)
    hold.
    """
    prelude: Script = [
        ("enqueue", (0, UNIT)),  # one I/O sample: the controller is warm
        ("io_built", (0, UNIT, 1_000_000)),
        ("mark_done", (0,)),
        ("enqueue", (HALF, UNIT // 2)),
        ("enqueue", (OTHER, UNIT // 2)),
        ("enqueue", (EMPTY, 0)),
    ]
    flushed, racer, after = RACES[second]
    run = ConcurrentRun(
        options=RACE_OPTIONS,
        built_at_ns=0,
        now_ns=0,
        prelude=prelude,
        scripts=([(first, (flushed,))], racer),
        task_count=5,
    )
    return run, after


def clock_reads(scheduler: Scheduler, thread: str) -> int:
    """Return how many times ``thread`` read the clock: once each time a flush decides."""
    return sum(1 for name, label in scheduler.trace if name == thread and label == "read the clock")


@pytest.mark.no_crosshair("threads and a scheduler")
@campaign_settings()
@given(
    first=st.sampled_from(("before_flush_nowait", "before_flush")),
    second=st.sampled_from(sorted(RACES)),
    data=st.data(),
)
def test_racing_flushers_are_linearizable_under_drawn_schedules(
    first: str, second: str, data: st.DataObject
) -> None:
    # spec DIV-6, FC-10: a flush of either form races each of RACES under drawn schedules.
    # This comes before the exhaustive test below so that a bug in the flush's commit fails
    # here first, with a falsifying example: the campaign's hunts count only those.
    def choose(names: Sequence[str]) -> int:
        return data.draw(st.integers(0, len(names) - 1), label="next thread")

    run, after = flush_race(first, second)
    scheduler = run_scheduled(run, choose, after=after)
    CAMPAIGN_STATS["examples"] += 1
    CAMPAIGN_STATS["steps"] += len(scheduler.trace)
    CAMPAIGN_STATS["switches"] += scheduler.switches


@pytest.mark.no_crosshair("threads and a scheduler")
@campaign_settings()
@given(
    first=st.sampled_from(("before_flush", "before_flush_nowait")),
    second=st.sampled_from(sorted(RACES)),
    data=st.data(),
)
def test_racing_flushers_are_linearizable_with_clocks_that_disagree(
    first: str, second: str, data: st.DataObject
) -> None:
    # spec DIV-6, FC-10: the races above, each thread on its own clock. A flush's decision
    # and its commit apply max(reading, latest applied): another thread's later time may be
    # applied between them, and the deadline must then be pushed past that time.
    run, after = flush_race(first, second)
    times = tuple(data.draw(thread_times(run.now_ns)) for _ in run.scripts)
    scheduler = run_scheduled(
        dataclasses.replace(run, times=times), drawn_choice(data), after=after
    )
    CAMPAIGN_STATS["examples"] += 1
    CAMPAIGN_STATS["steps"] += len(scheduler.trace)
    CAMPAIGN_STATS["switches"] += scheduler.switches


# --- clocks that disagree, and preemption at any line ----------------------------------------
# The drawn runs again, first with a clock per thread, then preempted at the lines of the
# controller's core as well. After the flush races, so that a hunt for a bug those races find
# does not wait for these.


GAP_BITS: Final = 6
"""Line gaps are 2**k - 1 line points for k in 0..GAP_BITS: dense and sparse preemption."""


def drawn_line_gap(data: st.DataObject) -> LineGap:
    """
    Return a line gap drawn as "stay unless drawn otherwise".

    The gap is log-uniform (0, 1, 3, ... 63 line points), so that one run has both a
    preemption at a precise line and a long stretch of another thread after it (what a race
    between two lines needs); the shrink target, 0, is the longest gap, the fewest choices.
    """

    def gap() -> int:
        return (1 << (GAP_BITS - data.draw(st.integers(0, GAP_BITS), label="line gap"))) - 1

    return gap


@pytest.mark.no_crosshair("threads and a scheduler")
@campaign_settings()
@given(run=concurrent_runs(threads=3, actions=3, skewed=True), data=st.data())
def test_controller_is_linearizable_with_clocks_that_disagree(
    run: ConcurrentRun, data: st.DataObject
) -> None:
    # spec DIV-6, FC-1, FC-5, FC-10, FC-12: each thread reads its own clock (drawn readings,
    # non-decreasing per thread), so a reading can be applied after a later one; every
    # operation must apply max(reading, latest applied), which the specification computes
    # from the readings each call recorded.
    scheduler = run_scheduled(run, drawn_choice(data))
    CAMPAIGN_STATS["examples"] += 1
    CAMPAIGN_STATS["steps"] += len(scheduler.trace)
    CAMPAIGN_STATS["switches"] += scheduler.switches


@pytest.mark.no_crosshair("threads and a scheduler")
@campaign_settings()
@given(run=concurrent_runs(threads=2, actions=3, skewed=True), data=st.data())
def test_controller_is_linearizable_under_line_preemption(
    run: ConcurrentRun, data: st.DataObject
) -> None:
    # spec DIV-6, INV-1, INV-7: every line of the controller is a schedule point too, so a
    # read-modify-write or a read of several fields done outside the state lock is split,
    # and a thread can read the foreground fast path's flag in the middle of another's
    # critical section.
    scheduler = run_scheduled(run, drawn_choice(data), lines=True, line_gap=drawn_line_gap(data))
    CAMPAIGN_STATS["examples"] += 1
    CAMPAIGN_STATS["steps"] += len(scheduler.trace)
    CAMPAIGN_STATS["switches"] += scheduler.switches
    CAMPAIGN_STATS["traced lines"] += scheduler.line_points


# --- one preemption at any line --------------------------------------------------------------
# Drawn schedules rarely preempt a thread at the one line where a race opens and then let the
# other thread run a whole operation there. For pairs of operations that touch the same
# fields, every schedule with at most one preemption is run instead (`exhaust` with
# ``max_preemptions=1``), at every line of the controller's core and at every lock-level point:
# each operation of one thread runs whole at every line of the other's. That is the
# interleaving an unlocked read-modify-write, a read of several fields outside the lock, or a
# reading applied without the clamp needs (spec DIV-6). Only the clocks are drawn: thread 0
# reads from ``now_ns`` on, thread 1 from a drawn lead on, so that thread 1's later time can
# be applied between thread 0's reading and its use.

LINE_OPTIONS: Final = Options(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=UNIT,
    bp_soft_debt_units=1,
    bp_hard_debt_units=2,
    bp_stop_debt_units=4,
    bp_cold_start_fail_safe_units=1,
    bp_pacing_soft_debt_units=1,
    bp_warmup_min_samples=1,
    bp_floor_bps=100_000,
    bp_idle_reset_ms=1,
    bp_max_delay_us=50_000,
)
"""Backpressure and pacing on, warm after one sample: above one unit of debt a write is
throttled (FC-7) and a flush bypasses pacing (FC-9); at one unit a flush is paced (FC-10)."""

WARM: Final[Script] = [
    ("enqueue", (0, UNIT)),
    ("io_built", (0, UNIT, 1_000_000)),
    ("mark_done", (0,)),
]
"""A prelude's start: one I/O sample of 1 MB/s, so the controller is warm (AR-4)."""

TASK_A, TASK_B, EMPTY_TASK = 1, 2, 3
"""The tasks a race's prelude charges: two with bytes, and an empty one."""

CHARGED: Final[Script] = [
    *WARM,
    ("enqueue", (TASK_A, 3 * UNIT // 2)),
    ("enqueue", (TASK_B, UNIT // 2)),
    ("enqueue", (EMPTY_TASK, 0)),
]
"""A warm controller with two units of debt: a write is throttled (FC-7)."""

PACEABLE: Final[Script] = [
    *WARM,
    ("enqueue", (TASK_A, UNIT // 2)),
    ("enqueue", (TASK_B, UNIT // 2)),
    ("enqueue", (EMPTY_TASK, 0)),
]
"""A warm controller with one unit of debt, at the pacing threshold: a flush is paced (FC-10)."""

SETTLE_ALL: Final[Script] = [
    ("mark_done", (TASK_A,)),
    ("mark_done", (TASK_B,)),
    ("mark_done", (EMPTY_TASK,)),
]
"""Settles what a race leaves charged (settling a task twice is an error both sides agree on)."""

SETTLE_TO_IDLE: Final[Script] = [("mark_done", (TASK_A,)), ("mark_done", (TASK_B,))]
"""Settles every charged task but the empty one: the debt reaches 0, the controller goes idle."""


@dataclass(frozen=True, slots=True)
class LineRace:
    """Two threads' calls on a prepared controller, and what is settled after them."""

    prelude: Script
    scripts: tuple[Script, Script]
    after: Script
    tasks: int = 5


LINE_RACES: Final[dict[str, LineRace]] = {
    # The slow path of a write reads five fields: an I/O report that moves the debt below soft
    # and the throughput must be seen whole or not at all (FC-6, FC-7).
    "write/io": LineRace(
        CHARGED,
        ([("fg_write", (UNIT,))], [("io_built", (TASK_A, UNIT * 7 // 10, 1_000_000))]),
        SETTLE_ALL,
    ),
    "write_nowait/settle": LineRace(
        [*CHARGED, ("io_built", (TASK_A, 3 * UNIT // 2, 2_000_000))],
        ([("fg_write_nowait", (UNIT,))], [("mark_done", (TASK_A,))]),
        SETTLE_ALL,
    ),
    # The fast path reads one flag without the lock, at every line of a critical section:
    # of an enqueue that pushes the debt past the quiet limit, and of an I/O report that
    # leaves a throttled debt throttled (the flag must never say quiet meanwhile, FC-6).
    "fast_path/enqueue": LineRace(
        WARM, ([("fg_write", (UNIT,))], [("enqueue", (4, 3 * UNIT))]), [("mark_done", (4,))]
    ),
    "fast_path/io": LineRace(
        CHARGED,
        ([("fg_write", (UNIT,))], [("io_built", (TASK_A, 3 * UNIT // 2, 2_000_000))]),
        SETTLE_ALL,
    ),
    "snapshot/io": LineRace(
        CHARGED,
        ([("snapshot", ())], [("io_built", (TASK_A, UNIT * 7 // 10, 1_000_000))]),
        SETTLE_ALL,
    ),
    "io/io": LineRace(
        CHARGED,
        (
            [("io_built", (TASK_A, UNIT, 500_000))],
            [("io_built", (TASK_B, UNIT // 2, 2_000_000))],
        ),
        SETTLE_ALL,
    ),
    "enqueue/settle": LineRace(
        CHARGED,
        ([("enqueue", (4, UNIT))], [("mark_done", (TASK_B,)), ("snapshot", ())]),
        [*SETTLE_ALL, ("mark_done", (4,))],
    ),
    # One scope is open; thread 0 opens and closes another, thread 1 closes the first: a
    # close lost to the other thread's update would leave one open for ever (FC-11, INV-7).
    "teardown_scopes": LineRace(
        [("enter_teardown", ())],
        ([("enter_teardown", ()), ("leave_teardown", ())], [("leave_teardown", ())]),
        [],
    ),
    "starving_scopes": LineRace(
        [("enter_starving", ())],
        ([("enter_starving", ()), ("leave_starving", ())], [("leave_starving", ())]),
        [],
    ),
    # Thread 1 settles every task but the empty one thread 0 flushes: the controller goes idle
    # at thread 1's later time and drops the deadline, which thread 0's commit then sets from
    # that time, not from its own earlier reading (FC-10, FC-12, DIV-6).
    "flush/settle_to_idle": LineRace(
        PACEABLE,
        ([("before_flush", (EMPTY_TASK,))], SETTLE_TO_IDLE),
        [("snapshot", ()), ("mark_done", (EMPTY_TASK,))],
    ),
    "flush_nowait/settle_to_idle": LineRace(
        PACEABLE,
        ([("before_flush_nowait", (EMPTY_TASK,))], SETTLE_TO_IDLE),
        [("snapshot", ()), ("mark_done", (EMPTY_TASK,))],
    ),
    # A flush decides behind a deadline that a flusher with a later clock just set: it must
    # decide at that later time (FC-10, DIV-6).
    "flush/flush_nowait": LineRace(
        PACEABLE,
        ([("before_flush", (TASK_B,))], [("before_flush_nowait", (TASK_A,))]),
        SETTLE_ALL,
    ),
    # A deadline is pending; thread 1 applies a later time (an empty enqueue changes nothing
    # else) and sees the deadline before the nowait flush commits: the flush's decision, made
    # at the earlier time, must not stand (FC-10, DIV-6).
    "flush_nowait/late_enqueue": LineRace(
        [*PACEABLE, ("before_flush_nowait", (TASK_A,))],
        ([("before_flush_nowait", (TASK_B,))], [("enqueue", (4, 0)), ("snapshot", ())]),
        [*SETTLE_ALL, ("mark_done", (4,))],
    ),
}
"""Pairs of operations on shared fields, with the state that makes their race visible."""

LEADS_NS: Final = (1_000, 700_000, 2_500_000)
"""How far thread 1's clock is ahead of thread 0's: a microsecond, below and above the idle
reset interval (1 ms, FC-12)."""


@st.composite
def race_clocks(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the readings of a race's two threads: thread 1 starts a drawn lead ahead."""
    lead = draw(st.sampled_from(LEADS_NS), label="thread 1's lead")
    steps = st.lists(st.sampled_from(CLOCK_STEPS_NS), min_size=3, max_size=3)
    behind, ahead = draw(steps), draw(steps)
    return (
        tuple(itertools.accumulate(behind, initial=0)),
        tuple(itertools.accumulate(ahead, initial=lead)),
    )


def line_race_run(race: LineRace, times: tuple[tuple[int, ...], ...]) -> ConcurrentRun:
    """Return ``race`` as a run on `LINE_OPTIONS` with the clocks ``times``."""
    return ConcurrentRun(
        options=LINE_OPTIONS,
        built_at_ns=0,
        now_ns=0,
        prelude=race.prelude,
        scripts=race.scripts,
        task_count=race.tasks,
        times=times,
    )


def race_examples() -> int:
    """Return how many clocks each race is run with: a few, as the profile allows."""
    return max(settings().max_examples // 100, 2)


@pytest.mark.no_crosshair("threads and a scheduler")
@pytest.mark.parametrize("race", sorted(LINE_RACES))
@settings(campaign_settings(), max_examples=race_examples())
@given(times=race_clocks())
def test_every_schedule_with_one_preemption_at_any_line_is_linearizable(
    race: str, times: tuple[tuple[int, ...], ...]
) -> None:
    # spec DIV-6, FC-6, FC-10, FC-11, INV-7: see the comment above LINE_OPTIONS.
    run = line_race_run(LINE_RACES[race], times)
    after = LINE_RACES[race].after
    runs: list[Scheduler] = []
    schedules = exhaust(
        lambda choose: runs.append(
            run_scheduled(run, choose, after=after, lines=True, max_preemptions=1)
        )
    )
    assert schedules == len(runs) > 2
    assert max(scheduler.preemptions for scheduler in runs) == 1
    CAMPAIGN_STATS["examples"] += 1
    CAMPAIGN_STATS["steps"] += sum(len(scheduler.trace) for scheduler in runs)
    CAMPAIGN_STATS["switches"] += sum(scheduler.switches for scheduler in runs)
    CAMPAIGN_STATS["traced lines"] += sum(scheduler.line_points for scheduler in runs)


@pytest.mark.no_crosshair("threads and a scheduler")
@pytest.mark.parametrize("second", EXHAUSTED_RACES)
def test_a_nowait_flush_is_linearizable_under_every_schedule_of_a_race(second: str) -> None:
    # spec DIV-6, FC-10: every interleaving of a nowait flush with each race is linearizable;
    # and some interleaving changes what the flush read before it commits, so the path that
    # decides again runs (the flush reads the clock each time it decides).
    run, after = flush_race("before_flush_nowait", second)
    decisions: list[int] = []
    schedules = exhaust(
        lambda choose: decisions.append(
            clock_reads(run_scheduled(run, choose, after=after), "thread 0")
        )
    )
    assert schedules == len(decisions) > 1
    assert min(decisions) == 1, "a flush that nothing disturbs decides once"
    assert max(decisions) > 1, "no schedule disturbed the flush between its decision and commit"


# --- where line-level points are -------------------------------------------------------------
# Last: a plain test, not a Hypothesis one, so that a planted bug fails a Hypothesis test first.


def test_line_points_are_the_lines_of_the_controller_core_only() -> None:
    # spec DIV-6: the trace function reports lines of controller.py and _rules.py, never of
    # the scheduler, the clock or the history recorder; and a line inside a critical section
    # is a point too: the other thread then waits for the lock.
    run, after = flush_race("before_flush_nowait", "enqueue")
    labels: set[str] = set()
    exhaust(
        lambda choose: labels.update(
            label
            for _, label in run_scheduled(
                run, choose, after=after, lines=True, max_preemptions=1
            ).trace
        )
    )
    files = {label.split()[1].split(":")[0] for label in labels if label.startswith("line ")}
    assert files == {"controller.py", "_rules.py"}
    assert "wait for state" in labels


CAMPAIGN_STATS: Counter[str] = Counter()
"""Examples, schedule points and thread switches run in this process."""


def teardown_module() -> None:
    """Report this module's campaign statistics to `flowpace verify`, if it asked for them."""
    if CAMPAIGN_STATS:
        record_stats("interleavings", **CAMPAIGN_STATS)
