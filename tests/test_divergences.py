"""Where the model deliberately differs from the seed (spec DIV-1 to DIV-6, divergences.md).

Each test passes on the reference model and would fail on the seed's behaviour; the seed's
answer is given in a comment next to the assertion it would break. The implementation side of
DIV-6 (no sleep under the state lock) is covered by the implementation's tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from flowpace_reference import transitions as model
from flowpace_reference.config import normalise, options_from_mapping
from flowpace_reference.types import (
    Config,
    ControllerState,
    DebtOverflowError,
    FlushDecision,
    Options,
    Outcome,
    TaskState,
    TaskStateError,
)
from flowpace_reference.u64 import U32_MAX, U64_MAX

MS = 1_000_000
"""One millisecond in nanoseconds."""

CONFIG = normalise(Options(enable_backpressure=True, enable_flush_pacing=True))
"""Upstream defaults with both features on."""


# --- DIV-1: zero-byte I/O is settled once ----------------------------------------------------


def test_div1_zero_byte_io_leaves_the_other_tasks_debt() -> None:
    """Spec DIV-1, AR-8, FC-5: a task that wrote 0 bytes settles nothing at done."""
    state = model.new_controller(CONFIG, 0)
    a = model.enqueue(CONFIG, state, 100, 0)
    b = model.enqueue(CONFIG, a.state, 100, 0)
    assert b.state.debt_bytes == 200

    a_built = model.io_built(CONFIG, b.state, a.task, 0, 1 * MS)
    # FC-2 moves A's charge from its estimate (100) to what it wrote (0); a 0-byte write is
    # no throughput sample.
    assert a_built.state.debt_bytes == 100
    assert a_built.state.io_sample_count == 0

    a_done = model.mark_done(CONFIG, a_built.state, a_built.task, 2 * MS)
    # The seed settles A's estimate again: debt 0 while B is outstanding, marks itself idle at
    # 2 ms, and takes an end-to-end sample of 100 bytes over 2 000 µs (50 000 B/s).
    assert a_done.state.debt_bytes == 100
    assert a_done.state.idle_since is None
    assert a_done.state.e2e_bps_ewma == 0
    assert a_done.state == a_built.state  # the done changed nothing in the controller
    assert a_done.task.done

    b_done = model.mark_done(CONFIG, a_done.state, b.task, 3 * MS)
    # B's settle brings the debt to exactly 0 (the seed's saturates from 0).
    assert b_done.state.debt_bytes == 0
    assert b_done.state.idle_since == 3 * MS


def test_div1_zero_byte_io_keeps_the_pacing_deadline() -> None:
    """Spec DIV-1, FC-12: with debt outstanding, a 0-byte task's done does not mark idle."""
    config = normalise(
        Options(
            enable_flush_pacing=True,
            bp_flush_unit_bytes=1_000_000,
            bp_warmup_min_samples=1,
            bp_max_delay_us=50_000,
        )
    )
    state = model.new_controller(config, 0)
    primer = model.enqueue(config, state, 10_000, 0)
    primer = model.io_built(config, primer.state, primer.task, 10_000, 10 * MS)
    state = model.mark_done(config, primer.state, primer.task, 0).state
    a = model.enqueue(config, state, 100, 0)
    b = model.enqueue(config, a.state, 100, 0)
    plan = model.plan_flush(config, b.state, a.task, 0)
    assert plan.decision is FlushDecision.PACED
    state = model.commit_flush(b.state, plan, 0)
    # interval = max(100, 1) * 1_000_000 // 1_000_000 (one sample of 10 000 B per 10 ms) µs.
    assert state.next_flush_at == 100 * 1_000

    built = model.io_built(config, state, a.task, 0, 1 * MS)
    done = model.mark_done(config, built.state, built.task, 1 * MS)

    # The seed reaches debt 0 here and clears the deadline B's flush would be paced against.
    assert done.state.debt_bytes == 100
    assert done.state.next_flush_at == 100 * 1_000


# --- DIV-2: a finished task takes no further operation ---------------------------------------


def finished_task() -> tuple[ControllerState, TaskState]:
    """Return a controller with debt outstanding and a task that wrote and is done."""
    state = model.new_controller(CONFIG, 0)
    other = model.enqueue(CONFIG, state, 500, 0)
    step = model.enqueue(CONFIG, other.state, 300, 0)
    step = model.io_built(CONFIG, step.state, step.task, 200, 1 * MS)
    step = model.mark_done(CONFIG, step.state, step.task, 2 * MS)
    assert step.state.debt_bytes == 500
    assert step.task.done
    return step.state, step.task


