"""The implementation's public API: options, every error case, tasks, scopes and time.

Every error case is checked the same way (spec ERR-1..ERR-3, "an invalid operation changes
nothing"): the controller's snapshot, every task's snapshot, the clock, its sleeps and the
observer's calls are identical before and after the rejected call, and no lock is left held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import doctest
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import flowpace
import flowpace.observer
import flowpace.options
import flowpace.testing
from flowpace import (
    DebtOverflowError,
    FlowController,
    FlowOptions,
    FlowOutcome,
    FlowTask,
    TaskStateError,
    _rules,
)
from flowpace._sync import LockLike
from flowpace.testing import ManualClock, RecordingObserver
from flowpace.testing import lock_factory as using_locks
from flowpace_reference import transitions as model
from flowpace_reference.config import normalise, options_from_mapping
from flowpace_reference.types import (
    Config,
    ControllerState,
    Emission,
    ForegroundRegime,
    MetricKind,
    Options,
    TaskState,
)
from flowpace_reference.u64 import U32_MAX, U64_MAX
from strategies import configs, raw_options

PRIMED = FlowOptions(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=2,
    bp_hard_debt_units=4,
    bp_stop_debt_units=8,
    bp_pacing_soft_debt_units=2,
    bp_warmup_min_samples=1,
    bp_floor_bps=1_000_000,
    bp_max_delay_us=50_000,
)
"""Both features on, small units, steady state after one sample: every path is near."""


class RecordingLocks:
    """A lock factory that keeps the plain locks it made, by name, in creation order."""

    def __init__(self) -> None:
        """Start with no lock made."""
        self.locks: dict[str, threading.Lock] = {}
        self.names: list[str] = []

    def __call__(self, name: str) -> LockLike:
        """Make and keep the lock ``name``."""
        lock = threading.Lock()
        self.locks[name] = lock
        self.names.append(name)
        return lock

    def held(self) -> list[str]:
        """Return the names of the locks currently held."""
        return [name for name, lock in self.locks.items() if lock.locked()]


@dataclass
class Rig:
    """A primed controller on a manual clock, its observer and locks, and tasks in each phase."""

    clock: ManualClock
    observer: RecordingObserver
    locks: RecordingLocks
    ctl: FlowController
    tasks: dict[str, FlowTask]

    def picture(self) -> tuple[object, ...]:
        """Return everything an operation could change."""
        tasks = {name: task.snapshot() for name, task in self.tasks.items()}
        clock = (self.clock.monotonic_ns(), self.clock.sleeps)
        return self.ctl.snapshot(), tasks, clock, self.observer.calls

    def task(self, name: str) -> FlowTask:
        """Return the task ``name``: live, built (I/O reported), done or foreign."""
        return self.tasks[name]


def make_rig(options: FlowOptions = PRIMED) -> Rig:
    """Return a controller with one I/O sample of 1 MB/s and a task in each phase."""
    clock, observer, locks = ManualClock(), RecordingObserver(), RecordingLocks()
    with using_locks(locks):
        ctl = FlowController(options, clock=clock, observer=observer)
    primer = ctl.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)
    ctl.on_mark_done(primer)
    tasks = {name: ctl.on_enqueue_est(est) for name, est in (("live", 500), ("built", 700))}
    tasks["done"] = ctl.on_enqueue_est(300)
    ctl.on_io_built(tasks["built"], 600, 2_000_000)
    ctl.on_mark_done(tasks["done"])
    tasks["foreign"] = FlowController(options, clock=clock).on_enqueue_est(100)
    return Rig(clock=clock, observer=observer, locks=locks, ctl=ctl, tasks=tasks)


Case = Callable[[Rig], object]


def fg(value: object) -> Case:
    """Return a case calling `before_foreground_write` with ``value``."""
    return lambda rig: rig.ctl.before_foreground_write(value)  # type: ignore[arg-type]


def fg_nowait(value: object) -> Case:
    """Return a case calling `before_foreground_write_nowait` with ``value``."""
    return lambda rig: rig.ctl.before_foreground_write_nowait(value)  # type: ignore[arg-type]


def fg_async(value: object) -> Case:
    """Return a case awaiting `before_foreground_write_async` with ``value``."""
    return lambda rig: asyncio.run(
        rig.ctl.before_foreground_write_async(value)  # type: ignore[arg-type]
    )


def enqueue(value: object) -> Case:
    """Return a case calling `on_enqueue_est` with ``value``."""
    return lambda rig: rig.ctl.on_enqueue_est(value)  # type: ignore[arg-type]


def io_built(task: str, nbytes: object = 10, elapsed_ns: object = 1_000) -> Case:
    """Return a case reporting I/O for the task named ``task``."""
    return lambda rig: rig.ctl.on_io_built(
        rig.task(task),
        nbytes,  # type: ignore[arg-type]
        elapsed_ns,  # type: ignore[arg-type]
    )


def on_task(operation: str, task: str) -> Case:
    """Return a case calling the controller's ``operation`` on the task named ``task``."""

    def call(rig: Rig) -> object:
        method = getattr(rig.ctl, operation)
        result = method(rig.task(task))
        if asyncio.iscoroutine(result):
            return asyncio.run(result)
        return result

    return call


