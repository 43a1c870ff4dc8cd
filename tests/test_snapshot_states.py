"""Controllers built in drawn states; the model's error tests on the implementation (ST-1, ERR).

`flowpace.testing.controller_from_state` builds a controller in any state of the model's domain
(ST-1): counters at their ``u64`` limits, rare combinations such as idle with debt. The first
tests pin the hook itself: the controller it builds is in exactly that state, decides every
foreground write (its lock-free fast path included) and every flush as the model does from it,
and it refuses a state outside the domain. The state machine of `tests/test_stateful.py` starts
runs from such states.

The others are the implementation's twins of the model's error tests
(`tests/test_model_properties.py`, ``test_err*``, and `tests/test_error_messages.py`) that had
none: from a drawn state, each invalid call raises the model's error type, names what it
rejects, and changes nothing (spec ERR-1 to ERR-3).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from flowpace import FlowController, FlowOptions, FlowTask
from flowpace.testing import ManualClock, RecordingObserver, controller_from_state
from flowpace_reference import transitions as model
from flowpace_reference.config import normalise
from flowpace_reference.contracts import state_in_domain
from flowpace_reference.types import (
    Config,
    ControllerState,
    DebtOverflowError,
    FlushDecision,
    Options,
    TaskState,
    TaskStateError,
)
from flowpace_reference.u64 import NANOS_PER_MICRO, U64_MAX
from strategies import DEFAULT_NOW_NS, byte_counts, configs, far_states, states

NOT_INTS = st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=3), st.none())
"""Values of the wrong type for an integer argument: a bool is not one (spec ERR-3)."""

OUT_OF_U64 = st.one_of(st.integers(max_value=-1), st.integers(min_value=U64_MAX + 1))
"""Integers outside ``u64`` (spec ERR-3)."""


@dataclasses.dataclass
class Rig:
    """A controller built in a drawn state, with its clock and observer."""

    config: Config
    state: ControllerState
    ctl: FlowController
    clock: ManualClock
    observer: RecordingObserver

    def picture(self, *tasks: FlowTask) -> tuple[object, ...]:
        """Return everything an invalid call may not change (spec ERR-1 to ERR-3)."""
        return (
            self.ctl.snapshot(),
            tuple(task.snapshot() for task in tasks),
            self.clock.monotonic_ns(),
            self.clock.sleeps,
            self.observer.calls,
        )


def flow_options(config: Config) -> FlowOptions:
    """Return the implementation's options for a normalised configuration (CFG-2 keeps it)."""
    return FlowOptions(
        **{field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    )


def rig_at(config: Config, state: ControllerState) -> Rig:
    """Return a controller built at `DEFAULT_NOW_NS` in ``state``, on a manual clock."""
    clock, observer = ManualClock(DEFAULT_NOW_NS), RecordingObserver()
    ctl = controller_from_state(
        flow_options(config),
        state,
        clock=clock,
        observer=observer,
        async_sleep=clock.async_sleep_ns,
    )
    return Rig(config, state, ctl, clock, observer)


@st.composite
def rigs(draw: st.DrawFn) -> Rig:
    """Return a controller built in a drawn state: an ordinary one or a far one (ST-1)."""
    config = draw(configs())
    state = draw(
        st.one_of(
            states(config),
            far_states(now_ns=DEFAULT_NOW_NS, floor_bps=config.bp_floor_bps),
        )
    )
    assert state_in_domain(config, state)
    return rig_at(config, state)


def message_of(error: type[Exception], call: Callable[[], object]) -> str:
    """Return the message of the ``error`` that ``call`` raises."""
    with pytest.raises(error) as caught:
        call()
    return str(caught.value)


def names(text: str, word: str) -> bool:
    """Return whether ``text`` holds ``word`` as a word of its own, not inside another."""
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text) is not None