MISUSES: dict[str, Callable[[Config, ControllerState, TaskState], object]] = {
    "mark_done": lambda config, state, task: model.mark_done(config, state, task, 3 * MS),
    "io_built": lambda config, state, task: model.io_built(config, state, task, 200, 1 * MS),
    "io_built_zero": lambda config, state, task: model.io_built(config, state, task, 0, 0),
    "mark_outcome": lambda _config, _state, task: model.mark_outcome(task, Outcome.SKIP),
    "force_bypass": lambda _config, _state, task: model.force_bypass(task),
    "before_flush": lambda config, state, task: model.plan_flush(config, state, task, 3 * MS),
}
"""Every operation on a task, applied to a finished one (spec ERR-1)."""


@pytest.mark.parametrize("operation", sorted(MISUSES))
def test_div2_operation_on_finished_task_raises(operation: str) -> None:
    """Spec DIV-2, ERR-1: any operation on a finished task raises and changes nothing."""
    state, task = finished_task()
    state_before = dataclasses.replace(state)
    task_before = dataclasses.replace(task)

    with pytest.raises(TaskStateError) as raised:
        MISUSES[operation](CONFIG, state, task)

    # The seed settles, samples or paces again, silently: a second mark_done would take the
    # other task's 500 bytes down to 300.
    assert isinstance(raised.value, RuntimeError)
    assert state == state_before
    assert task == task_before


def test_div2_second_io_built_raises() -> None:
    """Spec DIV-2, ERR-1: a live task reports its I/O once; the second report raises."""
    state = model.new_controller(CONFIG, 0)
    step = model.enqueue(CONFIG, state, 100, 0)
    built = model.io_built(CONFIG, step.state, step.task, 150, 1 * MS)
    assert built.state.debt_bytes == 150
    assert built.state.io_sample_count == 1

    with pytest.raises(TaskStateError):
        model.io_built(CONFIG, built.state, built.task, 150, 1 * MS)

    # The seed adds the 50-byte excess again (debt 200) and counts a second sample.
    assert built.state.debt_bytes == 150
    assert built.state.io_sample_count == 1
    assert not built.task.done


def test_div2_second_mark_done_would_have_taken_other_debt() -> None:
    """Spec DIV-2, INV-1: after the rejected second done, the debt is the other task's."""
    state, task = finished_task()

    with pytest.raises(TaskStateError):
        model.mark_done(CONFIG, state, task, 3 * MS)

    # The other task, still outstanding, holds the whole debt (INV-1).
    assert state.debt_bytes == 500


# --- DIV-3: overflowing the debt or a scope is rejected --------------------------------------


def test_div3_enqueue_past_u64_max_raises() -> None:
    """Spec DIV-3, ERR-2: an enqueue that would take the debt past U64_MAX raises."""
    state = model.new_controller(CONFIG, 0)
    full = model.enqueue(CONFIG, state, U64_MAX, 0)
    assert full.state.debt_bytes == U64_MAX  # exactly U64_MAX is valid

    with pytest.raises(DebtOverflowError) as raised:
        model.enqueue(CONFIG, full.state, 1, 0)

    # The seed's fetch_add wraps the debt to 0.
    assert isinstance(raised.value, OverflowError)
    assert full.state.debt_bytes == U64_MAX


def test_div3_rejected_enqueue_performs_no_idle_reset() -> None:
    """Spec DIV-3, ERR-2: a rejected enqueue keeps the throughput history and idle time."""
    state = dataclasses.replace(
        model.new_controller(CONFIG, 0),
        debt_bytes=U64_MAX - 5,
        io_bps_ewma=1_000_000,
        io_sample_count=9,
        idle_since=0,
    )
    late = (CONFIG.bp_idle_reset_ms + 1) * MS

    with pytest.raises(DebtOverflowError):
        model.enqueue(CONFIG, state, 6, late)

    assert state.io_bps_ewma == 1_000_000
    assert state.io_sample_count == 9
    assert state.idle_since == 0
    # One byte less fits, resets and clears the idle time.
    accepted = model.enqueue(CONFIG, state, 5, late).state
    assert accepted.debt_bytes == U64_MAX
    assert (accepted.io_bps_ewma, accepted.io_sample_count, accepted.idle_since) == (0, 0, None)


