"""The stop regime is logged as writers see it (spec HARD-12), rate-limited in controller time."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flowpace import FlowController, FlowOptions
from flowpace.testing import ManualClock

if TYPE_CHECKING:
    import pytest

UNIT = 1_000
OPTIONS = FlowOptions(
    enable_backpressure=True,
    bp_flush_unit_bytes=UNIT,
    bp_soft_debt_units=1,
    bp_hard_debt_units=2,
    bp_stop_debt_units=3,
    bp_cold_start_fail_safe_units=1,  # cold start delays from 1 unit: no sample is needed here
)


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "flowpace"]


def test_entering_and_leaving_stop_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    ctl = FlowController(OPTIONS, clock=clock)
    caplog.set_level(logging.INFO, logger="flowpace")
    tasks = [ctl.on_enqueue_est(UNIT) for _ in range(3)]  # 3 units: at stop (cold or warm)
    for _ in range(3):
        ctl.before_foreground_write_nowait(10)
    entered = _records(caplog)
    assert len(entered) == 1
    level, message = entered[0]
    assert level == logging.WARNING
    assert "debt of 3000 bytes reached stop (3 units of 1000 bytes)" in message
    assert "10000 us each" in message  # the default maximum delay
    ctl.on_mark_done(tasks.pop())  # 2 units: below stop
    ctl.before_foreground_write_nowait(10)
    ctl.before_foreground_write_nowait(10)
    left = _records(caplog)[1:]
    assert left == [(logging.INFO, "flowpace: debt of 2000 bytes is below stop again at 0 ns")]


def test_a_delay_capped_below_stop_is_not_taken_for_stop(caplog: pytest.LogCaptureFixture) -> None:
    # A huge write in the hard zone is capped at the maximum delay too: that is not stop.
    ctl = FlowController(OPTIONS, clock=ManualClock())
    caplog.set_level(logging.INFO, logger="flowpace")
    backlog = [ctl.on_enqueue_est(UNIT) for _ in range(2)]
    assert ctl.before_foreground_write_nowait(10**12) == 10_000 * 1_000
    assert _records(caplog) == []
    assert len(backlog) == 2


def test_entries_within_a_minute_are_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    ctl = FlowController(OPTIONS, clock=clock)
    caplog.set_level(logging.WARNING, logger="flowpace")
    tasks = [ctl.on_enqueue_est(UNIT) for _ in range(2)]
    for _ in range(3):  # in and out of stop three times within a second
        extra = ctl.on_enqueue_est(UNIT)
        ctl.before_foreground_write_nowait(10)
        ctl.on_mark_done(extra)
        ctl.before_foreground_write_nowait(10)
        clock.advance_ns(100_000_000)
    assert len(_records(caplog)) == 1
    clock.advance_ns(60 * 10**9)
    extra = ctl.on_enqueue_est(UNIT)
    ctl.before_foreground_write_nowait(10)
    warnings = _records(caplog)
    assert len(warnings) == 2
    assert "(3 time(s) since the last report)" in warnings[1][1]  # 2 counted, and this one
    assert len(tasks) == 2
    ctl.on_mark_done(extra)
