"""The extended law's stop on real clocks: the timed `threading.Condition.wait` paths (EXT-7).

`tests/test_extended_threads.py` drives blocked writers on a manual clock. This file runs the
two waits a real deployment uses: `SystemClock.wait_until_ns` (the default clock) and, for a
clock without ``wait_until_ns``, the controller's own timed `Condition.wait`.

No verdict depends on the machine's speed. A writer woken by the debt is given a limit of a
minute, far beyond any wake-up latency; a writer left to time out is checked to have waited at
least its limit, which a slower machine only lengthens. The safety nets turn a hang into a
failure and are never reached by a correct controller.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Final

import pytest

from flowpace import FlowController
from flowpace.clock import SYSTEM_CLOCK, Clock, SystemClock
from test_extended_threads import EXTENDED_AT_STOP

SAFETY_S: Final = 30.0
"""Seconds before a writer that never returns is called hung (a safety net, not a measure)."""


class BareClock:
    """A real monotonic clock without ``wait_until_ns``: the controller waits by itself."""

    def monotonic_ns(self) -> int:
        """Return `time.monotonic_ns`."""
        return time.monotonic_ns()

    def sleep_ns(self, duration_ns: int) -> None:
        """Sleep for ``duration_ns`` nanoseconds."""
        time.sleep(duration_ns / 1e9)


CLOCKS: Final = [
    pytest.param(SYSTEM_CLOCK, id="SystemClock.wait_until_ns"),
    pytest.param(BareClock(), id="Condition.wait"),
]


def blocked_at_stop(
    clock: Clock, limit_ns: int
) -> tuple[FlowController, list[int], threading.Thread]:
    """Return a controller at stop under the law, and a writer thread blocked in it."""
    options = replace(EXTENDED_AT_STOP, ext_stop_wait_limit_ns=limit_ns)
    ctl = FlowController(options, clock=clock)
    waited: list[int] = []
    writer = threading.Thread(
        target=lambda: waited.append(ctl.before_foreground_write(100)), daemon=True
    )
    return ctl, waited, writer


def wait_until_blocked(ctl: FlowController) -> None:
    """Return once the writer waits on the condition (the count is read under the lock)."""
    give_up = time.monotonic() + SAFETY_S
    while True:
        with ctl._state_lock:
            if ctl._ext_blocked == 1:
                return
        assert time.monotonic() < give_up, "the writer never blocked at stop"
        time.sleep(0.001)


@pytest.mark.no_crosshair("real threads")
@pytest.mark.parametrize("clock", CLOCKS)
def test_a_writer_blocked_on_a_real_clock_is_woken_by_a_settle(clock: Clock) -> None:
    # spec EXT-7: the settle that takes the debt below stop notifies the waiting writer.
    limit_ns = 60 * 10**9  # a minute: only the settle can end this wait
    ctl, waited, writer = blocked_at_stop(clock, limit_ns)
    tasks = [ctl.on_enqueue_est(1_500) for _ in range(3)]  # 4 500 bytes: at stop (4 units)
    started = time.monotonic_ns()
    writer.start()
    wait_until_blocked(ctl)
    ctl.on_mark_done(tasks[0])  # 3 000 bytes: below stop
    writer.join(SAFETY_S)
    assert not writer.is_alive(), "the writer was not woken by the settle"
    assert len(waited) == 1
    assert 0 <= waited[0] <= time.monotonic_ns() - started  # at most the time it was away
    assert waited[0] < limit_ns
    assert ctl.snapshot().debt_bytes == 3_000


@pytest.mark.no_crosshair("real threads")
@pytest.mark.parametrize("clock", CLOCKS)
def test_a_writer_blocked_on_a_real_clock_proceeds_at_its_limit(clock: Clock) -> None:
    # spec EXT-7: nothing lowers the debt, so the write proceeds once its limit has passed.
    limit_ns = 20_000_000  # 20 ms
    ctl, waited, writer = blocked_at_stop(clock, limit_ns)
    for _ in range(3):
        ctl.on_enqueue_est(1_500)
    writer.start()
    writer.join(SAFETY_S)
    assert not writer.is_alive(), "the writer never reached its limit"
    assert len(waited) == 1
    assert waited[0] >= limit_ns  # never early; a loaded machine only makes it later
    assert ctl.snapshot().debt_bytes == 4_500


def test_the_system_clock_is_the_one_with_its_own_wait() -> None:
    # The two parameters above take the two paths of FlowController._ext_block.
    assert callable(getattr(SystemClock(), "wait_until_ns", None))
    assert not hasattr(BareClock(), "wait_until_ns")
