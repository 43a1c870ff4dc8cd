"""Recording a live controller's run as a trace that `flowpace replay` checks (spec OBS-7, OBS-8).

`TraceRecorder` builds a `FlowController` and stands in front of it with the same methods:
each operation is passed to the controller and written down with its arguments, the time the
controller used and everything it answered, in the replay format (``tests/vectors/FORMAT.md``).
`flowpace replay --target reference FILE` then checks the run against the model, line by
line and field by field (trace validation). Recording costs nothing when off: a controller not
built by a recorder is not wrapped at all.

What a recording guarantees (spec OBS-8): the recorder runs one operation at a time, holding its
lock across the whole call (its sleeps included) and appending the call's line before it lets
the next one in, so the lines are in the order the operations took effect. The controller's
clock is the recorder's: between operations it follows the wrapped clock at microsecond
resolution (each step an ``advance`` line); during an operation it stands still except for the
operation's own sleeps, which move it by exactly their length, as on the replay's clock. Every
line therefore holds exactly the inputs the controller had and the answers it gave. The price is
that recorded callers are serialised, sleeps included. A wait the controller returns instead of
sleeping (``*_nowait``; the ``*_async`` variants, which await it outside the lock) is recorded as
the blocking operation's sleep: the recorder's clock moves ahead by the wait at once, and stands
still until the wrapped clock has caught up. Async variants report their metrics at decision time.

>>> from flowpace import FlowOptions
>>> from flowpace.testing import ManualClock
>>> clock = ManualClock()
>>> recorder = TraceRecorder(FlowOptions(enable_backpressure=True), clock=clock)
>>> task = recorder.on_enqueue_est(1_000)
>>> clock.advance_ns(2_500)                   # recorded as an advance of 2 us ...
>>> recorder.on_io_built(task, 1_000, 2_000)
>>> recorder.on_mark_done(task)
>>> [line["op"] for line in recorder.vector()["trace"][1:]]
['enqueue', 'advance', 'io_built', 'mark_done']
>>> recorder.vector()["expected"][3]["task"]["io_micros"]  # ... the other 500 ns come later
2
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Final, TypeAlias, TypeVar

from flowpace._scopes import ScopeContexts
from flowpace.clock import SYSTEM_CLOCK, AsyncSleep, Clock, Nanoseconds, asyncio_sleep_ns
from flowpace.controller import FlowController, FlowTask
from flowpace.observer import Observer
from flowpace.options import FlowOptions
from flowpace_reference.types import (
    Config,
    ControllerState,
    Metric,
    Outcome,
    TaskState,
    TaskStateError,
)

__all__ = ["RecordedTask", "TraceRecorder", "recording"]

JsonValue: TypeAlias = bool | int | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]

_T = TypeVar("_T")

_NANOS_PER_MICRO: Final = 1_000

_RECORDED_ERRORS: Final = (TypeError, ValueError, RuntimeError, OverflowError)
"""The errors an operation raises that a trace records by name, as the replay's targets do."""

_SCOPE_OPERATIONS: Final = {
    "enter_teardown": FlowController.enter_teardown_bypass,
    "leave_teardown": FlowController.leave_teardown_bypass,
    "enter_starving": FlowController.enter_arena_starving,
    "leave_starving": FlowController.leave_arena_starving,
}
"""The trace's scope operations and the controller methods that perform them."""


class _RecordingClock:
    """
    The recorded controller's clock: the wrapped one at microsecond steps, still during a call.

    Time is kept as nanoseconds since the recording started. Guarded by the recorder's lock:
    every call that reads or moves it happens inside a recorded operation.
    """

    __slots__ = ("_clock", "_elapsed_ns", "origin_ns")

    def __init__(self, clock: Clock) -> None:
        """Start at the wrapped clock's reading, which becomes the trace's time 0."""
        self._clock = clock
        self.origin_ns = clock.monotonic_ns()
        self._elapsed_ns = 0

    @property
    def elapsed_ns(self) -> int:
        """The trace's time: nanoseconds since the recording started."""
        return self._elapsed_ns

    def monotonic_ns(self) -> int:
        """Return the time the controller uses: it moves only between calls and by sleeps."""
        return self.origin_ns + self._elapsed_ns

    def sleep_ns(self, duration_ns: int) -> None:
        """Sleep on the wrapped clock, then move by exactly ``duration_ns`` (the replay's rule)."""
        self._clock.sleep_ns(duration_ns)
        self._elapsed_ns += duration_ns

    def move(self, duration_ns: int) -> None:
        """Move by ``duration_ns``: a wait returned to the caller, recorded as a sleep."""
        self._elapsed_ns += duration_ns

    def catch_up_us(self) -> int:
        """Move to the wrapped clock's reading in whole microseconds; return how many."""
        behind_us = (self._clock.monotonic_ns() - self.origin_ns - self._elapsed_ns) // 1_000
        if behind_us <= 0:
            return 0
        self._elapsed_ns += behind_us * _NANOS_PER_MICRO
        return behind_us