def run_coroutine(coroutine: object) -> int:
    """Return the result of a coroutine that awaits only the manual clock's sleep."""
    send = coroutine.send  # type: ignore[attr-defined]  # a coroutine, typed loosely here
    while True:
        try:
            send(None)
        except StopIteration as stop:
            return int(stop.value)


def enqueued(rig: Rig) -> FlowTask:
    """Return a new live task of ``rig``'s controller: of 0 bytes, so that no debt overflows."""
    return rig.ctl.on_enqueue_est(0)


# --- the hook (spec ST-1) --------------------------------------------------------------------


@given(rigs(), byte_counts())
def test_st1_a_controller_built_in_a_state_is_in_that_state_and_decides_as_the_model(
    rig: Rig, write_bytes: int
) -> None:
    # spec ST-1, FC-6..8: the snapshot is the state; every form of the foreground write,
    # the blocking one with its lock-free fast path included, decides as the model from it.
    assert rig.ctl.snapshot() == rig.state
    decision = model.before_foreground_write(rig.config, rig.state, write_bytes)
    assert rig.ctl.before_foreground_write_nowait(write_bytes) == decision.delay_us * 1_000
    # spec HARD-13: every form returns nanoseconds
    assert run_coroutine(rig.ctl.before_foreground_write_async(write_bytes)) == (
        decision.delay_us * 1_000
    )
    assert rig.ctl.before_foreground_write(write_bytes) == decision.delay_us * 1_000
    sleeps = (decision.delay_us * NANOS_PER_MICRO,) if decision.delay_us else ()
    event(f"delayed: {bool(decision.delay_us)}")
    assert rig.clock.sleeps == 2 * sleeps
    assert rig.observer.calls == 3 * decision.emissions
    assert rig.ctl.snapshot() == rig.state  # a write changes nothing (FC-8)


@given(rigs(), byte_counts())
def test_st1_fc9_a_controller_built_in_a_state_plans_flushes_as_the_model(
    rig: Rig, est_bytes: int
) -> None:
    # spec ST-1, FC-1, FC-9, FC-10: from the drawn state, an enqueue then a flush of the new
    # task are those of the model (or both reject the enqueue, ERR-2).
    now = rig.clock.monotonic_ns()
    try:
        step = model.enqueue(rig.config, rig.state, est_bytes, now)
    except DebtOverflowError:
        before = rig.picture()
        with pytest.raises(DebtOverflowError):
            rig.ctl.on_enqueue_est(est_bytes)
        assert rig.picture() == before
        return
    task = rig.ctl.on_enqueue_est(est_bytes)
    assert (rig.ctl.snapshot(), task.snapshot()) == (step.state, step.task)
    plan = model.plan_flush(rig.config, step.state, step.task, now)
    assert rig.ctl.before_flush_nowait(task) == plan.sleep_ns
    assert rig.ctl.snapshot() == model.commit_flush(step.state, plan, now + plan.sleep_ns)
    if plan.decision is not FlushDecision.PACED:
        assert plan.sleep_ns == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("debt_bytes", U64_MAX + 1),
        ("io_sample_count", -1),
        ("teardown_bypass_scopes", U64_MAX + 1),
        ("adaptive_floor_bps", 0),
        ("idle_since", -1),
        ("next_flush_at", -5),
    ],
)
def test_st1_a_state_outside_the_domain_is_refused(field: str, value: int) -> None:
    # spec ST-1, INV-7, INV-9: the hook builds only states of the model's domain.
    config = model_config()
    state = dataclasses.replace(model.new_controller(config, 0), **{field: value})
    assert not state_in_domain(config, state)
    text = message_of(
        ValueError,
        lambda: controller_from_state(flow_options(config), state, clock=ManualClock()),
    )
    assert names(text, field), text


def model_config() -> Config:
    """Return upstream's default configuration, normalised (CFG-2)."""
    return normalise(Options())


# --- ERR-3 on the implementation, from drawn states ------------------------------------------

