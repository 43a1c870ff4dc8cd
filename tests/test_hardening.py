"""Hardening: what no caller can break (spec HARD-1 to HARD-5, DIV-7, DIV-8).

Each test reaches the controller through its public API only, as a careless or hostile caller
would: copies of its handles, integers that lie, clocks and observers that misbehave, async
flushes that are cancelled. Every rejection is checked as the API tests check errors: the
controller's and the tasks' snapshots, the clock and the observer's calls are unchanged.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from flowpace import FlowController, FlowOptions, FlowOutcome, FlowTask, Metric
from flowpace.clock import SystemClock
from flowpace.testing import ManualClock, RecordingObserver
from flowpace_reference.types import ControllerState, TaskState

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
"""Both features on, small units, steady state after one sample (1 MB/s)."""


def primed(
    clock: ManualClock | None = None, observer: object = None, **kwargs: Any
) -> tuple[FlowController, ManualClock]:
    """Return a controller on a manual clock, warm after one sample of 1 MB/s."""
    clock = ManualClock() if clock is None else clock
    ctl = FlowController(PRIMED, clock=clock, observer=observer, **kwargs)  # type: ignore[arg-type]
    primer = ctl.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)
    ctl.on_mark_done(primer)
    return ctl, clock


def picture(ctl: FlowController, *tasks: FlowTask) -> tuple[ControllerState, list[TaskState]]:
    """Return what an operation could change: the controller's and the tasks' snapshots."""
    return ctl.snapshot(), [task.snapshot() for task in tasks]


# --- HARD-1: a task and a controller are not copied -------------------------------------------

COPIES: dict[str, Callable[[object], object]] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda value: pickle.loads(pickle.dumps(value)),  # noqa: S301 - never reached
    "pickle protocol 0": lambda value: pickle.dumps(value, protocol=0),
}


@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_task_cannot_be_copied_so_its_charge_is_settled_once(how: str) -> None:
    # spec HARD-1, INV-1: a copy would be a second handle on one charge; it is refused.
    ctl, _ = primed()
    task, other = ctl.on_enqueue_est(100), ctl.on_enqueue_est(100)
    before = picture(ctl, task, other)
    with pytest.raises(TypeError, match="FlowTask cannot be copied"):
        COPIES[how](task)
    assert picture(ctl, task, other) == before
    ctl.on_mark_done(task)
    assert ctl.snapshot().debt_bytes == 100  # the other task's charge is intact


@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_controller_cannot_be_copied(how: str) -> None:
    # spec HARD-1: a copy would share the locks, or owe debt only the original's tasks settle.
    ctl, _ = primed()
    ctl.on_enqueue_est(100)
    with pytest.raises(TypeError, match="FlowController cannot be copied"):
        COPIES[how](ctl)
    assert ctl.snapshot().debt_bytes == 100


def test_a_task_cannot_be_subclassed_or_made_by_hand() -> None:
    # spec HARD-1, ST-2: only on_enqueue_est makes a task, and only of the class FlowTask.
    with pytest.raises(TypeError, match="subclassed"):
        type("MyTask", (FlowTask,), {})
    with pytest.raises(TypeError, match="on_enqueue_est"):
        FlowTask.__new__(FlowTask)


def forged() -> FlowTask:
    """Return a FlowTask made without a controller, the one way Python still allows."""
    return object.__new__(FlowTask)


FORGED_USES: dict[str, Callable[[FlowController, FlowTask], object]] = {
    "on_io_built": lambda ctl, task: ctl.on_io_built(task, 1, 1),
    "on_mark_done": lambda ctl, task: ctl.on_mark_done(task),
    "before_flush": lambda ctl, task: ctl.before_flush(task),
    "before_flush_nowait": lambda ctl, task: ctl.before_flush_nowait(task),
    "before_flush_async": lambda ctl, task: asyncio.run(ctl.before_flush_async(task)),
    "mark_outcome": lambda _, task: task.mark_outcome(FlowOutcome.EMPTY),
    "mark_force_bypass": lambda _, task: task.mark_force_bypass(),
    "snapshot": lambda _, task: task.snapshot(),
    "est_bytes": lambda _, task: task.est_bytes,
}


@pytest.mark.parametrize("use", sorted(FORGED_USES))
def test_a_forged_task_is_a_type_error_naming_the_task(use: str) -> None:
    # spec HARD-1: not an AttributeError from deep inside; nothing changes.
    ctl, _ = primed()
    live = ctl.on_enqueue_est(100)
    before = picture(ctl, live)
    with pytest.raises(TypeError, match="task must be a FlowTask made by"):
        FORGED_USES[use](ctl, forged())
    assert picture(ctl, live) == before
    assert "not made by a controller" in repr(forged())


# --- HARD-2: the value checked is the value used ----------------------------------------------


class LyingInt(int):
    """An int whose conversions claim -1000, whatever it holds."""

    def __int__(self) -> int:
        """Lie."""
        return -1000

    def __index__(self) -> int:
        """Lie."""
        return -1000


class AgreeableInt(int):
    """An int whose comparisons all hold, whatever it holds."""

    def __lt__(self, other: object) -> bool:
        """Agree."""
        return False

    def __gt__(self, other: object) -> bool:
        """Agree."""
        return False

    def __le__(self, other: object) -> bool:
        """Agree."""
        return True

    def __ge__(self, other: object) -> bool:
        """Agree."""
        return True


class BadRepr:
    """A value whose repr raises."""

    def __repr__(self) -> str:
        """Fail."""
        raise RuntimeError("no repr")


def test_an_int_subclass_is_used_at_the_value_it_holds() -> None:
    # spec HARD-2, INV-1: the estimate charged is the 5 the check saw, as a plain int.
    ctl, _ = primed()
    task = ctl.on_enqueue_est(LyingInt(5))
    assert type(task.est_bytes) is int
    assert task.est_bytes == 5
    assert ctl.snapshot().debt_bytes == 5
    ctl.on_io_built(task, LyingInt(4), LyingInt(2_000))
    assert task.snapshot().actual_bytes == 4
    assert type(task.snapshot().actual_bytes) is int
    ctl.on_mark_done(task)
    assert ctl.snapshot().debt_bytes == 0


ARGUMENTS: dict[str, Callable[[FlowController, FlowTask, object], object]] = {
    "est_bytes": lambda ctl, _, value: ctl.on_enqueue_est(value),  # type: ignore[arg-type]
    "nbytes": lambda ctl, task, value: ctl.on_io_built(task, value, 1),  # type: ignore[arg-type]
    "elapsed_ns": lambda ctl, task, value: ctl.on_io_built(task, 1, value),  # type: ignore[arg-type]
    "nbytes (blocking write)": lambda ctl, _, value: ctl.before_foreground_write(value),  # type: ignore[arg-type]
    "nbytes (nowait write)": lambda ctl, _, value: ctl.before_foreground_write_nowait(value),  # type: ignore[arg-type]
    "nbytes (async write)": lambda ctl, _, value: asyncio.run(
        ctl.before_foreground_write_async(value)  # type: ignore[arg-type]
    ),
}

HUGE = 10**5000
"""An int of 5 000 digits: more than `str` converts by default (4 300)."""


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(AgreeableInt(-7), ValueError, id="lying comparisons at -7"),
        pytest.param(LyingInt(-7), ValueError, id="lying conversions at -7"),
        pytest.param(HUGE, ValueError, id="5000 digits"),
        pytest.param(-HUGE, ValueError, id="minus 5000 digits"),
        pytest.param(BadRepr(), TypeError, id="failing repr"),
        pytest.param(np.int64(5), TypeError, id="numpy int64"),
    ],
)
@pytest.mark.parametrize("argument", sorted(ARGUMENTS))
def test_a_bad_argument_is_rejected_naming_it_and_changes_nothing(
    argument: str, value: object, error: type[Exception]
) -> None:
    # spec HARD-2, ERR-3: the error names the argument whatever the value; state unchanged.
    observer = RecordingObserver()
    ctl, clock = primed(observer=observer)
    task = ctl.on_enqueue_est(100)
    before = picture(ctl, task), clock.monotonic_ns(), clock.sleeps, observer.calls
    with pytest.raises(error) as raised:
        ARGUMENTS[argument](ctl, task, value)
    name = argument.split(" ", maxsplit=1)[0]
    assert str(raised.value).startswith(f"{name} must be"), raised.value
    assert (picture(ctl, task), clock.monotonic_ns(), clock.sleeps, observer.calls) == before


NUMBER_OPTIONS = [
    name
    for name in FlowOptions.__dataclass_fields__
    if name not in {"enable_backpressure", "enable_flush_pacing", "ext_admission_timeline"}
]


@pytest.mark.parametrize(
    "value", [AgreeableInt(-7), LyingInt(-7), HUGE, BadRepr()], ids=["cmp", "conv", "huge", "repr"]
)
@pytest.mark.parametrize("option", NUMBER_OPTIONS)
def test_a_bad_option_is_rejected_naming_it(option: str, value: object) -> None:
    # spec HARD-2, CFG-3: every number option, whatever the value pretends.
    with pytest.raises((TypeError, ValueError), match=f"option {option} must be"):
        FlowOptions(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("option", NUMBER_OPTIONS)
def test_an_option_given_as_an_int_subclass_is_kept_as_the_int_it_holds(option: str) -> None:
    # spec HARD-2: the option kept, and normalised, is the plain int that was checked.
    options = FlowOptions(**{option: LyingInt(7)})  # type: ignore[arg-type]
    assert type(getattr(options, option)) is int
    assert getattr(options, option) == 7


@pytest.mark.parametrize(
    "value", [AgreeableInt(-7), LyingInt(-7), HUGE, BadRepr()], ids=["cmp", "conv", "huge", "repr"]
)
@pytest.mark.parametrize("call", ["start_ns", "advance_ns", "sleep_ns"])
def test_the_manual_clock_checks_the_value_it_uses(call: str, value: object) -> None:
    # spec HARD-2: a manual clock never goes backwards, nor takes a value it cannot show.
    name = "start_ns" if call == "start_ns" else "duration_ns"
    clock = ManualClock(start_ns=10)
    use: Callable[[object], object] = (
        ManualClock if call == "start_ns" else getattr(clock, call)  # type: ignore[assignment]
    )
    with pytest.raises((TypeError, ValueError), match=f"{name} must be"):
        use(value)
    assert (clock.monotonic_ns(), clock.sleeps) == (10, ())
    clock = ManualClock(start_ns=LyingInt(10))
    clock.advance_ns(LyingInt(5))
    assert clock.monotonic_ns() == 15
    assert type(clock.monotonic_ns()) is int


# --- HARD-3: clock, observer and sleep checked where they enter --------------------------------


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("clock", None),
        ("clock", object()),
        ("clock", BadRepr()),
        ("observer", object()),
        ("observer", 42),
        ("async_sleep", 42),
        ("async_sleep", None),
    ],
)
def test_a_collaborator_lacking_what_it_must_provide_is_refused_at_construction(
    keyword: str, value: object
) -> None:
    # spec HARD-3: a TypeError naming the keyword, before anything is built.
    with pytest.raises(TypeError, match=f"^{keyword} must be"):
        FlowController(PRIMED, **{keyword: value})  # type: ignore[arg-type]  # the point


class ScriptedClock(ManualClock):
    """A manual clock whose next reading can be replaced by any value, once."""

    __slots__ = ("next_reading",)

    def __init__(self) -> None:
        """Start at 0 with no replacement."""
        super().__init__()
        self.next_reading: list[object] = []

    def monotonic_ns(self) -> int:
        """Return the scripted reading, if any, else the time."""
        if self.next_reading:
            return self.next_reading.pop()  # type: ignore[return-value]
        return super().monotonic_ns()


BAD_READINGS: list[tuple[object, type[Exception]]] = [
    (1.5e9, TypeError),  # float nanoseconds
    (12.25, TypeError),  # seconds, from time.monotonic by mistake
    (None, TypeError),
    ("1000", TypeError),
    (True, TypeError),
    (np.int64(10**9), TypeError),
    (-1, ValueError),
    (2**64 * 10**9, ValueError),
    (HUGE, ValueError),
]

READERS: dict[str, Callable[[FlowController, FlowTask], object]] = {
    "on_enqueue_est": lambda ctl, _: ctl.on_enqueue_est(10),
    "on_mark_done": lambda ctl, task: ctl.on_mark_done(task),
    "before_flush": lambda ctl, task: ctl.before_flush(task),
    "before_flush_nowait": lambda ctl, task: ctl.before_flush_nowait(task),
    "before_flush_async": lambda ctl, task: asyncio.run(ctl.before_flush_async(task)),
}


@pytest.mark.parametrize(
    ("reading", "error"),
    BAD_READINGS,
    ids=["float ns", "seconds", "None", "str", "bool", "numpy", "negative", "at the limit", "huge"],
)
@pytest.mark.parametrize("operation", sorted(READERS))
def test_a_bad_clock_reading_is_rejected_before_any_state_changes(
    operation: str, reading: object, error: type[Exception]
) -> None:
    # spec HARD-3: rejected naming the clock; the settle does not happen (not half of it).
    clock = ScriptedClock()
    ctl, _ = primed(clock=clock)
    task = ctl.on_enqueue_est(500)
    before = picture(ctl, task)
    clock.next_reading.append(reading)
    with pytest.raises(error, match=r"clock .*monotonic_ns"):
        READERS[operation](ctl, task)
    assert picture(ctl, task) == before
    ctl.on_mark_done(task)  # and the controller goes on
    assert ctl.snapshot().debt_bytes == 0


def test_a_bad_first_reading_fails_construction() -> None:
    # spec HARD-3: the construction's own reading is checked too.
    clock = ScriptedClock()
    clock.next_reading.append(0.0)
    with pytest.raises(TypeError, match="clock"):
        FlowController(PRIMED, clock=clock)


def test_an_int_subclass_reading_is_used_as_the_int_it_holds() -> None:
    # spec HARD-3, HARD-2: converted once, like an argument.
    clock = ScriptedClock()
    ctl, _ = primed(clock=clock)
    clock.next_reading.append(LyingInt(5_000_000))
    task = ctl.on_enqueue_est(1)
    assert task.snapshot().enqueue_at == 5_000_000
    assert type(task.snapshot().enqueue_at) is int


def test_the_default_clock_is_read_without_any_check() -> None:
    # spec HARD-3: the system clock's path is `time.monotonic_ns` itself, not a wrapper; any
    # other clock (a SystemClock subclass included) is read through the check.
    import time  # noqa: PLC0415 - only this test needs it

    assert FlowController()._now is time.monotonic_ns
    assert FlowController(clock=SystemClock())._now is time.monotonic_ns
    assert FlowController(clock=ManualClock())._now is not time.monotonic_ns


# --- HARD-4, DIV-7: cancellation leaks nothing --------------------------------------------------


class GatedSleep:
    """An async sleep that waits until released (or cancelled), counting who is waiting."""

    def __init__(self, clock: ManualClock) -> None:
        """Sleep on ``clock`` once released."""
        self.clock = clock
        self.waiting = 0
        self.failure: BaseException | None = None

    async def __call__(self, duration_ns: int) -> None:
        """Wait forever (until cancelled), or raise ``failure``."""
        del duration_ns
        self.waiting += 1
        if self.failure is not None:
            raise self.failure
        await asyncio.Event().wait()


async def until_waiting(gate: GatedSleep, count: int) -> None:
    """Yield to the event loop until ``count`` coroutines wait in ``gate`` (no time passes)."""
    while gate.waiting < count:  # noqa: ASYNC110 - a loop turn per step: no clock, no event
        await asyncio.sleep(0)


def paced_rig() -> tuple[FlowController, ManualClock, GatedSleep, list[FlowTask], int]:
    """Return a warm controller whose deadline is set by one flush, its tasks and deadline."""
    clock = ManualClock()
    gate = GatedSleep(clock)
    ctl, _ = primed(clock=clock, async_sleep=gate)
    tasks = [ctl.on_enqueue_est(10) for _ in range(41)]  # 10 bytes at 1 MB/s: 10 us each
    assert ctl.before_flush_nowait(tasks[0]) == 0  # sets the deadline one interval ahead
    deadline = ctl.snapshot().next_flush_at
    assert deadline == clock.monotonic_ns() + 10_000
    return ctl, clock, gate, tasks, deadline


def run_then_cancel(ctl: FlowController, gate: GatedSleep, tasks: list[FlowTask]) -> None:
    """Start an async flush of each task, let each reach its sleep, then cancel them all."""

    async def scenario() -> None:
        flushes = [asyncio.ensure_future(ctl.before_flush_async(task)) for task in tasks]
        await until_waiting(gate, len(tasks))
        for flush in flushes:
            flush.cancel()
        results = await asyncio.gather(*flushes, return_exceptions=True)
        assert all(isinstance(result, asyncio.CancelledError) for result in results)

    asyncio.run(scenario())


def test_timed_out_async_flushes_give_their_slots_back() -> None:
    # spec HARD-4, DIV-7: five flushes cancelled one after another in their sleep leave the
    # deadline where it was: the next flush waits one interval (10 us), not six.
    ctl, _, gate, tasks, deadline = paced_rig()
    for task in tasks[1:6]:
        run_then_cancel(ctl, gate, [task])
    assert ctl.snapshot().next_flush_at == deadline
    assert ctl.before_flush_nowait(tasks[6]) == 10_000


def test_cancelled_concurrent_async_flushes_give_every_slot_back() -> None:
    # spec HARD-4, DIV-7: 40 flushes stacked behind each other, all cancelled.
    ctl, _, gate, tasks, deadline = paced_rig()
    run_then_cancel(ctl, gate, tasks[1:41])
    assert ctl.snapshot().next_flush_at == deadline


def test_a_failing_async_sleep_gives_the_slot_back_and_propagates() -> None:
    # spec HARD-4, DIV-7: any exception out of the sleep is a flush that did not happen.
    ctl, _, gate, tasks, deadline = paced_rig()
    gate.failure = RuntimeError("sleep failed")
    with pytest.raises(RuntimeError, match="sleep failed"):
        asyncio.run(ctl.before_flush_async(tasks[1]))
    assert ctl.snapshot().next_flush_at == deadline


def test_a_cancelled_flush_leaves_a_cleared_deadline_cleared() -> None:
    # spec DIV-7: an idle marking during the sleep cleared the deadline: nothing to give back.
    ctl, _, gate, tasks, _ = paced_rig()

    async def scenario() -> None:
        flush = asyncio.ensure_future(ctl.before_flush_async(tasks[1]))
        await until_waiting(gate, 1)
        for task in tasks:
            ctl.on_mark_done(task)  # the debt reaches 0: idle, the deadline dropped (FC-12)
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush

    asyncio.run(scenario())
    assert ctl.snapshot().next_flush_at is None


def test_a_cancelled_async_foreground_write_leaves_nothing_behind() -> None:
    # spec HARD-4, DIV-7, FC-8: it changed no state, and its emissions (after the sleep) are
    # never made.
    observer = RecordingObserver()
    clock = ManualClock()
    gate = GatedSleep(clock)
    ctl, _ = primed(clock=clock, observer=observer, async_sleep=gate)
    ctl.on_enqueue_est(10_000)  # above stop: the write would wait
    before = ctl.snapshot(), observer.calls

    async def scenario() -> None:
        write = asyncio.ensure_future(ctl.before_foreground_write_async(1))
        await until_waiting(gate, 1)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write

    asyncio.run(scenario())
    assert (ctl.snapshot(), observer.calls) == before


class InterruptedClock(ManualClock):
    """A manual clock whose sleeps are interrupted by Ctrl-C."""

    def sleep_ns(self, duration_ns: int) -> None:
        """Be interrupted."""
        del duration_ns
        raise KeyboardInterrupt


def test_an_interrupted_blocking_flush_reserves_nothing() -> None:
    # spec DIV-7: the blocking form commits after its sleep, so an interrupted one commits
    # nothing and releases the pacing lock.
    ctl, clock = primed(clock=InterruptedClock())
    first, second, third = (ctl.on_enqueue_est(100) for _ in range(3))
    assert ctl.before_flush(first) == 0
    deadline = ctl.snapshot().next_flush_at
    with pytest.raises(KeyboardInterrupt):
        ctl.before_flush(second)
    assert ctl.snapshot().next_flush_at == deadline
    clock.advance_ns(100_000)
    assert ctl.before_flush(third) == 0  # the pacing lock is free


# --- HARD-5, DIV-8: a failing observer never breaks the data path -------------------------------


class DownObserver(RecordingObserver):
    """A metrics backend that is down: records each call, then raises."""

    def __init__(self, error: BaseException | None = None) -> None:
        """Fail with ``error`` (a ConnectionError by default); not strict."""
        super().__init__(raises=False)
        self.error = error

    def counter(self, metric: Metric, delta: int) -> None:
        """Record, then fail."""
        super().counter(metric, delta)
        raise self.error or ConnectionError(metric.value)

    def histogram(self, metric: Metric, value: int) -> None:
        """Record, then fail."""
        super().histogram(metric, value)
        raise self.error or ConnectionError(metric.value)


def _is_observer_failure(record: logging.LogRecord) -> bool:
    """Return whether ``record`` is the controller's report of an observer failure (HARD-5)."""
    return record.name == "flowpace" and "observer" in record.getMessage()