class _CapturingObserver:
    """
    Keeps the calls of the operation being recorded and hands each to the user's observer.

    A call is kept before it is handed on, so an observer that raises loses nothing from the
    recording; what the controller then does with the exception is what it does unrecorded.
    """

    __slots__ = ("_flowpace_observer_raises", "calls", "observer")

    def __init__(self, observer: Observer | None) -> None:
        """Forward to ``observer`` (None: to nobody), with its choice about failures."""
        self.observer = observer
        self.calls: list[JsonValue] = []
        # The controller reads this flag of its observer (a test double's): pass it through.
        self._flowpace_observer_raises = getattr(observer, "_flowpace_observer_raises", False)

    def counter(self, metric: Metric, delta: int) -> None:
        """Record a counter call, then forward it."""
        self.calls.append({"type": "counter", "metric": metric.value, "value": delta})
        if self.observer is not None:
            self.observer.counter(metric, delta)

    def histogram(self, metric: Metric, value: int) -> None:
        """Record a histogram call, then forward it."""
        self.calls.append({"type": "histogram", "metric": metric.value, "value": value})
        if self.observer is not None:
            self.observer.histogram(metric, value)


class RecordedTask:
    """
    A `FlowTask` of a recorded controller: its two methods are recorded too.

    Made only by `TraceRecorder.on_enqueue_est`; pass it back to the same recorder.
    """

    __slots__ = ("_recorder", "_task", "task_id")

    def __init__(self, recorder: TraceRecorder, task: FlowTask, task_id: int) -> None:
        """Wrap ``task``, named ``task_id`` in the trace."""
        self._recorder = recorder
        self._task = task
        self.task_id = task_id
        """The task's id in the trace."""

    @property
    def est_bytes(self) -> int:
        """The size estimated at enqueue (never changes)."""
        return self._task.est_bytes

    def mark_outcome(self, outcome: Outcome) -> None:
        """Record how the flush ended (spec FC-3), as a ``mark_outcome`` line."""
        if type(outcome) is not Outcome:
            self._task.mark_outcome(outcome)  # raises TypeError: nothing to record
            return
        op: JsonObject = {"op": "mark_outcome", "task": self.task_id, "outcome": outcome.value}
        self._recorder._record(op, self, lambda: self._task.mark_outcome(outcome))  # noqa: SLF001

    def mark_force_bypass(self) -> None:
        """Make this task bypass flush pacing (spec FC-4), as a ``force_bypass`` line."""
        op: JsonObject = {"op": "force_bypass", "task": self.task_id}
        self._recorder._record(op, self, self._task.mark_force_bypass)  # noqa: SLF001

    def snapshot(self) -> TaskState:
        """Return the task's fields, read atomically (not recorded)."""
        return self._task.snapshot()

    def __enter__(self) -> RecordedTask:  # noqa: PYI034 - never subclassed: made by the recorder
        """Return the task; leaving the ``with`` settles it, as `FlowTask` does (HARD-9)."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Settle the task unless the body did, as a SKIP if it raised; each step recorded."""
        if self._task.snapshot().done:
            return
        if exc_type is not None:
            self.mark_outcome(Outcome.SKIP)
        self._recorder.on_mark_done(self)

    def __repr__(self) -> str:
        """Return the task's id and fields."""
        return f"<RecordedTask {self.task_id} {self._task!r}>"