def on_value(operation: str, value: object) -> Case:
    """Return a case calling the controller's task ``operation`` on a value, not a task."""

    def call(rig: Rig) -> object:
        method = getattr(rig.ctl, operation)
        if operation == "on_io_built":
            return method(value, 1, 1)
        result = method(value)
        if asyncio.iscoroutine(result):
            return asyncio.run(result)
        return result

    return call


NOT_INTS = [True, False, 1.0, "1", None]
"""Values that are not acceptable integers (spec ERR-3): bools, a float, a string, None."""

FLUSHES = ["before_flush", "before_flush_nowait", "before_flush_async"]

ERROR_CASES: list[tuple[str, Case, type[BaseException], str]] = [
    *[(f"enqueue {v!r}", enqueue(v), TypeError, "est_bytes") for v in NOT_INTS],
    ("enqueue negative", enqueue(-1), ValueError, "est_bytes"),
    ("enqueue above u64", enqueue(U64_MAX + 1), ValueError, "est_bytes"),
    ("enqueue overflow", enqueue(U64_MAX), DebtOverflowError, "u64"),
    ("io_built not a task", on_value("on_io_built", object()), TypeError, "FlowTask"),
    *[(f"io_built bytes {v!r}", io_built("live", v), TypeError, "nbytes") for v in NOT_INTS],
    ("io_built negative bytes", io_built("live", -1), ValueError, "nbytes"),
    ("io_built bytes above u64", io_built("live", U64_MAX + 1), ValueError, "nbytes"),
    *[
        (f"io_built elapsed {v!r}", io_built("live", 1, v), TypeError, "elapsed_ns")
        for v in NOT_INTS
    ],
    ("io_built negative elapsed", io_built("live", 1, -1), ValueError, "elapsed_ns"),
    ("io_built elapsed at limit", io_built("live", 1, 2**64 * 10**9), ValueError, "elapsed_ns"),
    ("io_built done", io_built("done"), TaskStateError, "done"),
    ("io_built twice", io_built("built"), TaskStateError, "already reported"),
    ("io_built foreign", io_built("foreign"), TaskStateError, "another controller"),
    ("io_built overflow", io_built("live", U64_MAX), DebtOverflowError, "u64"),
    ("io_built ERR-3 before ERR-1", io_built("done", -1), ValueError, "nbytes"),
    ("io_built ERR-1 before ERR-2", io_built("built", U64_MAX), TaskStateError, "reported"),
    ("mark_done done", on_task("on_mark_done", "done"), TaskStateError, "done"),
    ("mark_done foreign", on_task("on_mark_done", "foreign"), TaskStateError, "another"),
    ("mark_done not a task", on_value("on_mark_done", 3), TypeError, "FlowTask"),
    *[(f"{op} done", on_task(op, "done"), TaskStateError, "done") for op in FLUSHES],
    *[(f"{op} foreign", on_task(op, "foreign"), TaskStateError, "another") for op in FLUSHES],
    *[(f"{op} not a task", on_value(op, None), TypeError, "FlowTask") for op in FLUSHES],
    *[
        (f"{name} {v!r}", make(v), TypeError, "nbytes")
        for name, make in (("fg", fg), ("fg_nowait", fg_nowait), ("fg_async", fg_async))
        for v in NOT_INTS
    ],
    *[
        (f"{name} {v}", make(v), ValueError, "nbytes")
        for name, make in (("fg", fg), ("fg_nowait", fg_nowait), ("fg_async", fg_async))
        for v in (-1, U64_MAX + 1)
    ],
    (
        "mark_outcome not an outcome",
        lambda rig: rig.task("live").mark_outcome("Empty"),  # type: ignore[arg-type]
        TypeError,
        "FlowOutcome",
    ),
    (
        "mark_outcome done",
        lambda rig: rig.task("done").mark_outcome(FlowOutcome.EMPTY),
        TaskStateError,
        "done",
    ),
    (
        "mark_outcome ERR-3 before ERR-1",
        lambda rig: rig.task("done").mark_outcome(2),  # type: ignore[arg-type]
        TypeError,
        "FlowOutcome",
    ),
    (
        "mark_force_bypass done",
        lambda rig: rig.task("done").mark_force_bypass(),
        TaskStateError,
        "done",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [pytest.param(call, error, match, id=name) for name, call, error, match in ERROR_CASES],
)
def test_an_invalid_call_raises_and_changes_nothing(
    call: Case, error: type[BaseException], match: str
) -> None:
    # spec ERR-1, ERR-2, ERR-3, DIV-2, DIV-3: the named error; nothing changed, no sleep, no
    # emission, no lock left held.
    rig = make_rig()
    if error is DebtOverflowError:
        assert rig.ctl.snapshot().debt_bytes > 0  # the overflow cases need some debt
    before = rig.picture()
    with pytest.raises(error, match=match):
        call(rig)
    assert rig.picture() == before
    assert rig.locks.held() == []


def test_the_error_types_are_the_specified_ones() -> None:
    # spec ERR-1, ERR-2: TaskStateError is a RuntimeError, DebtOverflowError an OverflowError.
    assert issubclass(TaskStateError, RuntimeError)
    assert issubclass(DebtOverflowError, OverflowError)


@pytest.mark.parametrize("scope", ["teardown", "starving"])
def test_a_scope_count_at_u64_max_refuses_another_scope(scope: str) -> None:
    # spec ERR-2, FC-11, DIV-3: the count does not wrap; the refused enter changes nothing.
    rig = make_rig()
    field = "_teardown" if scope == "teardown" else "_starving"
    setattr(rig.ctl, field, U64_MAX)
    enter = rig.ctl.enter_teardown_bypass if scope == "teardown" else rig.ctl.enter_arena_starving
    before = rig.picture()
    with pytest.raises(DebtOverflowError):
        enter()
    assert rig.picture() == before
    assert rig.locks.held() == []


# --- options (spec CFG-1 to CFG-4) -----------------------------------------------------------


def test_the_default_options_are_upstreams() -> None:
    # spec CFG-1: the same 14 names, in the same order, with the same defaults as the model.
    ours = [(f.name, f.default) for f in dataclasses.fields(FlowOptions)]
    theirs = [(f.name, f.default) for f in dataclasses.fields(Options)]
    assert ours == theirs
    assert FlowController().config == normalise(Options())


@given(raw_options())
def test_options_normalise_as_the_model(options: Options) -> None:
    # spec CFG-2, CFG-4: every accepted option set normalises to the model's configuration.
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(Options)}
    assert FlowOptions(**values).normalised() == normalise(options)


