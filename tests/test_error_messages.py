"""Every error names what it rejects, in the model and the implementation (CFG-3, ERR-1..3).

The type of each error is pinned elsewhere; these tests pin its message, which is what a user
reads first. A mutation run of the model found the messages unpinned: replacing any of them
(or the operation name a check is given) changed no other test's outcome.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest

from flowpace import FlowController, FlowOptions, FlowOutcome, FlowTask
from flowpace_reference import transitions as model
from flowpace_reference.config import check_options, normalise, options_from_mapping
from flowpace_reference.types import (
    ControllerState,
    DebtOverflowError,
    Options,
    Outcome,
    TaskState,
    TaskStateError,
)
from flowpace_reference.u64 import U32_MAX, U64_MAX

CONFIG = normalise(Options())
START = model.new_controller(CONFIG, 0)


def live_task() -> tuple[ControllerState, TaskState]:
    """Return the model's controller with one task enqueued, and the task."""
    step = model.enqueue(CONFIG, START, 100, 0)
    return step.state, step.task


def finished_task() -> tuple[ControllerState, TaskState]:
    """Return the model's controller after one task's life, and the finished task."""
    state, task = live_task()
    step = model.mark_done(CONFIG, state, task, 0)
    return step.state, step.task


def message_of(error: type[Exception], call: Callable[[], object]) -> str:
    """Return the message of the ``error`` that ``call`` raises."""
    with pytest.raises(error) as caught:
        call()
    return str(caught.value)


def names(text: str, word: str) -> bool:
    """Return whether ``text`` holds ``word`` as a word of its own, not inside another."""
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text) is not None


# --- ERR-3: arguments ------------------------------------------------------------------------

MODEL_ARGUMENTS: dict[str, Callable[[object], object]] = {
    "est_bytes": lambda value: model.enqueue(CONFIG, START, value, 0),  # type: ignore[arg-type]  # the bad value is the point
    "nbytes": lambda value: model.io_built(CONFIG, *live_task(), value, 0),  # type: ignore[arg-type]  # as above
    "elapsed_ns": lambda value: model.io_built(CONFIG, *live_task(), 1, value),  # type: ignore[arg-type]  # as above
    "write_bytes": lambda value: model.before_foreground_write(CONFIG, START, value),  # type: ignore[arg-type]  # as above
}
"""Each argument of the model that ERR-3 checks, and a call passing it ``value``."""


@pytest.mark.parametrize("argument", sorted(MODEL_ARGUMENTS))
def test_err3_model_argument_errors_name_the_argument_and_show_the_value(argument: str) -> None:
    # spec ERR-3: both messages name the argument and show the value.
    call = MODEL_ARGUMENTS[argument]
    wrong_type = message_of(TypeError, lambda: call("12"))
    assert names(wrong_type, argument), wrong_type
    assert "'12'" in wrong_type
    out_of_range = message_of(ValueError, lambda: call(-7))
    assert names(out_of_range, argument), out_of_range
    assert "-7" in out_of_range


def test_err3_model_rejects_an_outcome_naming_the_argument() -> None:
    # spec ERR-3: an outcome that is not an Outcome is a TypeError naming ``outcome``.
    _, task = live_task()
    text = message_of(TypeError, lambda: model.mark_outcome(task, "FLUSHED"))  # type: ignore[arg-type]  # the bad value is the point
    assert names(text, "outcome"), text
    assert "'FLUSHED'" in text


IMPL_ARGUMENTS: dict[str, Callable[[FlowController, object], object]] = {
    "est_bytes": lambda ctl, value: ctl.on_enqueue_est(value),  # type: ignore[arg-type]  # the bad value is the point
    "nbytes": lambda ctl, value: ctl.on_io_built(ctl.on_enqueue_est(1), value, 0),  # type: ignore[arg-type]  # as above
    "elapsed_ns": lambda ctl, value: ctl.on_io_built(ctl.on_enqueue_est(1), 1, value),  # type: ignore[arg-type]  # as above
    "nbytes ": lambda ctl, value: ctl.before_foreground_write_nowait(value),  # type: ignore[arg-type]  # as above
}
"""Each argument of the implementation that ERR-3 checks (a write's is ``nbytes`` too)."""


@pytest.mark.parametrize("argument", sorted(IMPL_ARGUMENTS))
def test_err3_implementation_argument_errors_name_the_argument_and_show_the_value(
    argument: str,
) -> None:
    # spec ERR-3, as the model: the implementation's messages name the argument and the value.
    call = IMPL_ARGUMENTS[argument]
    wrong_type = message_of(TypeError, lambda: call(FlowController(), "12"))
    assert names(wrong_type, argument.strip()), wrong_type
    assert "'12'" in wrong_type
    out_of_range = message_of(ValueError, lambda: call(FlowController(), -7))
    assert names(out_of_range, argument.strip()), out_of_range
    assert "-7" in out_of_range


# --- ERR-1: lifecycle misuse -----------------------------------------------------------------