def test_a_failing_observer_is_isolated_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # spec HARD-5, DIV-8: the write returns its delay; both emissions were attempted; each
    # failure is counted and the first logged under the "flowpace" logger.
    observer = DownObserver()
    ctl, clock = primed(observer=observer)
    ctl.on_enqueue_est(10_000)  # above stop
    with caplog.at_level(logging.WARNING, logger="flowpace"):
        assert ctl.before_foreground_write(1) == 50_000_000  # ns (HARD-13): 50 ms
    assert clock.sleeps == (50_000_000,)
    assert [call.metric for call in observer.calls] == [Metric.FG_DELAY, Metric.FG_DELAY_MICROS]
    assert ctl.observer_failures == 2
    records = [record for record in caplog.records if _is_observer_failure(record)]
    assert len(records) == 2  # the 1st and the 2nd failure
    assert "FlowFgDelay" in records[0].getMessage()
    assert records[0].exc_info is not None


def test_a_failing_observer_does_not_lose_a_nonblocking_flush_its_wait() -> None:
    # spec HARD-5, DIV-8: the wait reserved is returned, and the slot is the one it reports.
    ctl, clock = primed(observer=DownObserver())
    first, second = ctl.on_enqueue_est(100), ctl.on_enqueue_est(100)
    assert ctl.before_flush_nowait(first) == 0
    assert ctl.before_flush_nowait(second) == 100_000
    assert ctl.snapshot().next_flush_at == clock.monotonic_ns() + 200_000
    with ctl.teardown_bypass():
        assert ctl.before_flush(second) == 0  # a bypass, whose counter fails
    assert ctl.observer_failures == 3