BAD_VALUES = st.one_of(
    st.sampled_from([True, False, None, 1.5, "8", -1, U32_MAX + 1, U64_MAX + 1, 2**80]),
    st.integers(min_value=-(2**70), max_value=2**70),
)


@given(st.sampled_from([f.name for f in dataclasses.fields(Options)]), BAD_VALUES)
def test_options_are_rejected_as_the_model_rejects_them(name: str, value: object) -> None:
    # spec CFG-3, DIV-5: one option set to a value; accepted or rejected as the model does,
    # with the same error type, and a ValueError names the option.
    try:
        expected: Config | type[Exception] = normalise(options_from_mapping({name: value}))
    except (TypeError, ValueError) as error:
        expected = type(error)
    if isinstance(expected, Config):
        assert FlowOptions(**{name: value}).normalised() == expected  # type: ignore[arg-type]
        return
    with pytest.raises(expected) as raised:
        FlowOptions(**{name: value})  # type: ignore[arg-type]
    if expected is ValueError:
        assert name in str(raised.value)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"bp_soft_debt_units": U32_MAX}, "bp_soft_debt_units"),
        ({"bp_hard_debt_units": U32_MAX}, "bp_hard_debt_units"),
        ({"bp_soft_debt_units": U32_MAX - 1, "bp_hard_debt_units": 0}, "bp_hard_debt_units"),
    ],
)
def test_thresholds_whose_successor_overflows_a_u32_are_rejected(
    values: dict[str, int], named: str
) -> None:
    # spec CFG-3, DIV-5: upstream's soft + 1 or hard + 1 would overflow.
    with pytest.raises(ValueError, match=named):
        FlowOptions(**values)  # type: ignore[arg-type]


def test_an_unknown_option_or_a_non_options_value_is_a_type_error() -> None:
    # spec CFG-3: an unknown name is a TypeError; so is a controller built from a mapping.
    with pytest.raises(TypeError, match="bp_soft_units"):
        FlowOptions(bp_soft_units=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="FlowOptions"):
        FlowController({"enable_backpressure": True})  # type: ignore[arg-type]