MODEL_TASK_OPERATIONS: dict[str, Callable[[ControllerState, TaskState], object]] = {
    "io_built": lambda state, task: model.io_built(CONFIG, state, task, 1, 0),
    "mark_outcome": lambda _, task: model.mark_outcome(task, Outcome.FLUSHED),
    "force_bypass": lambda _, task: model.force_bypass(task),
    "mark_done": lambda state, task: model.mark_done(CONFIG, state, task, 0),
    "before_flush": lambda state, task: model.plan_flush(CONFIG, state, task, 0),
}
"""Each model operation on a task, by the name its errors use."""


@pytest.mark.parametrize("operation", sorted(MODEL_TASK_OPERATIONS))
def test_err1_model_misuse_names_the_operation_and_the_reason(operation: str) -> None:
    # spec ERR-1: the message names the operation and says the task is finished.
    text = message_of(TaskStateError, lambda: MODEL_TASK_OPERATIONS[operation](*finished_task()))
    assert names(text, operation), text
    assert names(text, "finished"), text


def test_err1_model_second_io_report_says_twice() -> None:
    # spec ERR-1: a second io_built is named as such, not as a finished task.
    state, task = live_task()
    step = model.io_built(CONFIG, state, task, 1, 0)
    text = message_of(TaskStateError, lambda: model.io_built(CONFIG, step.state, step.task, 1, 0))
    assert names(text, "io_built"), text
    assert names(text, "twice"), text


IMPL_TASK_OPERATIONS: dict[str, Callable[[FlowController], object]] = {
    "on_io_built": lambda ctl: ctl.on_io_built(done_task(ctl), 1, 0),
    "mark_outcome": lambda ctl: done_task(ctl).mark_outcome(FlowOutcome.FLUSHED),
    "mark_force_bypass": lambda ctl: done_task(ctl).mark_force_bypass(),
    "on_mark_done": lambda ctl: ctl.on_mark_done(done_task(ctl)),
    "before_flush": lambda ctl: ctl.before_flush(done_task(ctl)),
}
"""Each implementation operation on a task, by the name its errors use."""


def done_task(ctl: FlowController) -> FlowTask:
    """Return a task of ``ctl`` whose life is over."""
    task = ctl.on_enqueue_est(100)
    ctl.on_mark_done(task)
    return task


@pytest.mark.parametrize("operation", sorted(IMPL_TASK_OPERATIONS))
def test_err1_implementation_misuse_names_the_operation(operation: str) -> None:
    # spec ERR-1, as the model.
    ctl = FlowController()
    text = message_of(TaskStateError, lambda: IMPL_TASK_OPERATIONS[operation](ctl))
    assert names(text, operation), text
    assert names(text, "done"), text


# --- ERR-2: overflow -------------------------------------------------------------------------


def test_err2_model_overflow_names_the_bound() -> None:
    # spec ERR-2: debt and scope counts name u64::MAX.
    full = dataclasses.replace(START, debt_bytes=U64_MAX, idle_since=None)
    assert "u64::MAX" in message_of(DebtOverflowError, lambda: model.enqueue(CONFIG, full, 1, 0))
    scoped = dataclasses.replace(START, teardown_bypass_scopes=U64_MAX)
    text = message_of(DebtOverflowError, lambda: model.enter_teardown(scoped))
    assert "u64::MAX" in text
    assert "scope" in text


# --- CFG-3: options --------------------------------------------------------------------------


def test_cfg3_unknown_options_are_each_named() -> None:
    # spec CFG-3: every unknown name is listed; the model's mapping and the implementation agree.
    text = message_of(TypeError, lambda: options_from_mapping({"bp_soft": 1, "bp_hard": 2}))
    assert names(text, "bp_soft"), text
    assert names(text, "bp_hard"), text
    text = message_of(TypeError, lambda: FlowOptions(bp_sfot_debt_units=1))  # type: ignore[call-arg]  # the misspelling is the point
    assert names(text, "bp_sfot_debt_units"), text


@pytest.mark.parametrize(
    ("option", "value", "width"),
    [("bp_soft_debt_units", U32_MAX + 1, "u32"), ("bp_flush_unit_bytes", U64_MAX + 1, "u64")],
)
def test_cfg3_out_of_range_names_the_option_the_value_and_the_width(
    option: str, value: int, width: str
) -> None:
    # spec CFG-3: the option, its value and its field's width.
    for rejected in (
        lambda: check_options(Options(**{option: value})),  # type: ignore[arg-type]  # keyword by name
        lambda: FlowOptions(**{option: value}),  # type: ignore[arg-type]  # as above
    ):
        text = message_of(ValueError, rejected)
        assert names(text, option), text
        assert names(text, str(value)), text
        assert names(text, width), text


def test_cfg3_hard_units_that_overflow_upstream_are_named() -> None:
    # spec CFG-3: a hard threshold normalising to U32_MAX names bp_hard_debt_units.
    text = message_of(ValueError, lambda: check_options(Options(bp_hard_debt_units=U32_MAX)))
    assert names(text, "bp_hard_debt_units"), text
    assert names(text, str(U32_MAX)), text