def test_a_metrics_outage_is_logged_sparsely(caplog: pytest.LogCaptureFixture) -> None:
    # spec HARD-5: 100 failures log the 1st, 2nd, 4th, ..., 64th: 7 lines, not 100.
    ctl, _ = primed(observer=DownObserver())
    ctl.on_enqueue_est(10_000)
    with caplog.at_level(logging.WARNING, logger="flowpace"):
        for _ in range(50):
            ctl.before_foreground_write_nowait(1)
    assert ctl.observer_failures == 100
    assert len([record for record in caplog.records if _is_observer_failure(record)]) == 7


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)], ids=repr)
def test_a_base_exception_from_an_observer_propagates(error: BaseException) -> None:
    # spec HARD-5: only Exceptions are isolated; an interrupt is the caller's.
    ctl, _ = primed(observer=DownObserver(error))
    ctl.on_enqueue_est(10_000)
    with pytest.raises(type(error)):
        ctl.before_foreground_write(1)
    assert ctl.observer_failures == 0


def test_the_recording_double_raises_by_default() -> None:
    # spec HARD-5: the test-only switch: a failing test double fails the test.
    class Strict(DownObserver):
        def __init__(self) -> None:
            RecordingObserver.__init__(self)
            self.error = None

    ctl, _ = primed(observer=Strict())
    ctl.on_enqueue_est(10_000)
    with pytest.raises(ConnectionError):
        ctl.before_foreground_write(1)