def test_options_are_keyword_only_and_frozen() -> None:
    # spec CFG-1: options are values; a controller's configuration cannot change under it.
    with pytest.raises(TypeError):
        FlowOptions(True)  # type: ignore[call-arg]  # noqa: FBT003 - positional on purpose
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRIMED.bp_soft_debt_units = 3  # type: ignore[misc]


# --- tasks, time and locks -------------------------------------------------------------------


def test_a_task_is_made_only_by_its_controller() -> None:
    # spec ST-2, FC-1: a task made by hand would hold no debt, so it cannot be made.
    with pytest.raises(TypeError, match="on_enqueue_est"):
        FlowTask()


def test_a_task_snapshot_follows_its_lifecycle() -> None:
    # spec ST-2, FC-1..FC-5, AR-8, DIV-1: fields as each operation leaves them.
    clock = ManualClock(start_ns=7)
    ctl = FlowController(PRIMED, clock=clock)
    task = ctl.on_enqueue_est(300)
    assert task.est_bytes == 300
    assert task.snapshot() == TaskState(enqueue_at=7, est_bytes=300)
    task.mark_force_bypass()
    ctl.on_io_built(task, 0, 2_500)
    assert task.snapshot() == TaskState(
        enqueue_at=7,
        est_bytes=300,
        actual_bytes=0,
        io_micros=2,
        outcome=FlowOutcome.FLUSHED,
        force_bypass=True,
        io_reported=True,
    )
    assert ctl.snapshot().debt_bytes == 0  # the charge is now the 0 bytes written (DIV-1)
    task.mark_outcome(FlowOutcome.META_ONLY)
    ctl.on_mark_done(task)
    assert task.snapshot().done
    assert task.snapshot().outcome is FlowOutcome.META_ONLY
    assert "done=True" in repr(task)


def test_a_zero_byte_write_settles_nothing_more() -> None:
    # spec DIV-1, AR-8, INV-1: after io_built with 0 bytes the task's charge is 0: its
    # mark_done leaves the other task's debt, does not go idle and takes no end-to-end sample.
    clock = ManualClock()
    ctl = FlowController(PRIMED, clock=clock)
    a, b = ctl.on_enqueue_est(100), ctl.on_enqueue_est(100)
    ctl.on_io_built(a, 0, 1_000)
    assert ctl.snapshot().debt_bytes == 100
    clock.advance_ns(2_000)
    ctl.on_mark_done(a)
    state = ctl.snapshot()
    assert (state.debt_bytes, state.idle_since, state.e2e_bps_ewma) == (100, None, 0)
    ctl.on_mark_done(b)
    assert ctl.snapshot().debt_bytes == 0


def test_the_sample_count_saturates_at_u64_max() -> None:
    # spec FC-2, DIV-4: the count does not wrap back into cold start.
    ctl = FlowController(PRIMED, clock=ManualClock())
    ctl._samples = U64_MAX
    task = ctl.on_enqueue_est(100)
    ctl.on_io_built(task, 100, 1_000)
    state = ctl.snapshot()
    assert state.io_sample_count == U64_MAX
    assert state.io_bps_ewma == 100 * 1_000_000 // 1


class BackwardsClock:
    """A clock whose readings go back in time: 100, then 40, then 70 ns."""

    def __init__(self) -> None:
        """Start the sequence of readings."""
        self.readings = [100, 40, 70]

    def monotonic_ns(self) -> int:
        """Return the next reading; the last one repeats."""
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    def sleep_ns(self, duration_ns: int) -> None:
        """Fail: nothing here should sleep."""
        raise AssertionError(f"unexpected sleep of {duration_ns} ns")


def test_times_applied_to_the_state_never_go_backwards() -> None:
    # spec DIV-6: readings taken before the lock are clamped to the latest time applied, so
    # the state's and the tasks' times never decrease.
    ctl = FlowController(PRIMED, clock=BackwardsClock())  # built at 100
    assert ctl.snapshot().idle_since == 100
    task = ctl.on_enqueue_est(5)  # read 40: applied as 100
    assert task.snapshot().enqueue_at == 100
    ctl.on_mark_done(task)  # read 70: applied as 100
    assert ctl.snapshot().idle_since == 100


def test_the_default_clock_is_the_system_monotonic_clock() -> None:
    # spec ST-2: without a clock, times are time.monotonic_ns readings (nothing sleeps here).
    before = time.monotonic_ns()
    task = FlowController().on_enqueue_est(1)
    assert before <= task.snapshot().enqueue_at <= time.monotonic_ns()