IMPL_U64_ARGUMENTS: dict[str, Callable[[Rig, FlowTask, object], object]] = {
    "est_bytes": lambda rig, _task, value: rig.ctl.on_enqueue_est(value),  # type: ignore[arg-type]  # the bad value is the point
    "nbytes": lambda rig, task, value: rig.ctl.on_io_built(task, value, 0),  # type: ignore[arg-type]  # as above
    "write_bytes": lambda rig, _task, value: rig.ctl.before_foreground_write(value),  # type: ignore[arg-type]  # as above
}
"""Each u64 argument ERR-3 checks, by the model's name for it, and a call passing it."""


@given(rigs(), st.sampled_from(sorted(IMPL_U64_ARGUMENTS)), NOT_INTS, OUT_OF_U64)
def test_err3_implementation_bad_arguments_raise_and_change_nothing(
    rig: Rig, argument: str, not_int: object, out_of_range: int
) -> None:
    # spec ERR-3, the twin of test_model_properties' test_err3_bad_arguments_raise_naming_the_
    # argument: a non-int (or a bool) is a TypeError, an int outside u64 a ValueError naming
    # the argument (the write's is ``nbytes`` in the implementation); nothing changes.
    task = enqueued(rig)
    call = IMPL_U64_ARGUMENTS[argument]
    shown = "nbytes" if argument == "write_bytes" else argument
    before = rig.picture(task)
    with pytest.raises(TypeError):
        call(rig, task, not_int)
    assert names(message_of(ValueError, lambda: call(rig, task, out_of_range)), shown)
    assert rig.picture(task) == before


@given(rigs(), st.one_of(NOT_INTS, st.integers(max_value=-1), st.just(2**64 * 10**9)))
def test_err3_implementation_rejects_a_bad_elapsed(rig: Rig, elapsed: object) -> None:
    # spec ERR-3, the twin of test_err3_bad_elapsed_is_rejected: elapsed_ns is an int in
    # [0, ELAPSED_NS_LIMIT); the task keeps its estimate as its charge.
    task = enqueued(rig)
    before = rig.picture(task)
    with pytest.raises((TypeError, ValueError)) as caught:
        rig.ctl.on_io_built(task, 10, elapsed)  # type: ignore[arg-type]  # deliberately ill-typed
    assert names(str(caught.value), "elapsed_ns")
    assert rig.picture(task) == before


@given(rigs(), st.sampled_from(("Flushed", 1, None, True)))
def test_err3_implementation_outcome_must_be_an_outcome(rig: Rig, outcome: object) -> None:
    # spec ERR-3, the twin of test_err3_outcome_must_be_an_outcome: an outcome's name or value
    # is not an outcome, on a live task and on a finished one (ERR-3 before ERR-1).
    live = enqueued(rig)
    done = enqueued(rig)
    rig.ctl.on_mark_done(done)
    before = rig.picture(live, done)
    for task in (live, done):
        with pytest.raises(TypeError):
            task.mark_outcome(outcome)  # type: ignore[arg-type]  # deliberately ill-typed
    assert rig.picture(live, done) == before


# --- ERR-1 and ERR-2 on the implementation ---------------------------------------------------


def test_err_implementation_checks_come_in_order() -> None:
    # spec ERR-1 to ERR-3, the twin of test_err_checks_come_in_order: with the debt one byte
    # below u64::MAX, a finished task's bad report is a ValueError (ERR-3), and one that
    # would also overflow the debt a TaskStateError (ERR-1 before ERR-2).
    config = model_config()
    rig = rig_at(
        config, dataclasses.replace(model.new_controller(config, 0), debt_bytes=U64_MAX - 1)
    )
    done = enqueued(rig)
    rig.ctl.on_mark_done(done)
    before = rig.picture(done)
    assert names(message_of(ValueError, lambda: rig.ctl.on_io_built(done, -1, 0)), "nbytes")
    with pytest.raises(TaskStateError):
        rig.ctl.on_io_built(done, 10, 0)
    assert rig.picture(done) == before