def run(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run ``coroutine`` to its end on a fresh event loop."""
    return asyncio.run(coroutine)


def test_a_failing_observer_is_isolated_in_the_async_forms_too() -> None:
    # spec HARD-5: the async write and flush return what they waited.
    clock = ManualClock()
    ctl, _ = primed(clock=clock, observer=DownObserver(), async_sleep=clock.async_sleep_ns)
    first, second = ctl.on_enqueue_est(100), ctl.on_enqueue_est(100)
    assert run(ctl.before_flush_async(first)) == 0
    assert run(ctl.before_flush_async(second)) == 100_000  # ns: 100 us
    ctl.on_enqueue_est(10_000)
    assert run(ctl.before_foreground_write_async(1)) == 50_000_000  # ns: 50 ms
    assert ctl.observer_failures == 4


# --- HARD-7, HARD-8: logged events and the controller's repr -----------------------------------


def idle_resets(ctl: FlowController, clock: ManualClock, count: int, idle_ns: int) -> None:
    """Make ``count`` idle resets, each after ``idle_ns`` of zero debt."""
    for _ in range(count):
        clock.advance_ns(idle_ns)
        task = ctl.on_enqueue_est(10)  # an idle reset if idle_ns >= bp_idle_reset_ms
        ctl.on_mark_done(task)


def test_idle_resets_are_logged_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    # spec HARD-7, FC-12: the first reset is logged; the next ones within a minute of the
    # controller's time are counted into the next line.
    ctl, clock = primed()  # bp_idle_reset_ms is 5 000
    with caplog.at_level(logging.INFO, logger="flowpace"):
        idle_resets(ctl, clock, 5, 6_000_000_000)  # at 6, 12, 18, 24, 30 s
        idle_resets(ctl, clock, 1, 40_000_000_000)  # at 70 s: a minute after the first line
        idle_resets(ctl, clock, 1, 1_000_000)  # not idle long enough: no reset at all
    lines = [record.getMessage() for record in caplog.records if record.name == "flowpace"]
    assert len(lines) == 2, lines
    assert "idle reset" in lines[0]
    assert "(1 reset(s)" in lines[0]
    assert "(5 reset(s)" in lines[1]  # the 4 suppressed and its own
    assert ctl.snapshot().io_sample_count == 0  # the resets did happen


def test_idle_resets_log_nothing_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    # spec HARD-7: nothing is formatted or emitted below the logger's level.
    ctl, clock = primed()
    with caplog.at_level(logging.WARNING, logger="flowpace"):
        idle_resets(ctl, clock, 3, 70_000_000_000)
    assert [record for record in caplog.records if record.name == "flowpace"] == []


@pytest.mark.parametrize(
    ("debt", "regime"),
    [
        (0, "NO_DEBT"),
        (2_000, "STEADY_BELOW_SOFT"),
        (3_000, "SOFT_ZONE"),
        (4_000, "HARD_ZONE"),
        (8_000, "STOP"),
    ],
)
def test_a_controller_shows_its_debt_regime_and_options(debt: int, regime: str) -> None:
    # spec HARD-8, FC-6: the regime a one-byte write is in, and the thresholds.
    ctl, _ = primed()
    if debt:
        ctl.on_enqueue_est(debt)
    text = repr(ctl)
    assert f"debt_bytes={debt} " in text
    assert f"regime={regime} " in text
    assert "backpressure=on pacing=on unit=1000B soft/hard/stop=2/4/8 units" in text


def test_a_cold_or_disabled_controller_shows_its_regime() -> None:
    # spec HARD-8, FC-6: cold start and backpressure off.
    assert "regime=DISABLED" in repr(FlowController(clock=ManualClock()))
    cold = FlowController(FlowOptions(enable_backpressure=True), clock=ManualClock())
    cold.on_enqueue_est(1)
    assert "regime=COLD_BELOW_FAIL_SAFE" in repr(cold)
    cold.on_enqueue_est(8 * 64 * 2**20)
    assert "regime=COLD_THROTTLED" in repr(cold)