def test_the_lock_factory_makes_the_pacing_then_the_state_lock_once_each() -> None:
    # spec DIV-6: the documented hook: one call per lock, by name, in lock order.
    locks = RecordingLocks()
    clock = ManualClock()
    with using_locks(locks):
        FlowController(PRIMED, clock=clock)
    assert locks.names == ["pacing", "state"]


# --- scopes (spec FC-11) ---------------------------------------------------------------------


def scopes(ctl: FlowController) -> tuple[int, int]:
    """Return the open teardown and arena-starvation scopes."""
    state = ctl.snapshot()
    return state.teardown_bypass_scopes, state.arena_starving_scopes


def test_scope_context_managers_nest_and_close_on_error() -> None:
    # spec FC-11: a with-block holds its scope; blocks nest; an exception still closes it.
    ctl = FlowController(PRIMED, clock=ManualClock())
    with ctl.teardown_bypass():
        assert scopes(ctl) == (1, 0)
        with ctl.arena_starving(), ctl.arena_starving():
            assert scopes(ctl) == (1, 2)
        assert scopes(ctl) == (1, 0)
    assert scopes(ctl) == (0, 0)
    with pytest.raises(KeyError), ctl.arena_starving(), ctl.teardown_bypass():
        raise KeyError("body fails")
    assert scopes(ctl) == (0, 0)


def test_leaving_a_scope_that_is_not_open_changes_nothing() -> None:
    # spec FC-11: leave saturates at zero, as upstream.
    ctl = FlowController(PRIMED, clock=ManualClock())
    ctl.leave_teardown_bypass()
    ctl.leave_arena_starving()
    ctl.enter_teardown_bypass()
    ctl.enter_arena_starving()
    ctl.enter_arena_starving()
    ctl.leave_arena_starving()
    assert scopes(ctl) == (1, 1)


def test_scopes_bypass_flush_pacing_and_report_it() -> None:
    # spec FC-9, FC-11: with a scope open a flush bypasses pacing and counts the bypass.
    rig = make_rig()
    with rig.ctl.teardown_bypass():
        assert rig.ctl.before_flush(rig.task("live")) == 0
    with rig.ctl.arena_starving():
        assert rig.ctl.before_flush(rig.task("live")) == 0
    assert [call.metric.value for call in rig.observer.calls] == [
        "FlowFlushPacingBypassTeardown",
        "FlowFlushPacingBypassArenaStarvation",
    ]
    assert rig.ctl.snapshot().next_flush_at is None


# --- the fast path's limit (spec FC-6, INV-3) ------------------------------------------------

QUIET = {
    ForegroundRegime.NO_DEBT,
    ForegroundRegime.COLD_BELOW_FAIL_SAFE,
    ForegroundRegime.STEADY_BELOW_SOFT,
}


@given(configs(enable_backpressure=True), st.booleans(), st.data())
def test_the_fast_path_limit_is_the_largest_undelayed_debt(
    config: Config, warm: bool, data: st.DataObject
) -> None:
    # spec FC-6, INV-3: the foreground fast path skips exactly the debts the model's
    # zero-delay regimes cover: a debt at the limit is one, the next byte is not.
    tuning = _rules.tuning_of(config)
    limit = tuning.warm_quiet_debt if warm else tuning.cold_quiet_debt
    assume(limit < U64_MAX)
    debt = data.draw(
        st.one_of(
            st.integers(max(limit - 2, 0), limit + 1),
            st.integers(0, U64_MAX),
        )
    )
    state = ControllerState(
        debt_bytes=debt,
        io_bps_ewma=1_000_000,
        e2e_bps_ewma=0,
        io_sample_count=config.bp_warmup_min_samples if warm else 0,
        adaptive_floor_bps=config.bp_floor_bps,
        teardown_bypass_scopes=0,
        arena_starving_scopes=0,
        idle_since=None,
        next_flush_at=None,
    )
    regime = model.before_foreground_write(config, state, 1).regime
    assert (debt <= limit) == (regime in QUIET)


# --- the documentation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [flowpace, flowpace.options, flowpace.observer, flowpace.testing],
    ids=lambda module: module.__name__,
)
def test_the_documented_examples_run(module: ModuleType) -> None:
    # spec FC-1..FC-8: the examples in the docstrings are exact.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_emissions_are_the_models_type() -> None:
    # spec FC-8: a recording observer keeps model Emission values, in call order.
    observer = RecordingObserver()
    observer.counter(flowpace.Metric.FG_DELAY, 1)
    assert observer.calls == (
        Emission(kind=MetricKind.COUNTER, metric=flowpace.Metric.FG_DELAY, value=1),
    )