def test_div3_io_built_excess_past_u64_max_raises() -> None:
    """Spec DIV-3, ERR-2: an actual size whose excess would take the debt past U64_MAX raises."""
    state = model.new_controller(CONFIG, 0)
    step = model.enqueue(CONFIG, state, U64_MAX - 10, 0)
    at_limit = model.io_built(CONFIG, step.state, step.task, U64_MAX, 1 * MS)
    assert at_limit.state.debt_bytes == U64_MAX  # an excess that reaches U64_MAX exactly

    others = dataclasses.replace(model.new_controller(CONFIG, 0), debt_bytes=U64_MAX - 20)
    step = model.enqueue(CONFIG, others, 10, 0)
    assert step.state.debt_bytes == U64_MAX - 10
    # The task's estimate of 10 bytes is part of the debt; an actual size of 21 adds 11.
    with pytest.raises(DebtOverflowError):
        model.io_built(CONFIG, step.state, step.task, 21, 1 * MS)

    assert step.state.debt_bytes == U64_MAX - 10
    assert not step.task.io_reported


@pytest.mark.parametrize(
    ("enter", "field"),
    [
        (model.enter_teardown, "teardown_bypass_scopes"),
        (model.enter_starving, "arena_starving_scopes"),
    ],
)
def test_div3_scope_past_u64_max_raises(
    enter: Callable[[ControllerState], ControllerState], field: str
) -> None:
    """Spec DIV-3, ERR-2, FC-11: a scope count at U64_MAX cannot grow."""
    below = dataclasses.replace(model.new_controller(CONFIG, 0), **{field: U64_MAX - 1})
    full = enter(below)
    assert getattr(full, field) == U64_MAX

    with pytest.raises(DebtOverflowError) as raised:
        enter(full)

    # The seed wraps the count to 0, switching the bypass off with every scope still open.
    assert isinstance(raised.value, OverflowError)
    assert getattr(full, field) == U64_MAX


# --- DIV-4: the I/O sample count saturates ---------------------------------------------------


def test_div4_io_sample_count_saturates() -> None:
    """Spec DIV-4, FC-2: the sample count stays at U64_MAX; the sample still counts."""
    state = dataclasses.replace(model.new_controller(CONFIG, 0), io_sample_count=U64_MAX)
    step = model.enqueue(CONFIG, state, 1_000, 0)

    built = model.io_built(CONFIG, step.state, step.task, 1_000, 1 * MS)

    # The seed wraps to 0 and falls back into cold start. The sample, 1_000 * 1_000_000 //
    # 1_000 = 1 000 000 B/s, is the first into the EWMA, which takes it whole.
    assert built.state.io_sample_count == U64_MAX
    assert built.state.io_bps_ewma == 1_000_000


# --- DIV-5: options the seed overflows on are rejected ---------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"bp_soft_debt_units": U32_MAX}, "bp_soft_debt_units"),
        ({"bp_hard_debt_units": U32_MAX}, "bp_hard_debt_units"),
        ({"bp_soft_debt_units": U32_MAX - 1, "bp_hard_debt_units": 0}, "bp_hard_debt_units"),
        (
            {"bp_soft_debt_units": U32_MAX - 1, "bp_hard_debt_units": U32_MAX - 1},
            "bp_hard_debt_units",
        ),
    ],
)
def test_div5_thresholds_upstream_overflows_on_are_rejected(
    options: dict[str, int], named: str
) -> None:
    """Spec DIV-5, CFG-3: a soft or normalised hard threshold of U32_MAX raises, naming it."""
    with pytest.raises(ValueError, match=named):
        normalise(options_from_mapping(options))


def test_div5_largest_representable_thresholds_are_accepted() -> None:
    """Spec DIV-5, CFG-2: one below the overflow, the thresholds normalise as upstream's."""
    config = normalise(Options(bp_soft_debt_units=U32_MAX - 2, bp_hard_debt_units=0))
    # hard <= soft becomes soft + 1; stop (48) <= hard becomes hard + 1 = U32_MAX.
    assert config.bp_hard_debt_units == U32_MAX - 1
    assert config.bp_stop_debt_units == U32_MAX


# --- DIV-6 (model side): the pacing commit reads the deadline at commit time -----------------

