"""Replaying conformance traces against a controller and comparing every answer.

A trace (format: ``tests/vectors/FORMAT.md``) is a configuration followed by operations; its
expected lines are what the seed answered. A *target* replays the operations on a virtual
clock, where time moves only by ``advance`` lines and by sleeping, and renders each answer in
the trace's own vocabulary, so an expected line and an answer compare as plain JSON values.
Only the fields an expected line holds are compared (and an error, always), which lets
traces recorded from a running system leave out what they could not observe.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

from flowpace.controller import FlowController, FlowTask
from flowpace.options import FlowOptions
from flowpace.testing import ManualClock, RecordingObserver
from flowpace_reference import transitions as model
from flowpace_reference.config import config_as_dict, normalise, options_from_mapping
from flowpace_reference.types import (
    Config,
    ControllerState,
    Emission,
    Outcome,
    TaskState,
    TaskStep,
)
from flowpace_reference.u64 import NANOS_PER_MICRO

JsonValue: TypeAlias = bool | int | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class Vector:
    """One conformance trace and the answers expected for it."""

    name: str
    """The trace's id, or its file and line when it has none."""
    trace: list[JsonObject]
    """The configuration, then one operation a line."""
    expected: list[JsonObject]
    """``expected[k]`` answers ``trace[k]``."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The first expected line a target answered differently."""

    index: int
    """The trace line's position."""
    fields: tuple[str, ...]
    """The fields that differ."""
    expected: JsonObject
    """The expected line."""
    got: JsonObject
    """The target's answer, restricted to the expected line's fields."""


class Target(Protocol):
    """A controller driven through the trace vocabulary on a virtual clock."""

    def start(self) -> JsonObject:
        """Return the answer to the configuration line: config, now_ns and state."""
        ...

    def apply(self, op: JsonObject) -> JsonObject:
        """Return the answer to one operation line."""
        ...


TargetFactory: TypeAlias = Callable[[Mapping[str, JsonValue]], Target]


class VectorFileError(ValueError):
    """A trace file cannot be read as traces: the message names the file, and the line."""


def load_vectors(paths: Iterable[Path]) -> Iterator[Vector]:
    """
    Return the vectors stored one JSON object a line in ``paths``.

    Raise VectorFileError, naming the file and line, for a file that cannot be read, a line
    that is not a JSON object with a ``trace`` and an ``expected`` list of objects, or a file
    that holds no trace at all.
    """
    for path in paths:
        found = 0
        for number, line in _lines(path):
            if not line.strip():
                continue
            yield _vector(path, number, line)
            found += 1
        if not found:
            raise VectorFileError(f"{path}: no traces (the file is empty)")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Return the numbered lines of ``path``; raise VectorFileError if it cannot be read."""
    try:
        with path.open(encoding="utf-8") as lines:
            yield from enumerate(lines, start=1)
    except IsADirectoryError:
        raise VectorFileError(f"{path}: is a directory, not a trace file") from None
    except FileNotFoundError:
        raise VectorFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise VectorFileError(f"{path}: cannot be read: {error}") from None


def _vector(path: Path, number: int, line: str) -> Vector:
    """Return the vector on line ``number`` of ``path``; raise VectorFileError if malformed."""
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise VectorFileError(f"{where}: not JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(record, dict):
        raise VectorFileError(f"{where}: a trace is a JSON object, got {type(record).__name__}")
    for key in ("trace", "expected"):
        value = record.get(key)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise VectorFileError(f"{where}: {key!r} must be a list of JSON objects")
    if not record["trace"]:
        raise VectorFileError(f"{where}: 'trace' is empty: its first line is the configuration")
    name = str(record.get("id", where))
    return Vector(name=name, trace=record["trace"], expected=record["expected"])


def options_of(config_line: Mapping[str, JsonValue]) -> Config:
    """Return the normalised configuration of a trace's line 0; ``_`` keys are comments."""
    values = {key: value for key, value in config_line.items() if not key.startswith("_")}
    return normalise(options_from_mapping(values))


def replay(vector: Vector, factory: TargetFactory) -> Mismatch | None:
    """Return the first line where a fresh target answers ``vector`` differently, or None."""
    target = factory(vector.trace[0])
    for index, expected in enumerate(vector.expected):
        got = target.start() if index == 0 else target.apply(vector.trace[index])
        got = {"i": index, **got}
        # An error is always compared: a line that raised must say so to pass, even where
        # the expected line (from a recording) leaves other fields out.
        compared = [*expected, *(["error"] if "error" in got and "error" not in expected else [])]
        differing = tuple(
            path
            for key in compared
            for path in differing_fields(key, expected.get(key), got.get(key, _ABSENT))
        )
        if differing:
            shown = {key: got.get(key) for key in compared}
            return Mismatch(index=index, fields=differing, expected=expected, got=shown)
    if len(vector.expected) != len(vector.trace):
        got = {"error": f"{len(vector.trace)} trace lines but {len(vector.expected)} answers"}
        return Mismatch(index=len(vector.expected), fields=("lines",), expected={}, got=got)
    return None


