"""A Wing-Gong-Lowe linearizability checker, and the controller model as its specification.

Spec DIV-6: every concurrent history of the implementation is linearizable against the model.

A *history* is what the calling threads observed: for each call, the thread that made it, the
times it was invoked and returned (on one clock shared by every thread, so they compare), the
operation, its arguments, its result, and the readings the thread took of the controller's
clock during the call. A history is *linearizable* against a sequential specification when some
order of its calls, consistent with real time (a call that returned before another was invoked
comes first), makes the specification answer every call with the result that was observed.

An operation may take effect in several atomic *phases*, in order, each at an instant between its
invocation and its return. The controller's ``before_flush`` is one: it decides its sleep from
one state, sleeps without holding the lock, and commits its deadline against the state at commit
time (spec FC-10, DIV-6). The checker treats each phase as one step of the search and carries
what an earlier phase decided to the later ones.

The search is depth-first over which step is taken next, with the memoisation of Wing and Gong
as improved by Lowe: a node is the set of steps taken so far together with the specification's
state, and a node already explored is never explored again (a node on the current path cannot
recur, since every step takes one more phase). Checking is NP-complete, so histories are bounded
(``max_calls``) and so is the search (``max_nodes``).

**Time.** The controller's clock is a test's: `FrozenClock` (every thread reads one time) or
`SkewedClock` (each thread reads its own drawn times, so that threads disagree). The
specification, `ControllerSpec`, carries the latest time applied in its state and applies, for
each step, ``max(the reading the call took, the latest time applied before it)`` in the order
being tried: the time the implementation was entitled to apply there (spec DIV-6).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import itertools
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeAlias, TypeVar

from hypothesis import strategies as st

from flowpace import FlowController, FlowOptions, FlowTask
from flowpace_reference import transitions as model
from flowpace_reference.config import normalise
from flowpace_reference.types import (
    Config,
    ControllerState,
    Emission,
    FlushDecision,
    FlushPlan,
    Metric,
    MetricKind,
    Options,
    Outcome,
    TaskState,
    TaskStep,
)

State = TypeVar("State", bound=Hashable)
Item = TypeVar("Item", bound=Hashable)

DEFAULT_MAX_CALLS = 400
"""The longest history `check` accepts unless told otherwise."""

DEFAULT_MAX_NODES = 2_000_000
"""The most search nodes `check` explores before giving up, unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Call:
    """One operation as a calling thread observed it."""

    thread: int
    """The thread that made the call."""
    invoked: int
    """When the call began, on the history's clock."""
    returned: int
    """When the call returned, on the same clock; at least ``invoked``."""
    name: str
    """The operation."""
    args: tuple[Hashable, ...]
    """Its arguments."""
    result: Hashable
    """What it returned, raised or otherwise showed the caller, in the specification's terms."""
    readings: tuple[int, ...] | None = None
    """The clock readings its thread took during the call, in order; None if not recorded."""


class SequentialSpec(Protocol[State]):
    """A sequential object: its initial state and how each phase of each call changes it."""

    def initial(self) -> State:
        """Return the state before any call."""
        ...

    def phases(self, call: Call) -> int:
        """Return in how many atomic steps ``call`` takes effect (at least 1)."""
        ...

    def apply(
        self, state: State, call: Call, phase: int, carry: Hashable
    ) -> tuple[State, Hashable] | None:
        """
        Return the state after ``phase`` of ``call`` and what its next phase needs.

        ``carry`` is what the previous phase returned (None for phase 0). Return None when the
        step contradicts what the caller observed: the result differs, or a phase decided
        something the caller saw otherwise.
        """
        ...


class HistoryTooLongError(ValueError):
    """A history exceeds the checker's bound on its length."""


class SearchBudgetError(RuntimeError):
    """The search explored its whole node budget without an answer."""


Step: TypeAlias = tuple[int, int]
"""One step of a linearization: (index of the call in the history, phase)."""


@dataclass(frozen=True, slots=True)
class Verdict(Generic[State]):
    """The checker's answer: linearizable or not, a witness order, and how far it searched."""

    linearizable: bool
    """Whether some order consistent with real time explains every result."""
    order: tuple[Step, ...]
    """A witness linearization if linearizable; else the longest prefix found."""
    nodes: int
    """Search nodes explored."""
    stuck_state: State | None
    """The specification's state at the end of the longest prefix, when not linearizable."""

    def explain(self, history: Sequence[Call]) -> str:
        """Return a readable account of the verdict: the order found, or where it got stuck."""
        lines = [
            "linearizable" if self.linearizable else "NOT linearizable",
            f"explored {self.nodes} search nodes; "
            + ("witness order:" if self.linearizable else "longest consistent prefix:"),
        ]
        lines.extend(
            f"  {history[index].name}{history[index].args} phase {phase} "
            f"(thread {history[index].thread}) -> {history[index].result!r}"
            + ("" if not history[index].readings else f" (read {history[index].readings})")
            for index, phase in self.order
        )
        if not self.linearizable:
            taken = {index for index, _ in self.order}
            lines.append("calls left that no order explains:")
            lines.extend(
                f"  [{call.invoked}, {call.returned}] thread {call.thread}: "
                f"{call.name}{call.args} -> {call.result!r}"
                + ("" if call.readings is None else f" (read the clock at {call.readings})")
                for index, call in enumerate(history)
                if index not in taken
            )
            lines.append(f"state at the end of the prefix: {self.stuck_state!r}")
        return "\n".join(lines)


