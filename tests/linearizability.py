"""A Wing-Gong-Lowe linearizability checker, and the controller model as its specification.

Spec DIV-6: every concurrent history of the implementation is linearizable against the model.

A *history* is what the calling threads observed: for each call, the thread that made it, the
times it was invoked and returned (on one clock shared by every thread, so they compare), the
operation, its arguments and its result. A history is *linearizable* against a sequential
specification when some order of its calls, consistent with real time (a call that returned
before another was invoked comes first), makes the specification answer every call with the
result that was observed.

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
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
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
            for index, phase in self.order
        )
        if not self.linearizable:
            taken = {index for index, _ in self.order}
            lines.append("calls left that no order explains:")
            lines.extend(
                f"  [{call.invoked}, {call.returned}] thread {call.thread}: "
                f"{call.name}{call.args} -> {call.result!r}"
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


class HistoryError(LookupError):
    """A history names an unknown operation or task: a bug of the test, not of the controller."""


def error_result(error: BaseException) -> tuple[str, str]:
    """Return how a call that raised ``error`` is recorded: ("error", the exception's name)."""
    return ("error", type(error).__name__)


ForegroundResult: TypeAlias = tuple[int, int, tuple[Emission, ...]]
"""What a foreground write shows: (returned delay µs, nanoseconds slept, emissions)."""

FlushResult: TypeAlias = tuple[int, int, tuple[Emission, ...]]
"""What a flush shows: (returned value, nanoseconds slept, emissions); the blocking form returns
the µs it slept, the non-blocking form the ns to wait (and sleeps none)."""


class ControllerSpec:
    """
    The reference model as the sequential specification of one controller (spec DIV-6).

    Time is the constant ``now_ns``: the histories checked against this specification are
    taken on a clock that no thread advances and whose sleep returns at once, so every call
    reads the same time and a sleep is observed, not waited. Calls and their results:

    - ``enqueue(task, est_bytes)`` -> None; ``io_built(task, nbytes, elapsed_ns)``,
      ``mark_outcome(task, outcome)``, ``force_bypass(task)``, ``mark_done(task)``,
      ``enter_teardown()``, ``leave_teardown()``, ``enter_starving()``,
      ``leave_starving()`` -> None;
    - ``fg_write(write_bytes)`` -> `ForegroundResult` (blocking form); ``fg_write_nowait``
      likewise, its returned value the delay in ns and its sleep 0;
    - ``before_flush_nowait(task)`` -> `FlushResult`, decided and committed in one step;
    - ``before_flush(task)`` -> `FlushResult` (blocking form), in two phases: the decision,
      then the commit;
    - ``snapshot()`` -> the `ControllerState`;

    and ``("error", name)`` for any call that raised. ``task`` is the task's number in the run.
    """

    def __init__(
        self, config: Config, start: ControllerState, task_count: int, now_ns: int
    ) -> None:
        """Specify a controller in state ``start`` running ``task_count`` tasks at ``now_ns``."""
        self.config = config
        self.start = start
        self.task_count = task_count
        self.now_ns = now_ns

    def initial(self) -> ModelState:
        """Return the controller in its start state, before any task."""
        return ModelState(controller=self.start, tasks=(None,) * self.task_count)

    def phases(self, call: Call) -> int:
        """Return 2 for ``before_flush`` (decide, then commit) and 1 for every other call."""
        return 2 if call.name == "before_flush" else 1

    def apply(
        self, state: ModelState, call: Call, phase: int, carry: Hashable
    ) -> tuple[ModelState, Hashable] | None:
        """Return the state after one phase of ``call``, or None if its result rules it out."""
        if call.name == "before_flush":
            return self._before_flush(state, call, phase, carry)
        try:
            after, result = self._perform(state, call)
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            after, result = state, error_result(error)
        if result != call.result:
            return None
        return after, None

    def answer(
        self, state: ModelState, name: str, args: tuple[Hashable, ...]
    ) -> tuple[ModelState, Hashable]:
        """Return the state after the call ``name(*args)`` made alone, and its result."""
        call = Call(thread=0, invoked=0, returned=0, name=name, args=args, result=None)
        if name == "before_flush":
            task = state.tasks[_int(args[0])]
            if task is None:
                raise HistoryError(f"history names task {args[0]} before it was enqueued")
            try:
                plan = model.plan_flush(self.config, state.controller, task, self.now_ns)
            except (TypeError, ValueError, RuntimeError, OverflowError) as error:
                return state, error_result(error)
            controller = model.commit_flush(state.controller, plan, self.now_ns)
            return dataclasses.replace(state, controller=controller), flush_result(plan)
        try:
            return self._perform(state, call)
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            return state, error_result(error)

    def _perform(self, state: ModelState, call: Call) -> tuple[ModelState, Hashable]:
        """Return the state after a one-phase call and its result; raise as the model does."""
        config, controller, now = self.config, state.controller, self.now_ns
        name, args = call.name, call.args
        if name == "snapshot":
            return state, controller
        if name in {"fg_write", "fg_write_nowait"}:
            (write_bytes,) = args
            decision = model.before_foreground_write(config, controller, _int(write_bytes))
            delay_ns = decision.delay_us * 1_000
            if name == "fg_write_nowait":
                return state, (delay_ns, 0, decision.emissions)
            return state, (decision.delay_us, delay_ns, decision.emissions)
        if name in SCOPES:
            return dataclasses.replace(state, controller=SCOPES[name](controller)), None
        number = _int(args[0])
        if name == "enqueue":
            step = model.enqueue(config, controller, _int(args[1]), now)
            return _with_task(state, number, step.state, step.task), None
        return self._task_call(state, call, number)

    def _task_call(self, state: ModelState, call: Call, number: int) -> tuple[ModelState, Hashable]:
        """Return the state after a call on the enqueued task ``number`` and its result."""
        config, controller, args = self.config, state.controller, call.args
        task = state.tasks[number]
        if task is None:
            raise HistoryError(f"history names task {number} before it was enqueued")
        if call.name == "before_flush_nowait":
            # spec FC-10, DIV-6: decided and committed at once, as if the sleep ended on time;
            # the caller is told how long to wait (`NowaitFlushResult`).
            plan = model.plan_flush(config, controller, task, self.now_ns)
            committed = model.commit_flush(controller, plan, self.now_ns + plan.sleep_ns)
            return dataclasses.replace(state, controller=committed), nowait_flush_result(plan)
        if call.name == "io_built":
            step = model.io_built(config, controller, task, _int(args[1]), _int(args[2]))
        elif call.name == "mark_done":
            step = model.mark_done(config, controller, task, self.now_ns)
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

    def _before_flush(
        self, state: ModelState, call: Call, phase: int, carry: Hashable
    ) -> tuple[ModelState, Hashable] | None:
        """Return the state after the decision (phase 0) or the commit (phase 1) of a flush."""
        task = state.tasks[_int(call.args[0])]
        if task is None:
            raise HistoryError(f"history names task {call.args[0]} before it was enqueued")
        if phase == 0:
            try:
                plan = model.plan_flush(self.config, state.controller, task, self.now_ns)
            except (TypeError, ValueError, RuntimeError, OverflowError) as error:
                # A rejected flush decides nothing; its commit is empty.
                result: Hashable = error_result(error)
                plan = FlushPlan(decision=FlushDecision.PACING_DISABLED)
            else:
                result = flush_result(plan)
            return (state, plan) if result == call.result else None
        if not isinstance(carry, FlushPlan):
            raise TypeError(f"a commit needs the flush's plan, got {carry!r}")
        controller = model.commit_flush(state.controller, carry, self.now_ns)
        return dataclasses.replace(state, controller=controller), None


def flush_result(plan: FlushPlan) -> FlushResult:
    """Return what a blocking ``before_flush`` with ``plan`` shows its caller (spec FC-10)."""
    return (plan.sleep_ns // 1_000, plan.sleep_ns, plan.emissions)


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
    return ModelState(controller=controller, tasks=tasks)


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
    call reads the same instant and results compare with `ControllerSpec`'s. Each thread's
    sleeps are kept apart (`slept_ns`); ``point`` is called on every read and sleep, so a
    deterministic scheduler can switch threads there.
    """

    def __init__(self, now_ns: int, point: Callable[[str], None] | None = None) -> None:
        """Stop the clock at ``now_ns``; call ``point`` at every read and sleep."""
        self.now_ns = now_ns
        self.point = point
        self._local = threading.local()

    def monotonic_ns(self) -> int:
        """Return the frozen time."""
        if self.point is not None:
            self.point("read the clock")
        return self.now_ns

    def sleep_ns(self, duration_ns: int) -> None:
        """Record a sleep of ``duration_ns`` for the calling thread; return at once."""
        if self.point is not None:
            self.point(f"sleep {duration_ns} ns")
        self.slept_ns().append(duration_ns)

    def slept_ns(self) -> list[int]:
        """Return the calling thread's sleeps, in order."""
        sleeps: list[int] | None = getattr(self._local, "sleeps", None)
        if sleeps is None:
            sleeps = self._local.sleeps = []
        return sleeps


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
        """Make one call and record it with what its caller saw."""
        sleeps, emissions = len(self.clock.slept_ns()), len(self.observer.calls())
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
        record = Call(thread, invoked, returned, name, args, result)
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


@st.composite
def concurrent_runs(draw: st.DrawFn, *, threads: int, actions: int) -> ConcurrentRun:
    """
    Return a run of ``threads`` threads, each of up to ``actions`` actions (spec DIV-6).

    An action is a whole task lifecycle on the thread's own task (enqueue, maybe force-bypass,
    maybe flush, I/O, maybe an outcome, done: in the engine's order), a foreground write, a
    scope opened and closed, or a snapshot. Every task is done and every scope closed when the
    threads finish, so the debt must then be 0 (INV-1) and the scopes 0 (INV-7).
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
    return ConcurrentRun(
        options=options,
        built_at_ns=built_at_ns,
        now_ns=now_ns,
        prelude=prelude,
        scripts=scripts,
        task_count=next(counter),
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

    Spec DIV-6 (linearizable against the model), INV-1 (the debt is 0 once every task is done)
    and INV-7 (every scope closed).
    """
    config = normalise(run.options)
    start = model.new_controller(config, run.built_at_ns)
    spec = ControllerSpec(config, start, run.task_count, run.now_ns)
    ordered = sorted(history, key=lambda call: call.invoked)
    verdict = check(ordered, spec)
    assert verdict.linearizable, verdict.explain(ordered)
    assert final.debt_bytes == 0, f"debt {final.debt_bytes} left after every task was done"
    assert final.teardown_bypass_scopes == final.arena_starving_scopes == 0