_ABSENT = object()


def differing_fields(path: str, expected: object, got: object) -> Iterator[str]:
    """Return the dotted paths at which ``got`` differs from ``expected`` (objects nested)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted({*expected, *got}):
            yield from differing_fields(
                f"{path}.{key}", expected.get(key, _ABSENT), got.get(key, _ABSENT)
            )
    elif expected != got:
        yield path


# --- rendering in the trace vocabulary -------------------------------------------------------


def state_json(state: ControllerState) -> JsonObject:
    """Return ``state`` as a trace's ``state`` field."""
    return {
        "debt_bytes": state.debt_bytes,
        "io_bps_ewma": state.io_bps_ewma,
        "e2e_bps_ewma": state.e2e_bps_ewma,
        "io_sample_count": state.io_sample_count,
        "adaptive_floor_bps": state.adaptive_floor_bps,
        "teardown_bypass_scopes": state.teardown_bypass_scopes,
        "arena_starving_scopes": state.arena_starving_scopes,
        "idle_since": state.idle_since,
        "next_flush_at": state.next_flush_at,
    }


def task_json(task: TaskState) -> JsonObject:
    """Return ``task`` as a trace's ``task`` field."""
    return {
        "enqueue_at": task.enqueue_at,
        "est_bytes": task.est_bytes,
        "actual_bytes": task.actual_bytes,
        "io_micros": task.io_micros,
        "outcome": task.outcome.value,
        "force_bypass": task.force_bypass,
    }


def emissions_json(emissions: Iterable[Emission]) -> list[JsonValue]:
    """Return observer calls as a trace's ``metrics`` field."""
    return [
        {"type": item.kind.value, "metric": item.metric.value, "value": item.value}
        for item in emissions
    ]


def integer(op: Mapping[str, JsonValue], key: str) -> int:
    """Return the integer field ``key`` of a trace line."""
    value = op[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"trace field {key} must be an integer, got {value!r}")
    return value


# --- the reference model as a target ---------------------------------------------------------


class ReferenceTarget:
    """The pure reference model, its state threaded through a virtual clock."""

    def __init__(self, config_line: Mapping[str, JsonValue]) -> None:
        """Build the model from a trace's configuration line at virtual time 0."""
        self.config = options_of(config_line)
        self.now_ns = 0
        self.state = model.new_controller(self.config, self.now_ns)
        self.tasks: dict[int, TaskState] = {}

    def start(self) -> JsonObject:
        """Return the answer to the configuration line."""
        return {
            "config": dict(config_as_dict(self.config)),
            "now_ns": self.now_ns,
            "state": state_json(self.state),
        }

    def apply(self, op: JsonObject) -> JsonObject:
        """Return the answer to one operation line, or the error it raised."""
        task_id = integer(op, "task") if "task" in op else None
        slept_ns = 0
        emissions: tuple[Emission, ...] = ()
        answer: JsonObject = {"op": op["op"]}
        try:
            slept_ns, emissions = self._perform(op, task_id)
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            answer["error"] = type(error).__name__
        answer.update(
            slept_us=slept_ns // NANOS_PER_MICRO,
            now_ns=self.now_ns,
            state=state_json(self.state),
            metrics=emissions_json(emissions),
        )
        if task_id is not None and task_id in self.tasks:
            answer["task"] = task_json(self.tasks[task_id])
        return answer

    def _perform(self, op: JsonObject, task_id: int | None) -> tuple[int, tuple[Emission, ...]]:
        """Apply ``op`` to the model; return the nanoseconds slept and the observer calls."""
        name = op["op"]
        config, state, now = self.config, self.state, self.now_ns
        if name == "advance":
            self.now_ns += integer(op, "us") * NANOS_PER_MICRO
            return 0, ()
        if name == "fg_write":
            decision = model.before_foreground_write(config, state, integer(op, "bytes"))
            self.now_ns += decision.delay_us * NANOS_PER_MICRO
            return decision.delay_us * NANOS_PER_MICRO, decision.emissions
        if name in SCOPE_OPERATIONS:
            self.state = SCOPE_OPERATIONS[name](state)
            return 0, ()
        if task_id is None or name not in TASK_OPERATIONS:
            raise ValueError(f"unknown trace operation {op!r}")
        if name == "enqueue":
            step = model.enqueue(config, state, integer(op, "est"), now)
            self.state, self.tasks[task_id] = step.state, step.task
            return 0, ()
        if task_id not in self.tasks:
            raise ValueError(f"trace names task {task_id} before enqueueing it")
        task = self.tasks[task_id]
        if name == "before_flush":
            plan = model.plan_flush(config, state, task, now)
            self.now_ns += plan.sleep_ns
            self.state = model.commit_flush(state, plan, self.now_ns)
            return plan.sleep_ns, plan.emissions
        if name == "io_built":
            elapsed_ns = integer(op, "elapsed_us") * NANOS_PER_MICRO
            step = model.io_built(config, state, task, integer(op, "bytes"), elapsed_ns)
        elif name == "mark_done":
            step = model.mark_done(config, state, task, now)
        elif name == "mark_outcome":
            step = TaskStep(state=state, task=model.mark_outcome(task, outcome_of(op)))
        else:
            step = TaskStep(state=state, task=model.force_bypass(task))
        self.state, self.tasks[task_id] = step.state, step.task
        return 0, ()