class TraceRecorder(ScopeContexts):
    """
    A `FlowController` that records every operation in the replay format (spec OBS-7, OBS-8).

    Built like a controller (``options``, ``clock``, ``observer``, ``async_sleep``) and used in
    its place: it has the controller's methods, and its tasks are `RecordedTask` values.
    `vector` returns the recording so far; `write` stores it as one trace line of a file.
    """

    def __init__(
        self,
        options: FlowOptions | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        observer: Observer | None = None,
        async_sleep: AsyncSleep = asyncio_sleep_ns,
        trace_id: str = "recording",
    ) -> None:
        """Build the recorded controller; its construction is the trace's time 0."""
        if options is None:
            options = FlowOptions()
        elif type(options) is FlowOptions and options.ext_admission_timeline:
            # spec OBS-7: the trace format and the replay's model are the seed's law's.
            raise ValueError(
                "ext_admission_timeline=True cannot be recorded: the trace format and "
                "flowpace replay know the seed's law only (spec OBS-7)"
            )
        self._lock = threading.Lock()
        self._clock = _RecordingClock(clock)
        self._observer = _CapturingObserver(observer)
        self._async_sleep = async_sleep
        self._controller = FlowController(options, clock=self._clock, observer=self._observer)
        self._trace_id = trace_id
        self._next_task_id = 1
        config_line: JsonObject = {f.name: getattr(options, f.name) for f in fields(options)}
        self._trace: list[JsonObject] = [config_line]
        self._expected: list[JsonObject] = [
            {
                "i": 0,
                "config": _config_json(self._controller.config),
                "now_ns": 0,
                "state": self._state_json(self._controller.snapshot()),
            }
        ]

    @property
    def config(self) -> Config:
        """The normalised configuration the controller runs with (spec CFG-2)."""
        return self._controller.config

    @property
    def observer_failures(self) -> int:
        """How many observer calls raised and were isolated by the controller."""
        return self._controller.observer_failures

    # --- the recording ---------------------------------------------------------------------

    def vector(self) -> JsonObject:
        """Return the recording so far as a replay vector: ``id``, ``trace``, ``expected``."""
        with self._lock:
            trace: list[JsonValue] = list(self._trace)
            expected: list[JsonValue] = list(self._expected)
        return {"id": self._trace_id, "trace": trace, "expected": expected}

    def write(self, path: Path | str) -> None:
        """Write the recording to ``path`` as one line of a trace file (replaced if present)."""
        Path(path).write_text(json.dumps(self.vector()) + "\n", encoding="utf-8")

    def _record(
        self,
        op: JsonObject,
        task: RecordedTask | None,
        call: Callable[[], _T],
        slept_ns: Callable[[_T], int] = lambda _: 0,
        *,
        waited: bool = False,
    ) -> _T:
        """
        Perform ``call`` as the trace line ``op`` and record its answer; return its result.

        ``slept_ns`` gives the nanoseconds the operation slept from its result; ``waited``
        says they were returned to wait, not slept, so the clock moves by them here.
        """
        with self._lock:
            behind_us = self._clock.catch_up_us()
            if behind_us:
                self._append({"op": "advance", "us": behind_us}, None, 0, None)
            self._observer.calls = []
            try:
                result = call()
            except _RECORDED_ERRORS as error:
                self._append(op, task, 0, error)
                raise
            except BaseException:
                # Not the operation's own error (an observer that asked to raise, an
                # interrupt): its change is done; record it as it stands, then raise.
                self._append(op, task, 0, None)
                raise
            slept = slept_ns(result)
            if waited:
                self._clock.move(slept)
            self._append(op, result if isinstance(result, RecordedTask) else task, slept, None)
            return result

    def _append(
        self, op: JsonObject, task: RecordedTask | None, slept_ns: int, error: Exception | None
    ) -> None:
        """Append ``op`` and its answer, read now; the recorder's lock is held."""
        answer: JsonObject = {"i": len(self._trace), "op": op["op"]}
        if error is not None:
            answer["error"] = type(error).__name__
        answer["slept_us"] = slept_ns // _NANOS_PER_MICRO
        answer["now_ns"] = self._clock.elapsed_ns
        answer["state"] = self._state_json(self._controller.snapshot())
        answer["metrics"] = self._observer.calls
        self._observer.calls = []
        if task is not None:
            answer["task"] = self._task_json(task.snapshot())
        self._trace.append(op)
        self._expected.append(answer)

    def _state_json(self, state: ControllerState) -> JsonObject:
        """Return ``state`` as a trace's ``state`` field, times since the recording started."""
        # Every field of the state, as replay compares them; only the two times are shifted.
        fields_json: JsonObject = {f.name: getattr(state, f.name) for f in fields(state)}
        fields_json["idle_since"] = self._trace_time(state.idle_since)
        fields_json["next_flush_at"] = self._trace_time(state.next_flush_at)
        return fields_json

    def _task_json(self, task: TaskState) -> JsonObject:
        """Return ``task`` as a trace's ``task`` field."""
        return {
            "enqueue_at": task.enqueue_at - self._clock.origin_ns,
            "est_bytes": task.est_bytes,
            "actual_bytes": task.actual_bytes,
            "io_micros": task.io_micros,
            "outcome": task.outcome.value,
            "force_bypass": task.force_bypass,
        }

    def _trace_time(self, time_ns: int | None) -> int | None:
        """Return a time the controller holds as the trace's: since the recording started."""
        return None if time_ns is None else time_ns - self._clock.origin_ns

    def _task_of(self, task: object, operation: str) -> RecordedTask:
        """Return ``task`` if it is one of this recorder's tasks; else raise, recording nothing."""
        if not isinstance(task, RecordedTask):
            raise TypeError(f"task must be a RecordedTask of this recorder, got {task!r}")
        if task._recorder is not self:  # noqa: SLF001
            raise TaskStateError(f"{operation}: the task belongs to another controller")
        return task

    # --- the task lifecycle ----------------------------------------------------------------

    def on_enqueue_est(self, est_bytes: int) -> RecordedTask:
        """Charge a new flush task's estimate to the debt and return the task (spec FC-1)."""
        _check_int(est_bytes, "est_bytes")
        op: JsonObject = {"op": "enqueue", "task": 0, "est": est_bytes}

        def enqueue() -> RecordedTask:
            task_id = op["task"] = self._next_task_id  # under the recorder's lock
            self._next_task_id += 1
            return RecordedTask(self, self._controller.on_enqueue_est(est_bytes), task_id)

        return self._record(op, None, enqueue)

    def on_io_built(self, task: RecordedTask, nbytes: int, elapsed_ns: int) -> None:
        """Reconcile the debt with the bytes a task's I/O wrote (spec FC-2), recorded."""
        recorded = self._task_of(task, "on_io_built")
        _check_int(nbytes, "nbytes")
        _check_int(elapsed_ns, "elapsed_ns")
        # The trace holds whole microseconds: the controller uses nothing finer (spec AR-1).
        op: JsonObject = {
            "op": "io_built",
            "task": recorded.task_id,
            "bytes": nbytes,
            "elapsed_us": elapsed_ns // _NANOS_PER_MICRO,
        }
        inner = recorded._task  # noqa: SLF001
        self._record(op, recorded, lambda: self._controller.on_io_built(inner, nbytes, elapsed_ns))

    def on_mark_done(self, task: RecordedTask) -> None:
        """Settle a finished task's charge (spec FC-5), recorded."""
        recorded = self._task_of(task, "on_mark_done")
        op: JsonObject = {"op": "mark_done", "task": recorded.task_id}
        inner = recorded._task  # noqa: SLF001
        self._record(op, recorded, lambda: self._controller.on_mark_done(inner))

    # --- foreground backpressure -----------------------------------------------------------

    def before_foreground_write(self, nbytes: int) -> Nanoseconds:
        """Sleep as backpressure requires before writing ``nbytes`` (FC-6..8), recorded."""
        _check_int(nbytes, "nbytes")
        op: JsonObject = {"op": "fg_write", "bytes": nbytes}
        return self._record(
            op,
            None,
            lambda: self._controller.before_foreground_write(nbytes),
            lambda slept_ns: slept_ns,
        )

    def before_foreground_write_nowait(self, nbytes: int) -> Nanoseconds:
        """Return the nanoseconds a write must wait, recorded as an ``fg_write`` that slept."""
        _check_int(nbytes, "nbytes")
        op: JsonObject = {"op": "fg_write", "bytes": nbytes}
        return self._record(
            op,
            None,
            lambda: self._controller.before_foreground_write_nowait(nbytes),
            lambda wait_ns: wait_ns,
            waited=True,
        )

    async def before_foreground_write_async(self, nbytes: int) -> Nanoseconds:
        """Await the backpressure delay before writing (recorded as the nowait variant)."""
        wait_ns = self.before_foreground_write_nowait(nbytes)
        if wait_ns != 0:
            await self._async_sleep(wait_ns)
        return wait_ns  # spec HARD-13

    # --- flush pacing ----------------------------------------------------------------------

    def before_flush(self, task: RecordedTask) -> Nanoseconds:
        """Wait for the flush's pacing slot (spec FC-9, FC-10), recorded."""
        recorded = self._task_of(task, "before_flush")
        op: JsonObject = {"op": "before_flush", "task": recorded.task_id}
        inner = recorded._task  # noqa: SLF001
        return self._record(
            op,
            recorded,
            lambda: self._controller.before_flush(inner),
            lambda slept_ns: slept_ns,
        )

    def before_flush_nowait(self, task: RecordedTask) -> Nanoseconds:
        """Reserve the flush's slot; return the wait, recorded as a ``before_flush`` that slept."""
        recorded = self._task_of(task, "before_flush_nowait")
        op: JsonObject = {"op": "before_flush", "task": recorded.task_id}
        inner = recorded._task  # noqa: SLF001
        return self._record(
            op,
            recorded,
            lambda: self._controller.before_flush_nowait(inner),
            lambda wait_ns: wait_ns,
            waited=True,
        )

    async def before_flush_async(self, task: RecordedTask) -> Nanoseconds:
        """Reserve the flush's slot and await it (recorded as the nowait variant)."""
        wait_ns = self.before_flush_nowait(task)
        if wait_ns != 0:
            await self._async_sleep(wait_ns)
        return wait_ns  # spec HARD-13

    # --- scopes ------------------------------------------------------------------------------

    def _scope(self, name: str) -> None:
        """Perform and record the scope operation ``name``."""
        operation = _SCOPE_OPERATIONS[name]
        self._record({"op": name}, None, lambda: operation(self._controller))

    def enter_teardown_bypass(self) -> None:
        """Open a teardown scope (spec FC-11), recorded."""
        self._scope("enter_teardown")

    def leave_teardown_bypass(self) -> None:
        """Close a teardown scope (spec FC-11), recorded."""
        self._scope("leave_teardown")

    def enter_arena_starving(self) -> None:
        """Open an arena-starvation scope (spec FC-11), recorded."""
        self._scope("enter_starving")

    def leave_arena_starving(self) -> None:
        """Close an arena-starvation scope (spec FC-11), recorded."""
        self._scope("leave_starving")

    # --- reading the state -------------------------------------------------------------------

    def snapshot(self) -> ControllerState:
        """Return the controller's state, read atomically (not recorded; no recorder lock)."""
        return self._controller.snapshot()

    @property
    def outstanding_tasks(self) -> int:
        """How many tasks are charged and not yet settled (spec HARD-11; not recorded)."""
        return self._controller.outstanding_tasks


@contextmanager
def recording(  # noqa: PLR0913 - the path, then the controller's own settings
    path: Path | str,
    options: FlowOptions | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    observer: Observer | None = None,
    async_sleep: AsyncSleep = asyncio_sleep_ns,
    trace_id: str = "recording",
) -> Iterator[TraceRecorder]:
    """
    Return a recorded controller for the body of a ``with``; write its trace to ``path`` after.

    The trace is written however the body ends, an exception included: the run that failed is
    the one worth replaying.
    """
    recorder = TraceRecorder(
        options, clock=clock, observer=observer, async_sleep=async_sleep, trace_id=trace_id
    )
    try:
        yield recorder
    finally:
        recorder.write(path)


def _config_json(config: Config) -> JsonObject:
    """Return the normalised configuration as a trace's ``config`` field: the seed's options."""
    # spec EXT-1: the extended law's options are not among the trace format's fourteen.
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name[:4] != "ext_"}


def _check_int(value: object, name: str) -> None:
    """
    Raise TypeError, as the controller would, unless ``value`` is an int (not a bool).

    A value a trace cannot hold is refused before the controller sees it, and not recorded:
    the controller would refuse it the same way and change nothing (spec ERR-3).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
