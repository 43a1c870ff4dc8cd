"""A forked child's controller works (spec HARD-6).

Each test forks while another thread of the parent holds one of the controller's locks (a
blocking flusher sleeping in its paced flush holds the pacing lock across the sleep) and runs
the controller in the child. The child reports through its exit status; a safety-net alarm
turns a hang in the child into a failure instead of a hung test run (no verdict depends on
speed: a working child exits at once, a hung one never does).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import replace

import pytest

from flowpace import FlowController, FlowOptions, FlowTask
from flowpace._sync import LockLike, thread_lock
from flowpace.testing import ManualClock
from flowpace.testing import lock_factory as using_locks
from test_extended_threads import EXTENDED_AT_STOP

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")

PACED = FlowOptions(
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=2,
    bp_pacing_soft_debt_units=2,
    bp_warmup_min_samples=1,
    bp_max_delay_us=50_000,
)
"""Pacing on, steady state after one sample."""

SAFETY_NET_S = 60
"""Seconds after which a child that has not finished is killed: only a hang reaches it."""


class HeldSleepClock(ManualClock):
    """A manual clock whose sleeps on the thread named "sleeper" block until released."""

    def __init__(self) -> None:
        """Start at 0 with the gate closed."""
        super().__init__()
        self.asleep = threading.Event()
        self.release = threading.Event()

    def sleep_ns(self, duration_ns: int) -> None:
        """Block the sleeper thread until released; advance as a manual clock does."""
        if threading.current_thread().name == "sleeper":
            self.asleep.set()
            if not self.release.wait(timeout=SAFETY_NET_S):
                raise AssertionError("the sleeper was never released")
        super().sleep_ns(duration_ns)


def warm(ctl: FlowController, clock: ManualClock) -> None:
    """Give ``ctl`` one I/O sample of 1 MB/s."""
    primer = ctl.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)
    ctl.on_mark_done(primer)


def in_child(body: Callable[[], bool]) -> int:
    """Fork; run ``body`` in the child and exit 0 if it returns True; return its exit status."""
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock: that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            signal.alarm(SAFETY_NET_S)
            status = 0 if body() else 2
        except BaseException:  # noqa: BLE001 - reported through the exit status
            status = 3
        finally:
            sys.stdout.flush()
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def sleeping_flusher(
    lock_factory: Callable[[str], LockLike] = thread_lock,
) -> tuple[FlowController, HeldSleepClock, list[FlowTask], threading.Thread]:
    """Return a controller with a thread asleep in a paced `before_flush`, holding its lock."""
    clock = HeldSleepClock()
    with using_locks(lock_factory):
        ctl = FlowController(PACED, clock=clock)
    warm(ctl, clock)
    tasks = [ctl.on_enqueue_est(10) for _ in range(4)]
    assert ctl.before_flush(tasks[0]) == 0  # sets the deadline: the next paced flush sleeps
    sleeper = threading.Thread(target=ctl.before_flush, args=(tasks[1],), name="sleeper")
    sleeper.start()
    assert clock.asleep.wait(timeout=SAFETY_NET_S)
    return ctl, clock, tasks, sleeper


def test_a_paced_flush_asleep_in_the_parent_does_not_block_the_child() -> None:
    # spec HARD-6: the child's pacing lock is new, and free; its flushes, settles and
    # snapshots work, and its debt is the parent's at the fork.
    ctl, clock, tasks, sleeper = sleeping_flusher()
    try:

        def child() -> bool:
            debt = ctl.snapshot().debt_bytes
            slept = ctl.before_flush(tasks[2])  # paced: behind the deadline, on the free lock
            for task in tasks:
                ctl.on_mark_done(task)
            return debt == 40 and slept > 0 and ctl.snapshot().debt_bytes == 0

        assert in_child(child) == 0
    finally:
        clock.release.set()
        sleeper.join(timeout=SAFETY_NET_S)
    assert not sleeper.is_alive()
    ctl.before_flush(tasks[3])  # the parent goes on with its own locks
    assert ctl.snapshot().debt_bytes == 40


def test_a_child_makes_its_locks_anew_with_the_controllers_factory() -> None:
    # spec HARD-6, DIV-6: the locks the child uses come from the same factory, in lock order.
    names: list[str] = []

    def factory(name: str) -> LockLike:
        names.append(name)
        return thread_lock(name)

    ctl, clock, tasks, sleeper = sleeping_flusher(factory)
    try:
        assert names == ["pacing", "state"]
        assert in_child(lambda: names == ["pacing", "state", "pacing", "state"]) == 0
    finally:
        clock.release.set()
        sleeper.join(timeout=SAFETY_NET_S)
    assert names == ["pacing", "state"]  # the parent's locks are untouched
    assert ctl.before_flush_nowait(tasks[2]) >= 0


EXTENDED = replace(EXTENDED_AT_STOP, ext_stop_wait_limit_ns=10**12)
"""The extended law on, stop at 4 000 bytes; only a settle ends a block (far beyond the net)."""


def test_the_extended_law_blocks_and_wakes_a_writer_in_the_child() -> None:
    # spec HARD-6, EXT-7: the child's condition for writers blocked at stop is made anew on the
    # child's state lock, so a settle there wakes a writer blocked there (a condition left on
    # the parent's lock could not be notified under the child's: RuntimeError).
    clock = ManualClock(blocking_waits=True)
    ctl = FlowController(EXTENDED, clock=clock)
    tasks = [ctl.on_enqueue_est(1_500) for _ in range(3)]  # 4 500 bytes: at stop

    def child() -> bool:
        waited: list[int] = []
        writer = threading.Thread(
            target=lambda: waited.append(ctl.before_foreground_write(100)), daemon=True
        )
        writer.start()
        if not clock.wait_for_waiters(1, timeout_s=SAFETY_NET_S):
            return False
        ctl.on_mark_done(tasks[0])  # 3 000 bytes: below stop
        writer.join(SAFETY_NET_S)
        return not writer.is_alive() and waited == [0]  # woken before the clock moved

    assert in_child(child) == 0
    for task in tasks:  # the parent's controller is untouched by the child
        ctl.on_mark_done(task)
    assert ctl.snapshot().debt_bytes == 0


def test_a_fork_that_tore_the_fast_path_flag_from_the_debt_is_mended_in_the_child() -> None:
    # spec HARD-6, FC-6: a fork can cut an operation between its change of the debt and its
    # write of the fast path's flag (the idle reset's call, or anywhere without the GIL); the
    # lifecycle writes the flag only when it changes, so the child decides it anew.
    ctl = FlowController(
        FlowOptions(enable_backpressure=True, bp_flush_unit_bytes=1_000), clock=ManualClock()
    )
    held = ctl.on_enqueue_est(0)
    with ctl._state_lock:  # the torn state: the debt raised past the limit, the flag still up
        ctl._debt = ctl._quiet_debt + 1
        ctl._outstanding += 1
    assert ctl.before_foreground_write(100) == 0  # the torn flag lets the parent's write through

    def child() -> bool:
        delay = ctl.before_foreground_write_nowait(100)  # never takes the fast path
        ctl.on_mark_done(held)  # a settle, which only ever raises the flag
        return delay > 0 and ctl.before_foreground_write(100) == delay

    assert in_child(child) == 0