PACED = normalise(
    Options(
        enable_flush_pacing=True,
        bp_floor_bps=1_000_000,
        bp_flush_unit_bytes=1_000_000,
        bp_soft_debt_units=1,
        bp_pacing_soft_debt_units=1,
        bp_warmup_min_samples=1,
        bp_max_delay_us=50_000,
    )
)
"""Pacing on, warm after one sample; debts below 1 000 000 bytes are paced."""


def primed() -> ControllerState:
    """Return a controller at time 0 with one I/O sample of 1 000 000 B/s and no debt."""
    step = model.enqueue(PACED, model.new_controller(PACED, 0), 10_000, 0)
    step = model.io_built(PACED, step.state, step.task, 10_000, 10 * MS)
    state = model.mark_done(PACED, step.state, step.task, 0).state
    assert (state.io_bps_ewma, state.next_flush_at) == (1_000_000, None)
    return state


def with_tasks(state: ControllerState, count: int) -> tuple[ControllerState, list[TaskState]]:
    """Return ``state`` with ``count`` tasks of 40 000 bytes enqueued at 0, and the tasks."""
    tasks = []
    for _ in range(count):
        step = model.enqueue(PACED, state, 40_000, 0)
        state = step.state
        tasks.append(step.task)
    return state, tasks


def test_div6_concurrent_commits_stack_deadlines() -> None:
    """Spec DIV-6, FC-10: two flushes planned together each push the deadline at commit."""
    state, tasks = with_tasks(primed(), 3)
    # Each task's interval: 40_000 * 1_000_000 // 1_000_000 = 40 000 µs (below 50 000).
    first = model.plan_flush(PACED, state, tasks[0], 0)
    state = model.commit_flush(state, first, 0)
    assert state.next_flush_at == 40 * MS

    # Two flushes ask at 0, both see the deadline 40 ms and sleep 40 ms.
    second = model.plan_flush(PACED, state, tasks[1], 0)
    third = model.plan_flush(PACED, state, tasks[2], 0)
    assert second.sleep_ns == third.sleep_ns == 40 * MS
    state = model.commit_flush(state, second, 40 * MS)
    assert state.next_flush_at == 80 * MS
    state = model.commit_flush(state, third, 40 * MS)

    # Read at commit time, the deadline is 80 ms, so the third pushes it to 120 ms; a deadline
    # read when the third asked (40 ms) would lose the second's interval: 80 ms again.
    assert state.next_flush_at == 120 * MS


def test_div6_commit_after_idle_marking_starts_from_commit_time() -> None:
    """Spec DIV-6, FC-10, FC-12: a deadline cleared during the sleep is honoured at commit."""
    state, tasks = with_tasks(primed(), 3)
    # Build a deadline far ahead (120 ms) as above: one flush, then two planned together.
    state = model.commit_flush(state, model.plan_flush(PACED, state, tasks[0], 0), 0)
    second = model.plan_flush(PACED, state, tasks[1], 0)
    third = model.plan_flush(PACED, state, tasks[2], 0)
    state = model.commit_flush(state, second, 40 * MS)
    state = model.commit_flush(state, third, 40 * MS)
    assert state.next_flush_at == 120 * MS

    # A metadata-sized task (estimate 0) asks at 40 ms: 80 ms to the deadline, capped at the
    # 50 ms maximum. Its interval: max(0, 1) * 1_000_000 // 1_000_000 = 1 µs.
    small = model.enqueue(PACED, state, 0, 40 * MS)
    state = small.state
    plan = model.plan_flush(PACED, state, small.task, 40 * MS)
    assert plan.decision is FlushDecision.PACED
    assert (plan.sleep_ns, plan.interval_us) == (50 * MS, 1)

    # While it sleeps, the three other tasks finish: the debt reaches 0, the controller is
    # marked idle and the deadline is cleared (FC-12).
    for task in tasks:
        state = model.mark_done(PACED, state, task, 40 * MS).state
    assert (state.debt_bytes, state.next_flush_at) == (0, None)

    committed = model.commit_flush(state, plan, 90 * MS)

    # The commit finds no deadline and starts from its own time: 90 ms + 1 µs. A deadline
    # read when the flush asked would give max(120 ms, 90 ms) + 1 µs; the seed, whose done
    # blocks behind the sleep and clears the deadline after the commit, ends with none.
    assert committed.next_flush_at == 90 * MS + 1_000
