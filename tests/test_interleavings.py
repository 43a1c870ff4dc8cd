"""Deterministic interleavings: the scheduler checked, then the controller under it (DIV-6).

The first half pins `scheduler` on a toy account whose races are known: an unlocked
read-modify-write loses an update under some schedule and a locked one never does; opposite lock
orders deadlock and the run says so; a thread that blocks where the scheduler cannot see fails
with its stack. Only then is the scheduler trusted with the controller.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Final

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from flowpace import FlowController
from flowpace.verify import campaign_settings, record_stats
from flowpace_reference.types import Options
from linearizability import (
    ConcurrentRun,
    FrozenClock,
    HistoryRecorder,
    Script,
    ThreadObserver,
    check_run,
    concurrent_runs,
    implementation_options,
)
from scheduler import (
    Chooser,
    DeadlockError,
    HangError,
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


# --- the controller under drawn schedules ----------------------------------------------------

MAIN_THREAD = -1
"""The thread number of calls made on the main thread, before and after the scheduled run."""


def run_scheduled(
    run: ConcurrentRun, choose: Chooser, *, after: Sequence[tuple[str, tuple[Hashable, ...]]] = ()
) -> Scheduler:
    """
    Run ``run`` under ``choose``, then ``after`` on the main thread; check it; return the run.

    The implementation's own locks are the scheduler's (through the private lock factory of
    flowpace._sync), and every clock read and sleep is a schedule point too, so ``choose``
    picks the thread at every place a preemption can matter (spec DIV-6).
    """
    scheduler = Scheduler(choose)
    clock = FrozenClock(run.built_at_ns)
    observer = ThreadObserver()
    controller = FlowController(
        implementation_options(run.options),
        clock=clock,
        observer=observer,
        _lock_factory=scheduler.lock,
    )
    clock.now_ns, clock.point = run.now_ns, scheduler.point
    ticks = itertools.count()
    recorder = HistoryRecorder(controller, clock, observer, ticks.__next__)
    recorder.run(MAIN_THREAD, run.prelude)
    for number, script in enumerate(run.scripts):
        scheduler.spawn(f"thread {number}", functools.partial(recorder.run, number, script))
    try:
        scheduler.run()
    finally:
        if currently_in_test_context():  # exhaustive runs have no Hypothesis example to note on
            note(scheduler.describe_trace())
    recorder.run(MAIN_THREAD, [*after, ("snapshot", ())])
    check_run(run, recorder.history, controller.snapshot())
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


CAMPAIGN_STATS: Counter[str] = Counter()
"""Examples, schedule points and thread switches run in this process."""


def teardown_module() -> None:
    """Report this module's campaign statistics to `flowpace verify`, if it asked for them."""
    if CAMPAIGN_STATS:
        record_stats("interleavings", **CAMPAIGN_STATS)
