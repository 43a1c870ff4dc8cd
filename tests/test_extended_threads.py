"""The extended law's stop across threads: blocked writers, woken by the debt or the limit.

Spec EXT-7, EXT-8 (e). Writers block at stop in the blocking form on a manual clock whose waits
block (`ManualClock(blocking_waits=True)`): time moves only when the test advances it, so what
a writer may do is decided by the operations Hypothesis draws, not by the machine's speed. The
test waits for the writers to be parked (`ManualClock.wait_for_waiters`) before each
operation; then, by the model's arithmetic:

- while the debt stays at or above the block's threshold and the clock before the deadline,
  every writer stays blocked (they are all parked again after the operation);
- once an operation lowers the debt below the threshold, every writer returns (woken, not
  timed out: the clock is before the deadline);
- once the clock reaches the deadline, every writer returns, having waited at least the limit.

The timeouts below are safety nets against a hang (a writer never woken), not measurements:
a correct controller meets each condition at once, whatever the machine's speed.
"""

from __future__ import annotations

import threading
import time
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowpace import FlowController, FlowOptions, FlowTask
from flowpace.testing import ManualClock
from flowpace.verify import campaign_settings
from flowpace_reference import extended
from flowpace_reference.config import normalise, options_from_mapping

SAFETY_S: Final = 10.0
"""Seconds to wait for the threads before calling them hung (never reached by a correct run:
a woken thread runs within milliseconds even on a loaded machine)."""

LIMIT_NS: Final = 5_000_000
OPTIONS: Final = {
    "enable_backpressure": True,
    "bp_flush_unit_bytes": 1_000,
    "bp_soft_debt_units": 1,
    "bp_hard_debt_units": 2,
    "bp_stop_debt_units": 4,
    "bp_warmup_min_samples": 1,
    "ext_admission_timeline": True,
    "ext_stop_wait_limit_ns": LIMIT_NS,
}
EXTENDED_AT_STOP: Final = FlowOptions(**OPTIONS)  # type: ignore[arg-type]  # the dict's values
"""The same options for a controller: stop at 4 000 bytes, a writer blocked there for 5 ms."""
BELOW: Final = extended.stop_below_bytes(
    extended.extended_config(normalise(options_from_mapping(OPTIONS)))
)
"""The debt a blocked writer waits to fall below: 4 units of 1 000 bytes (EXT-5)."""

OPERATIONS: Final = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, LIMIT_NS + 1_000)),
        st.tuples(st.just("settle"), st.integers(0, 5)),
        st.tuples(st.just("enqueue"), st.integers(0, 2_000)),
    ),
    min_size=1,
    max_size=6,
)


class Writers:
    """Writer threads in the blocking form, and what each returned."""

    def __init__(self, ctl: FlowController, count: int) -> None:
        """Start ``count`` writers of 100 bytes each."""
        self.results: list[int] = []
        self.threads = [
            threading.Thread(target=self.write, args=(ctl,), daemon=True) for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def write(self, ctl: FlowController) -> None:
        """Write once, as the law decides; keep the ns waited."""
        self.results.append(ctl.before_foreground_write(100))

    def join(self) -> bool:
        """Return whether every writer returned (within the safety net)."""
        give_up = time.monotonic() + SAFETY_S  # one safety net for them all
        for thread in self.threads:
            thread.join(max(give_up - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in self.threads)


@pytest.mark.no_crosshair("real threads")
@settings(campaign_settings(), max_examples=max(campaign_settings().max_examples // 2, 25))
@given(writers=st.integers(1, 3), operations=OPERATIONS)
def test_blocked_writers_wake_when_the_debt_falls_or_the_limit_passes(
    writers: int, operations: list[tuple[str, int]]
) -> None:
    clock = ManualClock(blocking_waits=True)
    ctl = FlowController(EXTENDED_AT_STOP, clock=clock)
    tasks: list[FlowTask] = [ctl.on_enqueue_est(1_500) for _ in range(3)]  # 4.5 units: stop
    debt = 4_500
    started = clock.monotonic_ns()
    deadline = started + LIMIT_NS
    group = Writers(ctl, writers)
    assert clock.wait_for_waiters(writers, timeout_s=SAFETY_S), "writers never blocked"
    for kind, amount in operations:
        if kind == "advance":
            clock.advance_ns(amount)
        elif kind == "settle" and tasks:
            task = tasks.pop(amount % len(tasks))
            debt -= task.est_bytes
            ctl.on_mark_done(task)
        elif kind == "enqueue":
            tasks.append(ctl.on_enqueue_est(amount))
            debt += amount
        if debt < BELOW or clock.monotonic_ns() >= deadline:
            break
        # EXT-7: neither the debt nor the limit lets a writer through: all are parked again.
        assert clock.wait_for_waiters(writers, timeout_s=SAFETY_S), "a writer left its block"
        assert group.results == []
    else:
        # Nothing let them through: the limit does, once the clock reaches the deadline.
        clock.advance_ns(max(deadline - clock.monotonic_ns(), 0))
    timed_out = debt >= BELOW
    assert group.join(), "a blocked writer was never woken"
    assert len(group.results) == writers
    if timed_out:
        # EXT-7, EXT-8 e: each waited its limit, and no more (nothing else moved the clock).
        assert group.results == [clock.monotonic_ns() - started] * writers
        assert all(result >= LIMIT_NS for result in group.results)
    else:
        # Woken by the debt before the deadline: none waited for its limit.
        assert all(result < LIMIT_NS for result in group.results) or clock.monotonic_ns() > deadline
    assert ctl.snapshot().debt_bytes == debt