def test_err1_implementation_second_io_report_says_already_reported() -> None:
    # spec ERR-1, DIV-2, the twin of test_err1_model_second_io_report_says_twice: a second
    # on_io_built is named as such, not as a finished task, and changes nothing.
    rig = rig_at(model_config(), model.new_controller(model_config(), 0))
    task = rig.ctl.on_enqueue_est(100)
    rig.ctl.on_io_built(task, 80, 1_000)
    before = rig.picture(task)
    text = message_of(TaskStateError, lambda: rig.ctl.on_io_built(task, 1, 0))
    assert names(text, "on_io_built"), text
    assert "already reported" in text, text
    assert rig.picture(task) == before


@given(rigs())
def test_err2_implementation_overflow_names_the_bound_and_changes_nothing(rig: Rig) -> None:
    # spec ERR-2, DIV-3, the twin of test_err2_model_overflow_names_the_bound: an enqueue one
    # byte past u64::MAX, a report that overflows, and a scope past u64::MAX, from any state.
    task = enqueued(rig)
    debt = rig.ctl.snapshot().debt_bytes
    before = rig.picture(task)
    if debt > 0:
        enqueue = lambda: rig.ctl.on_enqueue_est(U64_MAX - debt + 1)  # noqa: E731  # one call
        assert "u64::MAX" in message_of(DebtOverflowError, enqueue)
        report = lambda: rig.ctl.on_io_built(task, U64_MAX - debt + 1, 1_000)  # noqa: E731
        assert "u64::MAX" in message_of(DebtOverflowError, report)
    scoped = dataclasses.replace(rig.state, teardown_bypass_scopes=U64_MAX)
    twin = rig_at(rig.config, scoped)
    text = message_of(DebtOverflowError, twin.ctl.enter_teardown_bypass)
    assert "u64::MAX" in text
    assert names(text, "enter_teardown_bypass"), text
    assert twin.ctl.snapshot() == scoped
    assert rig.picture(task) == before


def test_err1_implementation_rejects_a_task_of_another_controller_first() -> None:
    # spec ERR-1, DIV-2: another controller's task is refused before the model's own checks
    # would apply (here, an overflow of this controller's debt, ERR-2).
    config = model_config()
    rig = rig_at(config, dataclasses.replace(model.new_controller(config, 0), debt_bytes=U64_MAX))
    foreign = FlowController().on_enqueue_est(0)
    before = rig.picture(foreign)
    text = message_of(TaskStateError, lambda: rig.ctl.on_io_built(foreign, U64_MAX, 1_000))
    assert "another controller" in text, text
    assert rig.picture(foreign) == before


def test_the_model_sees_a_live_task_where_the_implementation_sees_a_foreign_one() -> None:
    # spec ERR-1, DIV-2: ownership is the implementation's alone: the model accepts the same
    # report on the same values, so the rejection above is not the model's overflow check.
    config = model_config()
    state = dataclasses.replace(model.new_controller(config, 0), debt_bytes=1)
    task = TaskState(enqueue_at=0, est_bytes=1)
    assert model.io_built(config, state, task, U64_MAX, 1_000).state.debt_bytes == U64_MAX


def test_err3_implementation_rejects_an_outcome_naming_the_argument() -> None:
    # spec ERR-3, the twin of test_error_messages' test_err3_model_rejects_an_outcome_naming_
    # the_argument: an outcome that is not one is a TypeError naming ``outcome`` and the value.
    rig = rig_at(model_config(), model.new_controller(model_config(), 0))
    task = enqueued(rig)
    text = message_of(TypeError, lambda: task.mark_outcome("FLUSHED"))  # type: ignore[arg-type]  # the bad value is the point
    assert names(text, "outcome"), text
    assert "'FLUSHED'" in text