def check(
    history: Sequence[Call],
    spec: SequentialSpec[State],
    *,
    max_calls: int = DEFAULT_MAX_CALLS,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Verdict[State]:
    """
    Return whether ``history`` is linearizable against ``spec`` (spec DIV-6).

    Raises HistoryTooLongError for a history longer than ``max_calls``, ValueError for a call
    that returned before it was invoked, and SearchBudgetError when ``max_nodes`` search nodes
    did not settle the question.
    """
    if len(history) > max_calls:
        raise HistoryTooLongError(f"history of {len(history)} calls exceeds {max_calls}")
    for call in history:
        if call.returned < call.invoked:
            raise ValueError(f"call returned before it was invoked: {call!r}")
    search = _Search(history, spec, max_nodes)
    return search.run()


# --- the search ------------------------------------------------------------------------------

_Progress: TypeAlias = tuple[int, ...]
"""For each call, how many of its phases were taken."""

_Carries: TypeAlias = tuple[Hashable, ...]
"""For each call part-way through its phases, what its next phase needs; None otherwise."""


@dataclass(slots=True)
class _Frame(Generic[State]):
    """A node on the depth-first path, with the steps from it not yet tried."""

    progress: _Progress
    carries: _Carries
    state: State
    candidates: Iterator[Step]
    step: Step | None
    """The step that led here from the parent node, None at the root."""


class _Search(Generic[State]):
    """One depth-first search for a linearization of one history."""

    def __init__(
        self, history: Sequence[Call], spec: SequentialSpec[State], max_nodes: int
    ) -> None:
        """Prepare to search ``history`` against ``spec`` within ``max_nodes`` nodes."""
        self.history = tuple(history)
        self.spec = spec
        self.max_nodes = max_nodes
        self.phase_counts = tuple(spec.phases(call) for call in history)
        if any(count < 1 for count in self.phase_counts):
            raise ValueError("every call takes effect in at least one phase")
        # Trying calls in invocation order finds the witness of a sequential history at once.
        self.by_invocation = sorted(range(len(history)), key=lambda i: history[i].invoked)
        self.seen: set[tuple[_Progress, _Carries, State]] = set()
        self.nodes = 0
        self.deepest: tuple[Step, ...] = ()
        self.deepest_state: State | None = None

    def run(self) -> Verdict[State]:
        """Return the verdict of the search."""
        count = len(self.history)
        root = _Frame(
            progress=(0,) * count,
            carries=(None,) * count,
            state=self.spec.initial(),
            candidates=iter(()),
            step=None,
        )
        root.candidates = self.candidates(root.progress)
        path: list[_Frame[State]] = [root]
        self.visit(root, path)
        while path:
            frame = path[-1]
            if frame.progress == self.phase_counts:
                order = tuple(f.step for f in path if f.step is not None)
                return Verdict(linearizable=True, order=order, nodes=self.nodes, stuck_state=None)
            child = self.next_child(frame)
            if child is None:
                path.pop()
                continue
            path.append(child)
            self.visit(child, path)
        return Verdict(
            linearizable=False,
            order=self.deepest,
            nodes=self.nodes,
            stuck_state=self.deepest_state,
        )

    def visit(self, frame: _Frame[State], path: list[_Frame[State]]) -> None:
        """Count ``frame`` as explored and remember it if it is the deepest so far."""
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise SearchBudgetError(
                f"gave up after {self.max_nodes} search nodes on {len(self.history)} calls"
            )
        if len(path) - 1 > len(self.deepest):
            self.deepest = tuple(f.step for f in path if f.step is not None)
            self.deepest_state = frame.state

    def next_child(self, frame: _Frame[State]) -> _Frame[State] | None:
        """Return the next unexplored node one step below ``frame``, or None if none is left."""
        for index, phase in frame.candidates:
            outcome = self.spec.apply(frame.state, self.history[index], phase, frame.carries[index])
            if outcome is None:
                continue
            state, carry = outcome
            progress = _replaced(frame.progress, index, phase + 1)
            last = phase + 1 == self.phase_counts[index]
            carries = _replaced(frame.carries, index, None if last else carry)
            key = (progress, carries, state)
            if key in self.seen:
                continue
            self.seen.add(key)
            return _Frame(
                progress=progress,
                carries=carries,
                state=state,
                candidates=self.candidates(progress),
                step=(index, phase),
            )
        return None

    def candidates(self, progress: _Progress) -> Iterator[Step]:
        """
        Return the steps that may come next after ``progress``.

        A call part-way through its phases may always take its next one. A call not yet begun
        may begin unless some unfinished call returned before it was invoked: that call must
        take all its phases first.
        """
        unfinished = [i for i in self.by_invocation if progress[i] < self.phase_counts[i]]
        horizon = min((self.history[i].returned for i in unfinished), default=0)
        steps = [
            (i, progress[i])
            for i in unfinished
            if progress[i] > 0 or self.history[i].invoked <= horizon
        ]
        return iter(steps)


def _replaced(values: tuple[Item, ...], index: int, value: Item) -> tuple[Item, ...]:
    """Return ``values`` with the item at ``index`` replaced by ``value``."""
    return (*values[:index], value, *values[index + 1 :])


# --- the controller model as a sequential specification --------------------------------------

TaskSlots: TypeAlias = tuple[TaskState | None, ...]
"""The tasks of a run by number; None for a task not yet enqueued."""


@dataclass(frozen=True, slots=True)
class ModelState:
    """The model's controller and every task of the run: one search state."""

    controller: ControllerState
    tasks: TaskSlots
    latest_ns: int = 0
    """The latest time applied so far: every reading applied is raised to it (spec DIV-6)."""


class HistoryError(LookupError):
    """A history names an unknown operation or task: a bug of the test, not of the controller."""


def error_result(error: BaseException) -> tuple[str, str]:
    """Return how a call that raised ``error`` is recorded: ("error", the exception's name)."""
    return ("error", type(error).__name__)


ForegroundResult: TypeAlias = tuple[int, int, tuple[Emission, ...]]
"""What a foreground write shows: (returned delay ns, nanoseconds slept, emissions)."""

FlushResult: TypeAlias = tuple[int, int, tuple[Emission, ...]]
"""What a flush shows: (returned value, nanoseconds slept, emissions); the blocking form returns
the ns it slept, the non-blocking form the ns to wait (and sleeps none): HARD-13."""


class ControllerSpec:
    """
    The reference model as the sequential specification of one controller (spec DIV-6).

    **Time.** The implementation reads its clock before it takes the state lock, so two
    threads may apply their readings out of order; each operation then applies
    ``max(its reading, the latest time applied before it)`` (spec DIV-6). The specification
    does the same: every `Call` carries the clock readings its thread took during the call
    (`Call.readings`), and the state of the search carries the latest time applied
    (`ModelState.latest_ns`), so each step applies the time the implementation was entitled to
    apply at that point of the chosen order. A call that recorded no readings (``None``: a
    history written by hand) reads ``now_ns`` wherever it reads the clock. Which readings an
    operation takes, and what each applies:

    - ``enqueue`` and ``mark_done`` read once and apply it in their one step (FC-1, FC-5);
    - ``before_flush_nowait`` reads once per decision: each reading is a step that applies it
      (a decision whose commit found the state changed took effect as nothing but that); the
      last decision and its commit are then one more step, at the latest time applied, with
      the deadline committed at that time plus the sleep (FC-10: the commit applies no time);
    - a blocking ``before_flush`` is three steps once it may be paced (two readings or more):
      its first decision (which must be to pace, since the call went on), its decision under
      the pacing lock, and its commit at ``max(the reading after the sleep, or the decision's
      time if it slept 0, latest)``; with one reading or none it is one step, the decision;
    - every other call reads no clock.

    Calls and their results:

    - ``enqueue(task, est_bytes)`` -> None; ``io_built(task, nbytes, elapsed_ns)``,
      ``mark_outcome(task, outcome)``, ``force_bypass(task)``, ``mark_done(task)``,
      ``enter_teardown()``, ``leave_teardown()``, ``enter_starving()``,
      ``leave_starving()`` -> None;
    - ``fg_write(write_bytes)`` -> `ForegroundResult` (blocking form); ``fg_write_nowait``
      likewise, its returned value the delay in ns and its sleep 0;
    - ``before_flush_nowait(task)`` -> `FlushResult`; ``before_flush(task)`` -> `FlushResult`;
    - ``snapshot()`` -> the `ControllerState`;

    and ``("error", name)`` for any call that raised. ``task`` is the task's number in the run.
    """

    def __init__(
        self,
        config: Config,
        start: ControllerState,
        task_count: int,
        now_ns: int,
        *,
        latest_ns: int = 0,
    ) -> None:
        """
        Specify a controller in state ``start`` running ``task_count`` tasks.

        ``now_ns`` is the reading of a call that recorded none; ``latest_ns`` the latest time
        the controller applied before the history (its construction's reading).
        """
        self.config = config
        self.start = start
        self.task_count = task_count
        self.now_ns = now_ns
        self.latest_ns = latest_ns

    def initial(self) -> ModelState:
        """Return the controller in its start state, before any task."""
        return ModelState(
            controller=self.start, tasks=(None,) * self.task_count, latest_ns=self.latest_ns
        )

    def phases(self, call: Call) -> int:
        """Return in how many steps ``call`` takes effect (see the class docstring)."""
        if call.name == "before_flush":
            return 1 if call.readings is not None and len(call.readings) <= 1 else 3
        if call.name == "before_flush_nowait":
            return len(self.readings(call)) + 1
        return 1

    def readings(self, call: Call) -> tuple[int, ...]:
        """Return the clock readings ``call`` took: as recorded, else one of ``now_ns``."""
        return (self.now_ns,) if call.readings is None else call.readings

    def apply(
        self, state: ModelState, call: Call, phase: int, carry: Hashable
    ) -> tuple[ModelState, Hashable] | None:
        """Return the state after one phase of ``call``, or None if its result rules it out."""
        if call.name == "before_flush":
            return self._before_flush(state, call, phase, carry)
        if call.name == "before_flush_nowait":
            readings = self.readings(call)
            if phase < len(readings):
                # spec DIV-6: a decision's read applies its time, whatever comes of it.
                return applied(state, readings[phase]), None
            after, result = self._attempt(state, lambda: self._nowait_flush(state, call))
            return (after, None) if result == call.result else None
        after, result = self._attempt(state, lambda: self._perform(state, call))
        return (after, None) if result == call.result else None

    def answer(
        self, state: ModelState, name: str, args: tuple[Hashable, ...]
    ) -> tuple[ModelState, Hashable]:
        """Return the state after ``name(*args)`` made alone at ``now_ns``, and its result."""
        call = Call(thread=0, invoked=0, returned=0, name=name, args=args, result=None)
        timed = state
        if name in {"before_flush", "before_flush_nowait"}:
            timed = applied(state, self.now_ns)
        if name == "before_flush":
            task = self._task(timed, call)
            try:
                plan = model.plan_flush(self.config, timed.controller, task, timed.latest_ns)
            except MODEL_ERRORS as error:
                return timed, error_result(error)
            controller = model.commit_flush(timed.controller, plan, timed.latest_ns)
            return dataclasses.replace(timed, controller=controller), flush_result(plan)
        if name == "before_flush_nowait":
            return self._attempt(timed, lambda: self._nowait_flush(timed, call))
        return self._attempt(state, lambda: self._perform(state, call))

    @staticmethod
    def _attempt(
        state: ModelState, step: Callable[[], tuple[ModelState, Hashable]]
    ) -> tuple[ModelState, Hashable]:
        """Return what ``step`` returns; if the model raises, ``state`` and the error's result."""
        try:
            return step()
        except MODEL_ERRORS as error:
            return state, error_result(error)

    def _perform(self, state: ModelState, call: Call) -> tuple[ModelState, Hashable]:
        """Return the state after a one-phase call and its result; raise as the model does."""
        config, controller = self.config, state.controller
        name, args = call.name, call.args
        if name == "snapshot":
            return state, controller
        if name in {"fg_write", "fg_write_nowait"}:
            (write_bytes,) = args
            decision = model.before_foreground_write(config, controller, _int(write_bytes))
            delay_ns = decision.delay_us * 1_000
            if name == "fg_write_nowait":
                return state, (delay_ns, 0, decision.emissions)
            return state, (delay_ns, delay_ns, decision.emissions)  # spec HARD-13: ns returned
        if name in SCOPES:
            return dataclasses.replace(state, controller=SCOPES[name](controller)), None
        number = _int(args[0])
        if name == "enqueue":
            # spec FC-1, DIV-6: the enqueue time is the reading raised to the latest applied.
            timed = self._timed(state, call)
            step = model.enqueue(config, controller, _int(args[1]), timed.latest_ns)
            return _with_task(timed, number, step.state, step.task), None
        return self._task_call(state, call, number)

    def _timed(self, state: ModelState, call: Call) -> ModelState:
        """Return ``state`` after a one-step call applied its reading, if it took one."""
        readings = self.readings(call)
        return applied(state, readings[-1]) if readings else state

    def _task(self, state: ModelState, call: Call) -> TaskState:
        """Return the task ``call`` names; HistoryError if the history never enqueued it."""
        task = state.tasks[_int(call.args[0])]
        if task is None:
            raise HistoryError(f"history names task {call.args[0]} before it was enqueued")
        return task

    def _task_call(self, state: ModelState, call: Call, number: int) -> tuple[ModelState, Hashable]:
        """Return the state after a call on the enqueued task ``number`` and its result."""
        config, controller, args = self.config, state.controller, call.args
        task = self._task(state, call)
        if call.name == "io_built":
            step = model.io_built(config, controller, task, _int(args[1]), _int(args[2]))
        elif call.name == "mark_done":
            # spec FC-5, DIV-6: settled at the reading raised to the latest time applied.
            state = self._timed(state, call)
            step = model.mark_done(config, controller, task, state.latest_ns)
        elif call.name == "mark_outcome":
            outcome = args[1]
            if not isinstance(outcome, Outcome):
                raise TypeError(f"outcome must be an Outcome, got {outcome!r}")
            step = TaskStep(state=controller, task=model.mark_outcome(task, outcome))
        elif call.name == "force_bypass":
            step = TaskStep(state=controller, task=model.force_bypass(task))
        else:
            raise HistoryError(f"unknown operation {call.name!r}")
        return _with_task(state, number, step.state, step.task), None

    def _nowait_flush(self, state: ModelState, call: Call) -> tuple[ModelState, Hashable]:
        """Return the state after a nowait flush's decision and commit, at the latest time."""
        # spec FC-10, DIV-6: decided and committed at once, as if the sleep ended on time;
        # the caller is told how long to wait. The commit applies no time of its own.
        now = state.latest_ns
        plan = model.plan_flush(self.config, state.controller, self._task(state, call), now)
        committed = model.commit_flush(state.controller, plan, now + plan.sleep_ns)
        return dataclasses.replace(state, controller=committed), nowait_flush_result(plan)

    def _before_flush(
        self, state: ModelState, call: Call, phase: int, carry: Hashable
    ) -> tuple[ModelState, Hashable] | None:
        """Return the state after one step of a blocking flush (see the class docstring)."""
        if carry == FLUSH_DONE:
            return state, FLUSH_DONE  # the flush took effect in an earlier step
        if phase == 2:
            return self._flush_commit(state, call, carry)
        recorded = call.readings
        if recorded is None:
            reading: int | None = self.now_ns
        else:
            reading = recorded[phase] if phase < len(recorded) else None
        timed = state if reading is None else applied(state, reading)
        try:
            plan = model.plan_flush(
                self.config, timed.controller, self._task(timed, call), timed.latest_ns
            )
        except MODEL_ERRORS as error:
            # A rejected flush decides nothing: its call ends in this step.
            final = recorded is None or len(recorded) <= phase + 1
            return (timed, FLUSH_DONE) if final and error_result(error) == call.result else None
        paced = plan.decision is FlushDecision.PACED
        if phase == 0:
            if (not paced) if recorded is None else len(recorded) <= 1:
                # Not to be paced: the call ends with this decision (a paced one reads again).
                decided = not paced and flush_result(plan) == call.result
                return (timed, FLUSH_DONE) if decided else None
            # The call read the clock again: its first decision was to pace (spec DIV-6).
            return (timed, FLUSH_PACING) if paced else None
        if flush_result(plan) != call.result:
            return None
        if recorded is not None and len(recorded) != (3 if paced and plan.sleep_ns else 2):
            return None  # a read after the sleep iff it slept (FC-10)
        return (timed, (plan, timed.latest_ns)) if paced else (timed, FLUSH_DONE)

    def _flush_commit(
        self, state: ModelState, call: Call, carry: Hashable
    ) -> tuple[ModelState, Hashable]:
        """Return the state after a paced blocking flush commits its deadline (spec FC-10)."""
        if not isinstance(carry, tuple) or not isinstance(carry[0], FlushPlan):
            raise TypeError(f"a commit needs the flush's plan and time, got {carry!r}")
        plan, decided_ns = carry
        # spec FC-10, DIV-6: the commit applies the reading taken after the sleep, or the
        # decision's time if it slept 0, raised to the latest time applied.
        recorded = call.readings
        if recorded is None:
            woke = self.now_ns if plan.sleep_ns else decided_ns
        else:
            woke = recorded[2] if len(recorded) > 2 else decided_ns
        timed = applied(state, woke)
        controller = model.commit_flush(timed.controller, plan, timed.latest_ns)
        return dataclasses.replace(timed, controller=controller), None


MODEL_ERRORS: Final = (TypeError, ValueError, RuntimeError, OverflowError)
"""What the model raises for a call it rejects; the call is recorded as its error."""

FLUSH_DONE: Final = "done"
"""The carry of a blocking flush that took effect: its later steps change nothing."""

FLUSH_PACING: Final = "pacing"
"""The carry of a blocking flush whose first decision was to pace."""


def applied(state: ModelState, reading: int) -> ModelState:
    """Return ``state`` once a step applied ``reading``: the latest time, raised (DIV-6)."""
    if reading <= state.latest_ns:
        return state
    return dataclasses.replace(state, latest_ns=reading)


def flush_result(plan: FlushPlan) -> FlushResult:
    """Return what a blocking ``before_flush`` with ``plan`` shows its caller (spec FC-10)."""
    return (plan.sleep_ns, plan.sleep_ns, plan.emissions)  # spec HARD-13: ns returned


def nowait_flush_result(plan: FlushPlan) -> FlushResult:
    """Return what ``before_flush_nowait`` with ``plan`` shows: the wait, in ns; no sleep."""
    return (plan.sleep_ns, 0, plan.emissions)


SCOPES: dict[str, Callable[[ControllerState], ControllerState]] = {
    "enter_teardown": model.enter_teardown,
    "leave_teardown": model.leave_teardown,
    "enter_starving": model.enter_starving,
    "leave_starving": model.leave_starving,
}
"""The scope calls and the model functions that perform them (spec FC-11)."""


def _with_task(
    state: ModelState, number: int, controller: ControllerState, task: TaskState
) -> ModelState:
    """Return ``state`` with a new controller and task ``number`` replaced by ``task``."""
    tasks = (*state.tasks[:number], task, *state.tasks[number + 1 :])
    return dataclasses.replace(state, controller=controller, tasks=tasks)


def _int(value: Hashable) -> int:
    """Return ``value``, an argument the history recorded as an int."""
    if not isinstance(value, int):
        raise TypeError(f"expected an int argument, got {value!r}")
    return value


# --- recording histories of the implementation -----------------------------------------------


class FrozenClock:
    """
    A clock stopped at one time: every read returns it, and a sleep is recorded, not waited.

    Implements `flowpace.clock.Clock`. Under a concurrent run no thread moves time, so every
    call reads the same instant. Each thread's readings (`read_ns`) and sleeps (`slept_ns`) are
    kept apart, so that a history records what each call read; ``point`` is called on every
    read and sleep, so a deterministic scheduler can switch threads there.
    """

    def __init__(self, now_ns: int, point: Callable[[str], None] | None = None) -> None:
        """Stop the clock at ``now_ns``; call ``point`` at every read and sleep."""
        self.now_ns = now_ns
        self.point = point
        self._local = threading.local()

    def bind(self, thread: int) -> None:
        """Say that the calling thread is the history's thread ``thread`` (see `SkewedClock`)."""
        self._local.thread = thread

    def monotonic_ns(self) -> int:
        """Return the calling thread's next reading, and keep it in `read_ns`."""
        if self.point is not None:
            self.point("read the clock")
        reading = self.reading()
        self.read_ns().append(reading)
        return reading

    def reading(self) -> int:
        """Return the time the calling thread reads now: the frozen time."""
        return self.now_ns

    def sleep_ns(self, duration_ns: int) -> None:
        """Record a sleep of ``duration_ns`` for the calling thread; return at once."""
        if self.point is not None:
            self.point(f"sleep {duration_ns} ns")
        self.slept_ns().append(duration_ns)

    def slept_ns(self) -> list[int]:
        """Return the calling thread's sleeps, in order."""
        return self._thread_list("sleeps")

    def read_ns(self) -> list[int]:
        """Return the calling thread's readings, in order."""
        return self._thread_list("readings")

    def _thread_list(self, name: str) -> list[int]:
        """Return the calling thread's list ``name``, made empty on first use."""
        values: list[int] | None = getattr(self._local, name, None)
        if values is None:
            values = []
            setattr(self._local, name, values)
        return values


class SkewedClock(FrozenClock):
    """
    A clock whose threads disagree: each history thread reads its own times (spec DIV-6).

    ``times[thread]`` are the readings of history thread ``thread`` (`bind`), in order, each at
    least the one before (every thread's clock is monotonic), the last repeated once they run
    out; a thread with none (the main thread) reads ``now_ns``. Readings of different threads
    need not agree, so one thread may apply a time later than another's reading taken before
    it: the controller must then raise that reading to the latest time applied.
    """

    def __init__(
        self,
        now_ns: int,
        times: Mapping[int, Sequence[int]],
        point: Callable[[str], None] | None = None,
    ) -> None:
        """Read ``times`` per thread, ``now_ns`` elsewhere; call ``point`` at reads and sleeps."""
        super().__init__(now_ns, point)
        self.times = {thread: tuple(values) for thread, values in times.items()}

    def reading(self) -> int:
        """Return the calling thread's next time from ``times``, or ``now_ns`` if it has none."""
        values = self.times.get(getattr(self._local, "thread", MAIN_THREAD), ())
        if not values:
            return self.now_ns
        taken = len(self.read_ns())
        return values[min(taken, len(values) - 1)]


MAIN_THREAD: Final = -1
"""The history thread of calls made on the main thread, before and after the threads run."""


class ThreadObserver:
    """An observer that keeps each thread's calls apart, as model `Emission` values."""

    def __init__(self) -> None:
        """Start with no call recorded."""
        self._local = threading.local()

    def counter(self, metric: Metric, delta: int) -> None:
        """Record a counter increment for the calling thread."""
        self.calls().append(Emission(MetricKind.COUNTER, metric, delta))

    def histogram(self, metric: Metric, value: int) -> None:
        """Record a histogram sample for the calling thread."""
        self.calls().append(Emission(MetricKind.HISTOGRAM, metric, value))

    def calls(self) -> list[Emission]:
        """Return the calling thread's observer calls, in order."""
        calls: list[Emission] | None = getattr(self._local, "calls", None)
        if calls is None:
            calls = self._local.calls = []
        return calls


Script: TypeAlias = list[tuple[str, tuple[Hashable, ...]]]
"""One thread's calls, in the vocabulary of `ControllerSpec`."""


class HistoryRecorder:
    """
    Make calls on a `FlowController` and record each as a `Call` of its history (DIV-6).

    ``ticks`` is the history's clock, shared by every thread: it is read just before each call
    is made and just after it returns. Tasks are named by number; the thread that enqueues a
    task keeps its handle here for the calls that follow.
    """

    def __init__(
        self,
        controller: FlowController,
        clock: FrozenClock,
        observer: ThreadObserver,
        ticks: Callable[[], int],
    ) -> None:
        """Record calls on ``controller``, whose clock and observer are ``clock``, ``observer``."""
        self.controller = controller
        self.clock = clock
        self.observer = observer
        self.ticks = ticks
        self.handles: dict[int, FlowTask] = {}
        self._calls: list[Call] = []
        self._lock = threading.Lock()  # guards the list only, never held during a call

    @property
    def history(self) -> list[Call]:
        """Every call recorded so far."""
        with self._lock:
            return list(self._calls)

    def run(self, thread: int, script: Script) -> None:
        """Make every call of ``script`` in order, recording each."""
        for name, args in script:
            self.call(thread, name, args)

    def call(self, thread: int, name: str, args: tuple[Hashable, ...]) -> None:
        """Make one call and record it with what its caller saw and the times it read."""
        self.clock.bind(thread)
        reads, sleeps = len(self.clock.read_ns()), len(self.clock.slept_ns())
        emissions = len(self.observer.calls())
        invoked = self.ticks()
        try:
            returned_value = self._perform(name, args)
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            result: Hashable = error_result(error)
        else:
            slept = sum(self.clock.slept_ns()[sleeps:])
            emitted = tuple(self.observer.calls()[emissions:])
            result = self._result(name, returned_value, slept, emitted)
        returned = self.ticks()
        readings = tuple(self.clock.read_ns()[reads:])
        record = Call(thread, invoked, returned, name, args, result, readings)
        with self._lock:
            self._calls.append(record)

    @staticmethod
    def _result(name: str, value: object, slept: int, emitted: tuple[Emission, ...]) -> Hashable:
        """Return a call's result in the vocabulary of `ControllerSpec`."""
        if name in {"fg_write", "fg_write_nowait", "before_flush", "before_flush_nowait"}:
            assert isinstance(value, int)
            return (value, slept, emitted)
        if name == "snapshot":
            assert isinstance(value, ControllerState)
            return value
        return None

    def _perform(self, name: str, args: tuple[Hashable, ...]) -> object:
        """Make the call ``name(*args)`` on the controller; return what it returned."""
        ctl = self.controller
        if name == "snapshot":
            return ctl.snapshot()
        if name in SCOPE_METHODS:
            return getattr(ctl, SCOPE_METHODS[name])()
        if name in {"fg_write", "fg_write_nowait"}:
            nowait = name == "fg_write_nowait"
            ask = ctl.before_foreground_write_nowait if nowait else ctl.before_foreground_write
            return ask(_int(args[0]))
        number = _int(args[0])
        if name == "enqueue":
            self.handles[number] = ctl.on_enqueue_est(_int(args[1]))
            return None
        return self._task_call(name, self.handles[number], args)

    def _task_call(self, name: str, task: FlowTask, args: tuple[Hashable, ...]) -> object:
        """Make the call ``name`` on ``task``; return what it returned."""
        ctl = self.controller
        if name == "before_flush":
            return ctl.before_flush(task)
        if name == "before_flush_nowait":
            return ctl.before_flush_nowait(task)
        if name == "io_built":
            ctl.on_io_built(task, _int(args[1]), _int(args[2]))
        elif name == "mark_outcome":
            outcome = args[1]
            assert isinstance(outcome, Outcome)
            task.mark_outcome(outcome)
        elif name == "force_bypass":
            task.mark_force_bypass()
        elif name == "mark_done":
            ctl.on_mark_done(task)
        else:
            raise HistoryError(f"unknown operation {name!r}")
        return None


SCOPE_METHODS: Final = {
    "enter_teardown": "enter_teardown_bypass",
    "leave_teardown": "leave_teardown_bypass",
    "enter_starving": "enter_arena_starving",
    "leave_starving": "leave_arena_starving",
}
"""The implementation's method for each scope call of the history."""


# --- running scripts on real threads ---------------------------------------------------------


def run_scripts_in_threads(
    recorder: HistoryRecorder, scripts: Sequence[Script], timeout_s: float
) -> None:
    """
    Run each script on a thread of its own, the calls of a round started together (DIV-6).

    The threads meet at a barrier before each round of calls, so that the calls of a round
    start together and overlap, rather than one thread finishing before the next wakes up; a
    switch interval of 1 us (the default is 5 ms) makes the interpreter preempt them inside the
    controller. ``timeout_s`` is a safety net: threads still running then fail the test, with
    every thread's stack dumped. The first exception a thread raised is raised here.
    """
    rounds = max(len(script) for script in scripts)
    meet = threading.Barrier(len(scripts))
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        script = scripts[number]
        try:
            for index in range(rounds):
                meet.wait(timeout_s)
                if index < len(script):
                    recorder.call(number, *script[index])
        except BaseException as error:  # noqa: BLE001  # re-raised on the main thread below
            meet.abort()
            failures.append(error)

    threads = [
        threading.Thread(
            target=worker, args=(number,), name=f"history thread {number}", daemon=True
        )
        for number in range(len(scripts))
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
    finally:
        sys.setswitchinterval(interval)
    hung = [thread.name for thread in threads if thread.is_alive()]
    if hung:
        faulthandler.dump_traceback(all_threads=True)
        raise AssertionError(f"threads did not finish within {timeout_s} s: {hung} (stacks above)")
    if failures:
        raise failures[0]


def yield_thread(label: str) -> None:
    """Let another thread run now (a schedule point for real threads)."""
    del label
    time.sleep(0)


# --- drawing concurrent runs -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConcurrentRun:
    """Everything a concurrent check draws before any thread starts (draws stay on one thread)."""

    options: Options
    """The controller's options."""
    built_at_ns: int
    """When the controller is built."""
    now_ns: int
    """The frozen time of every call: at or after ``built_at_ns``."""
    prelude: Script
    """Calls made alone, on the main thread, before the threads start (warming up)."""
    scripts: tuple[Script, ...]
    """Each thread's calls."""
    task_count: int
    """How many tasks the prelude and the scripts enqueue in all."""
    times: tuple[tuple[int, ...], ...] = ()
    """Each thread's clock readings (`SkewedClock`); none: every call reads ``now_ns``."""

    def clock(self) -> FrozenClock:
        """Return the run's clock, reading ``built_at_ns`` until its ``now_ns`` is set."""
        if not self.times:
            return FrozenClock(self.built_at_ns)
        return SkewedClock(self.built_at_ns, dict(enumerate(self.times)))


CLOCK_OFFSETS_NS: Final = (0, -1_500_000, 1_000, 700_000, 2_500_000)
"""Where a thread's clock starts, from the run's ``now_ns``: behind, level, a little or far
ahead (past some idle-reset intervals, FC-12), so that readings apply out of order (DIV-6)."""

CLOCK_STEPS_NS: Final = (0, 1_000, 700_000, 2_500_000)
"""How far a thread's clock moves between two of its readings."""

READINGS_PER_THREAD: Final = 8
"""Readings drawn per thread; a thread that reads more reads the last again."""


@st.composite
def thread_times(draw: st.DrawFn, now_ns: int) -> tuple[int, ...]:
    """Return one thread's clock readings: non-decreasing, from an offset of ``now_ns``."""
    first = max(now_ns + draw(st.sampled_from(CLOCK_OFFSETS_NS), label="clock offset"), 0)
    steps = [draw(st.sampled_from(CLOCK_STEPS_NS)) for _ in range(READINGS_PER_THREAD - 1)]
    return tuple(itertools.accumulate(steps, initial=first))


@st.composite
def concurrent_runs(
    draw: st.DrawFn, *, threads: int, actions: int, skewed: bool = False
) -> ConcurrentRun:
    """
    Return a run of ``threads`` threads, each of up to ``actions`` actions (spec DIV-6).

    An action is a whole task lifecycle on the thread's own task (enqueue, maybe force-bypass,
    maybe flush, I/O, maybe an outcome, done: in the engine's order), a foreground write, a
    scope opened and closed, or a snapshot. Every task is done and every scope closed when the
    threads finish, so the debt must then be 0 (INV-1) and the scopes 0 (INV-7). With
    ``skewed``, each thread's clock has its own drawn readings (`thread_times`); else every
    call reads the same time.
    """
    unit = 1_000
    options = Options(
        enable_backpressure=draw(st.sampled_from((True, True, False))),
        enable_flush_pacing=draw(st.sampled_from((True, True, False))),
        bp_soft_debt_units=draw(st.integers(1, 2)),
        bp_hard_debt_units=draw(st.integers(2, 3)),
        bp_stop_debt_units=draw(st.integers(3, 5)),
        bp_cold_start_fail_safe_units=draw(st.integers(1, 3)),
        bp_pacing_soft_debt_units=draw(st.integers(1, 2)),
        bp_flush_unit_bytes=unit,
        bp_warmup_min_samples=draw(st.integers(1, 2)),
        bp_floor_bps=draw(st.sampled_from((100_000, 1_000_000))),
        bp_idle_reset_ms=draw(st.integers(1, 3)),
        bp_max_delay_us=draw(st.sampled_from((1_000, 50_000))),
    )
    built_at_ns = draw(st.integers(0, 10**9))
    now_ns = built_at_ns + draw(st.sampled_from((0, 0, 5 * 10**6)))
    counter = itertools.count()
    prelude: Script = []
    for _ in range(draw(st.integers(0, 2))):  # warm-up: samples leave cold start
        number = next(counter)
        prelude += [
            ("enqueue", (number, unit)),
            ("io_built", (number, unit, draw(st.sampled_from((100_000, 1_000_000))))),
            ("mark_done", (number,)),
        ]
    scripts = tuple(draw(thread_scripts(counter, unit, actions)) for _ in range(threads))
    times = tuple(draw(thread_times(now_ns)) for _ in scripts) if skewed else ()
    return ConcurrentRun(
        options=options,
        built_at_ns=built_at_ns,
        now_ns=now_ns,
        prelude=prelude,
        scripts=scripts,
        task_count=next(counter),
        times=times,
    )


@st.composite
def thread_scripts(draw: st.DrawFn, counter: Iterator[int], unit: int, actions: int) -> Script:
    """Return one thread's calls: up to ``actions`` lifecycles, writes, scopes, snapshots."""
    script: Script = []
    for _ in range(draw(st.integers(1, actions))):
        kind = draw(st.sampled_from(("task", "task", "task", "write", "scope", "snapshot")))
        if kind == "write":
            form = draw(st.sampled_from(("fg_write", "fg_write", "fg_write_nowait")))
            script.append((form, (draw(st.sampled_from((0, 100, unit, 3 * unit))),)))
        elif kind == "scope":
            scope = draw(st.sampled_from(("teardown", "starving")))
            script += [(f"enter_{scope}", ()), (f"leave_{scope}", ())]
        elif kind == "snapshot":
            script.append(("snapshot", ()))
        else:
            script += draw(lifecycles(next(counter), unit))
    return script


@st.composite
def lifecycles(draw: st.DrawFn, number: int, unit: int) -> Script:
    """Return the calls of one task's life, in an order the engine's protocol allows."""
    est = draw(st.sampled_from((1, unit // 2, unit, 2 * unit)))
    calls: Script = [("enqueue", (number, est))]
    flushes = st.sampled_from(("before_flush", "before_flush", "before_flush_nowait"))
    if draw(st.booleans()):
        calls.append(
            ("force_bypass", (number,)) if draw(st.booleans()) else (draw(flushes), (number,))
        )
    if draw(st.booleans()):
        calls.append((draw(flushes), (number,)))
    percent = draw(st.sampled_from((0, 50, 100, 100, 150)))
    elapsed_ns = draw(st.sampled_from((0, 200_000, 1_000_000)))
    calls.append(("io_built", (number, est * percent // 100, elapsed_ns)))
    if draw(st.booleans()):
        calls.append(("mark_outcome", (number, draw(st.sampled_from(Outcome)))))
    calls.append(("mark_done", (number,)))
    return calls


def implementation_options(options: Options) -> FlowOptions:
    """Return the implementation's options with the values of the model's."""
    values = {field.name: getattr(options, field.name) for field in dataclasses.fields(options)}
    return FlowOptions(**values)


def check_run(run: ConcurrentRun, history: Sequence[Call], final: ControllerState) -> None:
    """
    Raise AssertionError unless ``history`` is linearizable and the run ended settled.

    Spec DIV-6 (linearizable against the model, each call at the time it was entitled to
    apply), INV-1 (the debt is 0 once every task is done) and INV-7 (every scope closed).
    """
    config = normalise(run.options)
    start = model.new_controller(config, run.built_at_ns)
    spec = ControllerSpec(config, start, run.task_count, run.now_ns, latest_ns=run.built_at_ns)
    ordered = sorted(history, key=lambda call: call.invoked)
    verdict = check(ordered, spec)
    assert verdict.linearizable, verdict.explain(ordered)
    assert final.debt_bytes == 0, f"debt {final.debt_bytes} left after every task was done"
    assert final.teardown_bypass_scopes == final.arena_starving_scopes == 0
