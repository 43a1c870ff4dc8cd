"""Task handles that are hard to misuse: ``with task:``, the unsettled-task warning, write-offs.

Spec HARD-9 to HARD-11. Expected debts and samples are computed here from the spec's rules
(FC-2, FC-5, AR-8), not read from the controller.
"""

from __future__ import annotations

import gc
import warnings

import pytest

from flowpace import FlowController, FlowOptions, FlowOutcome
from flowpace.testing import ManualClock

OPTIONS = FlowOptions(enable_backpressure=True, bp_flush_unit_bytes=1_000, bp_warmup_min_samples=1)


def _controller() -> tuple[FlowController, ManualClock]:
    clock = ManualClock()
    return FlowController(OPTIONS, clock=clock), clock


def _lose_task(ctl: FlowController, est_bytes: int, actual_bytes: int | None) -> None:
    """Enqueue a task (and report its I/O), then drop the only handle on it."""
    task = ctl.on_enqueue_est(est_bytes)
    if actual_bytes is not None:
        ctl.on_io_built(task, actual_bytes, 1_000_000)
    del task
    gc.collect()


def test_leaving_the_with_settles_a_flushed_task_and_samples_end_to_end() -> None:
    # spec HARD-9: a body that ends normally is a flush that ended: FC-5 with FLUSHED.
    ctl, clock = _controller()
    task = ctl.on_enqueue_est(1_000)
    with task as entered:
        assert entered is task
        clock.advance_ns(4_000_000)
        ctl.on_io_built(task, 800, 2_000_000)
    state = ctl.snapshot()
    assert task.snapshot().done
    assert task.snapshot().outcome is FlowOutcome.FLUSHED
    assert state.debt_bytes == 0
    assert state.e2e_bps_ewma == 800 * 1_000_000 // 4_000  # 800 bytes over 4 ms
    assert ctl.outstanding_tasks == 0


def test_a_body_that_raises_settles_as_skip_and_takes_no_end_to_end_sample() -> None:
    # spec HARD-9: SKIP replaces the FLUSHED of on_io_built, so no end-to-end sample is taken.
    ctl, clock = _controller()
    task = ctl.on_enqueue_est(1_000)

    def flush_that_fails() -> None:
        with task:
            clock.advance_ns(4_000_000)
            ctl.on_io_built(task, 800, 2_000_000)
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        flush_that_fails()
    assert task.snapshot().done
    assert task.snapshot().outcome is FlowOutcome.SKIP
    state = ctl.snapshot()
    assert state.debt_bytes == 0
    assert state.e2e_bps_ewma == 0
    assert state.io_bps_ewma == 800 * 1_000_000 // 2_000  # the I/O sample stays: it was real


def test_an_interrupt_in_the_body_settles_too() -> None:
    ctl, _ = _controller()
    task = ctl.on_enqueue_est(1_000)

    def interrupted() -> None:
        with task:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert ctl.snapshot().debt_bytes == 0
    assert task.snapshot().outcome is FlowOutcome.SKIP


def test_a_body_that_settles_itself_is_left_alone() -> None:
    ctl, _ = _controller()
    task = ctl.on_enqueue_est(1_000)
    with task:
        task.mark_outcome(FlowOutcome.EMPTY)
        ctl.on_mark_done(task)
    assert task.snapshot().outcome is FlowOutcome.EMPTY
    assert ctl.snapshot().debt_bytes == 0


def test_outstanding_tasks_counts_charged_unsettled_tasks() -> None:
    # spec HARD-11
    ctl, _ = _controller()
    tasks = [ctl.on_enqueue_est(n) for n in (100, 200, 0)]
    assert ctl.outstanding_tasks == 3
    ctl.on_mark_done(tasks[1])
    assert ctl.outstanding_tasks == 2
    with pytest.raises(OverflowError):
        ctl.on_enqueue_est(2**64 - 1)  # rejected: never charged, never counted (ERR-2)
    assert ctl.outstanding_tasks == 2
    for task in (tasks[0], tasks[2]):
        ctl.on_mark_done(task)
    assert ctl.outstanding_tasks == 0


def test_a_task_collected_unsettled_warns_and_its_charge_can_be_written_off() -> None:
    # spec HARD-10
    ctl, clock = _controller()
    kept = ctl.on_enqueue_est(300)
    with pytest.warns(ResourceWarning, match=r"est_bytes=1000\).*charge of 700 bytes"):
        _lose_task(ctl, 1_000, 700)  # its charge is 700 when lost (AR-8)
    assert ctl.snapshot().debt_bytes == 1_000  # 300 + 700: nothing settled by itself
    assert ctl.outstanding_tasks == 2
    clock.advance_ns(5)
    assert ctl.write_off_lost_tasks() == (1, 700)
    assert ctl.snapshot().debt_bytes == 300
    assert ctl.outstanding_tasks == 1
    assert ctl.write_off_lost_tasks() == (0, 0)  # each charge is written off once
    ctl.on_mark_done(kept)
    assert ctl.snapshot().debt_bytes == 0


def test_writing_off_the_last_charge_marks_the_controller_idle() -> None:
    ctl, clock = _controller()
    with pytest.warns(ResourceWarning):
        _lose_task(ctl, 1_000, None)
    clock.advance_ns(7_000)
    assert ctl.write_off_lost_tasks() == (1, 1_000)
    state = ctl.snapshot()
    assert state.debt_bytes == 0
    assert state.idle_since == 7_000  # FC-12, as on_mark_done would mark it
    assert state.e2e_bps_ewma == 0


def test_settled_and_rejected_tasks_do_not_warn() -> None:
    ctl, _ = _controller()
    holding = ctl.on_enqueue_est(1)
    gc.collect()  # earlier tests' garbage must not be collected under the filter below
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        task = ctl.on_enqueue_est(10)
        ctl.on_mark_done(task)
        del task
        with pytest.raises(OverflowError):
            ctl.on_enqueue_est(2**64 - 1)  # 1 + (2**64 - 1) does not fit: rejected (ERR-2)
        gc.collect()
    assert ctl.write_off_lost_tasks() == (0, 0)
    assert ctl.outstanding_tasks == 1
    ctl.on_mark_done(holding)
