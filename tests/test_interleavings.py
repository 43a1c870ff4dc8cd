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
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from flowpace import FlowController
from flowpace.verify import campaign_settings, record_stats
from linearizability import (
    ConcurrentRun,
    FrozenClock,
    HistoryRecorder,
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


@pytest.mark.no_crosshair("threads and a scheduler")
@campaign_settings()
@given(run=concurrent_runs(threads=3, actions=3), data=st.data())
def test_controller_is_linearizable_under_every_drawn_schedule(
    run: ConcurrentRun, data: st.DataObject
) -> None:
    # spec DIV-6, INV-1, INV-7: the implementation's own locks are the scheduler's (through the
    # private lock factory of flowpace._sync), and every clock read and sleep is a schedule
    # point too, so Hypothesis chooses the thread at every place a preemption can matter.
    def choose(names: Sequence[str]) -> int:
        return data.draw(st.integers(0, len(names) - 1), label="next thread")

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
        note(scheduler.describe_trace())
    recorder.call(MAIN_THREAD, "snapshot", ())
    CAMPAIGN_STATS["examples"] += 1
    CAMPAIGN_STATS["steps"] += len(scheduler.trace)
    CAMPAIGN_STATS["switches"] += scheduler.switches
    event(f"{len(run.scripts)} threads, {min(scheduler.switches, 10)}+ switches")
    check_run(run, recorder.history, controller.snapshot())


CAMPAIGN_STATS: Counter[str] = Counter()
"""Examples, schedule points and thread switches run in this process."""


def teardown_module() -> None:
    """Report this module's campaign statistics to `flowpace verify`, if it asked for them."""
    if CAMPAIGN_STATS:
        record_stats("interleavings", **CAMPAIGN_STATS)