def outcome_of(op: Mapping[str, JsonValue]) -> Outcome:
    """Return the outcome a ``mark_outcome`` line names."""
    return Outcome(op["outcome"])


TASK_OPERATIONS = frozenset(
    {"enqueue", "io_built", "mark_outcome", "force_bypass", "mark_done", "before_flush"}
)
"""The trace operations that name a task."""


SCOPE_OPERATIONS: dict[JsonValue, Callable[[ControllerState], ControllerState]] = {
    "enter_teardown": model.enter_teardown,
    "leave_teardown": model.leave_teardown,
    "enter_starving": model.enter_starving,
    "leave_starving": model.leave_starving,
}
"""The scope operations of a trace and the model functions that perform them."""


# --- the threaded implementation as a target ---------------------------------------------------


class ImplTarget:
    """
    The threaded `FlowController`, driven through its public API on a manual clock.

    A recording observer gives each operation's metrics; `FlowTask.snapshot` gives the task.
    """

    def __init__(self, config_line: Mapping[str, JsonValue]) -> None:
        """Build the controller from a trace's configuration line at virtual time 0."""
        values = {key: value for key, value in config_line.items() if not key.startswith("_")}
        self.clock = ManualClock()
        self.observer = RecordingObserver()
        self.controller = FlowController(
            FlowOptions(**values),  # type: ignore[arg-type]  # FlowOptions checks every value
            clock=self.clock,
            observer=self.observer,
        )
        self.tasks: dict[int, FlowTask] = {}

    def start(self) -> JsonObject:
        """Return the answer to the configuration line."""
        return {
            "config": dict(config_as_dict(self.controller.config)),
            "now_ns": self.clock.monotonic_ns(),
            "state": state_json(self.controller.snapshot()),
        }

    def apply(self, op: JsonObject) -> JsonObject:
        """Return the answer to one operation line, or the error it raised."""
        task_id = integer(op, "task") if "task" in op else None
        calls_before = len(self.observer.calls)
        slept_ns = 0
        answer: JsonObject = {"op": op["op"]}
        try:
            slept_ns = self._perform(op, task_id)
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            answer["error"] = type(error).__name__
        answer.update(
            slept_us=slept_ns // NANOS_PER_MICRO,  # the trace format's unit, as the model's
            now_ns=self.clock.monotonic_ns(),
            state=state_json(self.controller.snapshot()),
            metrics=emissions_json(self.observer.calls[calls_before:]),
        )
        if task_id is not None and task_id in self.tasks:
            answer["task"] = task_json(self.tasks[task_id].snapshot())
        return answer

    def _perform(self, op: JsonObject, task_id: int | None) -> int:
        """Apply ``op`` through the controller's public API; return the nanoseconds slept."""
        name, ctl = op["op"], self.controller
        if name == "advance":
            self.clock.advance_ns(integer(op, "us") * NANOS_PER_MICRO)
            return 0
        if name == "fg_write":
            return ctl.before_foreground_write(integer(op, "bytes"))
        if name in IMPL_SCOPE_OPERATIONS:
            IMPL_SCOPE_OPERATIONS[name](ctl)
            return 0
        if task_id is None or name not in TASK_OPERATIONS:
            raise ValueError(f"unknown trace operation {op!r}")
        if name == "enqueue":
            self.tasks[task_id] = ctl.on_enqueue_est(integer(op, "est"))
            return 0
        if task_id not in self.tasks:
            raise ValueError(f"trace names task {task_id} before enqueueing it")
        task = self.tasks[task_id]
        if name == "before_flush":
            return ctl.before_flush(task)
        if name == "io_built":
            ctl.on_io_built(task, integer(op, "bytes"), integer(op, "elapsed_us") * NANOS_PER_MICRO)
        elif name == "mark_done":
            ctl.on_mark_done(task)
        elif name == "mark_outcome":
            task.mark_outcome(outcome_of(op))
        else:
            task.mark_force_bypass()
        return 0


IMPL_SCOPE_OPERATIONS: dict[JsonValue, Callable[[FlowController], None]] = {
    "enter_teardown": FlowController.enter_teardown_bypass,
    "leave_teardown": FlowController.leave_teardown_bypass,
    "enter_starving": FlowController.enter_arena_starving,
    "leave_starving": FlowController.leave_arena_starving,
}
"""The scope operations of a trace and the controller methods that perform them."""


TARGETS: dict[str, TargetFactory] = {"reference": ReferenceTarget, "impl": ImplTarget}
"""The targets `flowpace replay` can drive, by name."""
