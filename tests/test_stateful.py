"""The implementation and the model side by side, one operation at a time (spec ST-1, FC-1..12).

A Hypothesis state machine drives a `FlowController` on a manual clock with a recording observer,
and the reference model with the same configuration and times, through every operation of the
API: task lifecycles in every order the protocol allows (and the misuses it forbids), outcomes,
force-bypass, scopes (counted and as context managers), foreground writes and flushes in their
blocking, non-blocking and async forms, and clock advances, idle gaps beyond the reset interval
and nanoseconds either side of the idle and pacing boundaries included. After every step the
two must agree on everything a caller can see: the returned value or the exception's type, the
controller's snapshot, every task's snapshot, the clock (hence every sleep) and the observer's
calls. A misuse must raise the same error on both sides and change nothing at all (spec ERR-1
to ERR-3).

Four things make the machine reach what a plain random walk would not:

- **Probes in every form.** After every step a write of one flush unit is asked in the blocking
  form (whose lock-free fast path no other form takes), the non-blocking form and the async
  form, each compared with the model's decision (FC-6 to FC-8). The probe's sleeps are recorded
  apart and do not move the clock, so probing changes nothing the run goes on from.
- **Every rejection in every regime.** Whenever the state is in a combination of regimes
  (cold or warm, an idle spell past the reset interval, a pacing deadline set, open scopes,
  debt above the pacing threshold, the debt's zone among the thresholds, idle with debt) in
  which the run has not yet tried some rejected operation that applies, it is tried: each
  misuse of a finished, reported or foreign task, each bad argument of every operation and
  form, each overflow (ERR-1 to ERR-3). Each must raise the model's error and change nothing:
  snapshot, tasks, clock, sleeps, observer (and the fast path's hidden state, which the probes
  read next). A scope count at u64::MAX, which no run reaches by operations, is tried on a
  twin of the controller built in the current state with that count at the limit. Each
  (rejected kind, regime) pair is labelled with `hypothesis.event`, and the test fails unless
  every pair of `REQUIRED_REJECTIONS` was tried. Dedicated rules steer to the rare regimes: a
  task estimated at 0 bytes reporting its I/O after the others settled (idle with debt), a
  paced pair of flushes after a warm-up, an enqueue to a threshold after an idle reset or a
  warm-up.
- **Far starts.** About a third of the runs start from a drawn state (`strategies.far_states`),
  and may start again from another one twice: counters next to ``u64::MAX``, scopes and the
  sample count at their limits, deadlines set, idle with debt, built with
  `flowpace.testing.controller_from_state` and checked step by step as any run. The state's
  debt belongs to no task (``orphan_debt``): such a run's debt is that much above its tasks'
  charges (INV-1), and draining its tasks brings it back there, not to 0.
- **Nanoseconds.** Start times, clock advances and I/O durations carry sub-microsecond
  remainders, so that truncating durations to whole microseconds (AR-1: ``micros``, the seed's
  ``as_micros()``) in an I/O or end-to-end sample, a pacing deadline or an idle comparison is
  checked, and advances land a nanosecond either side of the idle reset and the deadline.

Draws and preconditions read only the model, never the implementation, so the implementation's
behaviour cannot change what is drawn. Tasks are named by their position among the model's
tasks (``pick`` modulo their number), so a failing run prints as a program that replays.

Configurations are small (thresholds of a few flush units of 1 000 bytes, warm-up of 1 to 3
samples, idle resets of a few milliseconds) so that every regime is reached in a few steps.
Each regime is labelled with `hypothesis.event` (once a run), and the test fails the run when
one was never reached; `flowpace verify` reports, for each regime and (rejection, regime) pair,
the runs that reached it. `hypothesis.target` pushes the debt and the delays of runs from a new
controller to their extremes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import ClassVar, Final, cast

import pytest
from hypothesis import event, given, note, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from flowpace import FlowController, FlowOptions, FlowTask
from flowpace.testing import ManualClock, RecordingObserver, controller_from_state
from flowpace.verify import campaign_settings, record_stats
from flowpace_reference import transitions as model
from flowpace_reference.config import normalise
from flowpace_reference.contracts import state_in_domain
from flowpace_reference.measures import cold_start_ready, debt_milli_units, outstanding_charge
from flowpace_reference.types import (
    Config,
    ControllerState,
    Emission,
    FlushDecision,
    FlushPlan,
    ForegroundRegime,
    Options,
    Outcome,
    TaskState,
    TaskStateError,
)
from flowpace_reference.u64 import NANOS_PER_MICRO, NANOS_PER_MILLI, U64_MAX
from strategies import far_states, sub_micros

MODEL_ERRORS: Final = (TypeError, ValueError, RuntimeError, OverflowError)
"""What the model raises for an invalid operation (spec ERR-1 to ERR-3)."""

REQUIRED_REGIMES: Final = frozenset(
    {
        f"foreground {ForegroundRegime.COLD_BELOW_FAIL_SAFE.name}",
        f"foreground {ForegroundRegime.COLD_THROTTLED.name}",
        f"foreground {ForegroundRegime.STEADY_BELOW_SOFT.name}",
        f"foreground {ForegroundRegime.SOFT_ZONE.name}",
        f"foreground {ForegroundRegime.HARD_ZONE.name}",
        f"foreground {ForegroundRegime.STOP.name}",
        f"flush {FlushDecision.BYPASS_TEARDOWN.name}",
        f"flush {FlushDecision.BYPASS_ARENA_STARVATION.name}",
        f"flush {FlushDecision.BYPASS_HIGH_DEBT.name}",
        "flush pacing sleep",
        "idle reset",
    }
)
"""The regimes every campaign must reach (spec FC-6 to FC-12)."""

ZONES: Final[dict[str, Callable[[Config], int]]] = {
    "fail-safe": lambda config: config.bp_cold_start_fail_safe_units * 1_000 - 1,
    "soft": lambda config: config.bp_soft_debt_units * 1_000,
    "hard": lambda config: config.bp_hard_debt_units * 1_000,
    "stop": lambda config: config.bp_stop_debt_units * 1_000,
    "pacing": lambda config: config.bp_pacing_soft_debt_units * 1_000,
}
"""Debt targets of `ControllerMatchesModel.enqueue_to`, in milli-units: the thresholds of FC-6
and FC-9 (the fail-safe's is one below it, where cold start is not yet throttled)."""

MIN_EXAMPLES: Final = 200
"""The fewest runs of the machine that reach every required regime reliably (see the test)."""

UNIT_BYTES: Final = (1_000, 1_000, 4_096, 1)
"""Flush units drawn: mostly 1 000 bytes (a byte is a milli-unit), sometimes awkward ones."""

FORMS: Final = ("blocking", "nowait", "async")
"""The three forms of the foreground write and of the flush (blocking, non-blocking, async)."""

FLUSH_OPERATIONS: Final = ("before_flush", "before_flush_nowait", "before_flush_async")
"""The flush operation of each form, by the name `impl_task_operation` knows it by."""

TASK_OPERATIONS: Final = (
    "io_built",
    "mark_outcome",
    "force_bypass",
    "mark_done",
    *FLUSH_OPERATIONS,
)
"""The task operations a misuse attempt may make."""

SCOPE_EXITS: Final = ("leave_teardown", "leave_starving")
"""The scope operations that close a scope (a no-op when none is open)."""

FOREIGN_OPERATIONS: Final = ("io_built", "mark_done", *FLUSH_OPERATIONS)
"""The controller's operations on a task; a task's own methods have no foreign controller."""

BAD_ARGUMENT_OPERATIONS: Final = (
    "enqueue",
    "io_built",
    "io_built elapsed",
    "foreground_write",
    "mark_outcome",
    "before_flush",
)
"""The operations a bad-argument attempt may make (``io_built elapsed``: a bad duration)."""

# --- rejected operations and the regimes they are tried in (spec ERR-1 to ERR-3) ---------------

REJECTION_KINDS: Final = (
    *(f"finished task: {operation}" for operation in TASK_OPERATIONS),
    "second io_built",
    *(f"foreign task: {operation}" for operation in FOREIGN_OPERATIONS),
    "bad est_bytes",
    "bad nbytes",
    "bad elapsed_ns",
    "bad outcome",
    *(f"bad write_bytes [{form}]" for form in FORMS),
    *(f"bad task [{form}]" for form in FORMS),
    "overflow enqueue",
    "overflow io_built",
    "overflow enter_teardown",
    "overflow enter_starving",
)
"""Every kind of rejected operation: each misuse (ERR-1, DIV-2), bad argument (ERR-3) and
overflow (ERR-2, DIV-3) of every operation, in every form."""

DEBT_ZONES: Final = (
    "no debt",
    "debt at most soft",
    "debt in the soft zone",
    "debt in the hard zone",
    "debt at or above stop",
)
"""Where the debt lies among the thresholds of FC-6 and FC-9 (see `debt_zone`)."""

REJECTION_REGIMES: Final = (
    "cold",
    "warm",
    "idle spell past the reset interval",
    "pacing deadline set",
    "scopes open",
    "idle with debt",
    "debt above pacing",
    *DEBT_ZONES,
)
"""The regimes in which the state differs in a way an operation may read before it rejects."""

IMPOSSIBLE_REJECTIONS: Final = frozenset(
    {
        # With no debt, no estimate overflows it (U64_MAX + 1 is a bad argument, ERR-3), and no
        # report does: the excess would have to exceed a u64 itself.
        ("overflow enqueue", "no debt"),
        ("overflow io_built", "no debt"),
    }
)
"""The (kind, regime) pairs no state has."""

REQUIRED_REJECTIONS: Final = frozenset(
    f"rejected {kind} | {regime}"
    for kind, regime in itertools.product(REJECTION_KINDS, REJECTION_REGIMES)
    if (kind, regime) not in IMPOSSIBLE_REJECTIONS
)
"""Every (rejected kind, regime) pair every campaign must try (spec ERR-1 to ERR-3)."""

U64_BAD_VALUES: Final = ((True, -1), ("7", U64_MAX + 1), (None, -1), (1.5, U64_MAX + 1))
"""Bad u64 arguments, a TypeError and a ValueError each sweep, in turn (spec ERR-3)."""

ELAPSED_BAD_VALUES: Final = (
    (True, -1),
    (1.5, model.ELAPSED_NS_LIMIT),
    ("1000", -1),
    (None, model.ELAPSED_NS_LIMIT),
)
"""Bad durations, in turn: ``ELAPSED_NS_LIMIT`` is the least too long (spec ERR-3)."""

NOT_OUTCOMES: Final = ("Flushed", 1, None, True)
"""Values that are not an `Outcome`, one a sweep, in turn (spec ERR-3)."""

NOT_TASKS: Final = (None, "task", 7, TaskState(enqueue_at=0, est_bytes=1))
"""Values that are not a `FlowTask`, one a sweep, in turn; the last is the model's own type."""

START_SUB_MICROS: Final = st.sampled_from((1, 500, 999, 0))
"""The part of a start time below a microsecond (see `starts`)."""

FAR_SHARE: Final = 3
"""One run in this many starts from a far state (`strategies.far_states`)."""

SCOPE_OVERFLOWS: Final = frozenset({"overflow enter_teardown", "overflow enter_starving"})
"""The rejections at a scope count of u64::MAX, tried on a twin when the run is below it."""

MAX_RESTARTS: Final = 2
"""How many times a run that started far may start again from another far state."""

GOOD: Final = object()
"""The ``bad`` of `ControllerMatchesModel.misuse` when every argument is good (None is bad)."""


def debt_zone(config: Config, debt: int) -> str:
    """Return the zone of `DEBT_ZONES` the debt lies in (spec AR-2, AR-3, FC-6, FC-9)."""
    if debt == 0:
        return "no debt"
    debt_mu = debt_milli_units(config, debt)
    if debt_mu <= config.bp_soft_debt_units * 1_000:
        return "debt at most soft"
    if debt_mu < config.bp_hard_debt_units * 1_000:
        return "debt in the soft zone"
    if debt_mu < config.bp_stop_debt_units * 1_000:
        return "debt in the hard zone"
    return "debt at or above stop"


def rejection_regimes(config: Config, state: ControllerState, now_ns: int) -> frozenset[str]:
    """Return the regimes of `REJECTION_REGIMES` the model's ``state`` is in at ``now_ns``."""
    regimes = {"warm" if cold_start_ready(config, state) else "cold"}
    if model.idle_expired(config, state, now_ns):
        regimes.add("idle spell past the reset interval")
    if state.next_flush_at is not None:
        regimes.add("pacing deadline set")
    if state.teardown_bypass_scopes or state.arena_starving_scopes:
        regimes.add("scopes open")
    if state.idle_since is not None and state.debt_bytes > 0:
        regimes.add("idle with debt")  # spec FC-2, FC-12: only FC-1 clears idle_since
    if debt_milli_units(config, state.debt_bytes) > config.bp_pacing_soft_debt_units * 1_000:
        regimes.add("debt above pacing")  # spec FC-9 rule 6: flushes bypass pacing
    regimes.add(debt_zone(config, state.debt_bytes))
    return frozenset(regimes)


# --- configurations and starts ---------------------------------------------------------------


@st.composite
def campaign_options(draw: st.DrawFn) -> Options:
    """
    Return small options: every threshold within a few flush units of the next (spec CFG-1).

    Zeros appear where normalisation replaces them (CFG-2), so its rules are exercised too.
    """
    soft = draw(st.integers(0, 3))
    hard = draw(st.integers(0, 6))
    return Options(
        enable_backpressure=draw(st.sampled_from((True, True, True, False))),
        enable_flush_pacing=draw(st.sampled_from((True, True, True, False))),
        bp_soft_debt_units=soft,
        bp_hard_debt_units=hard,
        bp_stop_debt_units=draw(st.integers(0, 9)),
        bp_cold_start_fail_safe_units=draw(st.integers(0, 4)),
        bp_pacing_soft_debt_units=draw(st.integers(0, 3)),
        bp_flush_unit_bytes=draw(st.sampled_from(UNIT_BYTES)),
        bp_min_ratio_pct=draw(st.sampled_from((0, 1, 5, 50, 100, 120))),
        bp_floor_bps=draw(st.sampled_from((0, 1_000, 100_000, 1_000_000, 50_000_000))),
        bp_warmup_min_samples=draw(st.sampled_from((1, 1, 2, 3))),
        bp_publish_guard_min_ratio_pct=draw(st.sampled_from((0, 10, 50, 100))),
        bp_idle_reset_ms=draw(st.integers(1, 5)),
        bp_max_delay_us=draw(st.sampled_from((1, 1_000, 10_000, 50_000, 1_000_000))),
    )


def implementation_options(options: Options) -> FlowOptions:
    """Return the implementation's options with the values of the model's."""
    return FlowOptions(
        **{field.name: getattr(options, field.name) for field in dataclasses.fields(options)}
    )


@dataclass(frozen=True, slots=True)
class Start:
    """Where a run starts: its time, and the far state it starts in (None: a new controller)."""

    now_ns: int
    far: ControllerState | None = None


@st.composite
def starts(draw: st.DrawFn, far_share: int = FAR_SHARE) -> Start:
    """
    Return a start: a time of a few seconds, mostly with a sub-microsecond part, and in about
    one start out of ``far_share`` a far state (spec ST-1).

    The part below a microsecond carries over to every later time but for the advances that
    add one of their own, so most commits, deadlines and settles of the run happen at times
    that whole microseconds do not hold (AR-1, FC-5, FC-10).
    """
    now_ns = draw(st.integers(0, 10_000)) * NANOS_PER_MILLI + draw(START_SUB_MICROS)
    if far_share > 1 and draw(st.integers(0, far_share - 1)) != far_share - 1:
        return Start(now_ns)
    return Start(now_ns, draw(far_states(now_ns=now_ns)))


def fitted(config: Config, far: ControllerState) -> ControllerState:
    """Return ``far`` with its adaptive floor raised to the configured floor (spec INV-9)."""
    floor = max(far.adaptive_floor_bps, config.bp_floor_bps)
    return dataclasses.replace(far, adaptive_floor_bps=floor)


# --- what one step is expected to do ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expected:
    """What the model says one operation does: its result and every effect a caller sees."""

    result: object
    """The value the implementation's method returns."""
    state: ControllerState
    """The controller after the operation."""
    now_ns: int
    """The clock after the operation: the time before plus every sleep."""
    sleeps: tuple[int, ...] = ()
    """The sleeps taken on the clock, nanoseconds, in order."""
    emissions: tuple[Emission, ...] = ()
    """The observer calls made, in order."""
    task: tuple[int, TaskState] | None = None
    """The task the operation changed or created, by number, and its state after."""


class StepMismatchError(AssertionError):
    """The implementation and the model disagreed on one step."""


def run_without_loop(coroutine: Coroutine[object, object, int]) -> int:
    """
    Return the result of an async operation that awaits nothing but `ProbeClock`'s sleep.

    That sleep yields to the event loop once, as ``asyncio.sleep(0)`` does, by a bare
    ``yield``: the coroutine runs to its end by being resumed until it returns, as an event
    loop would resume it, without one (``asyncio.run`` costs more than the rest of a step;
    `tests/test_controller_variants.py` runs the async forms on a real loop).
    """
    while True:
        try:
            yielded = coroutine.send(None)
        except StopIteration as stop:
            return cast("int", stop.value)
        if yielded is not None:
            coroutine.close()
            raise AssertionError(f"the coroutine awaited {yielded!r}, which needs a loop")


class ProbeClock(ManualClock):
    """
    A manual clock whose sleeps, while `probing`, are recorded apart and do not move time.

    A foreground write reads the clock before it sleeps, never after (FC-8), so a probe write
    sleeping on this clock is the write itself, and the run goes on at the time it was at.
    """

    __slots__ = ("probe_sleeps", "probing")

    def __init__(self, start_ns: int) -> None:
        """Start at ``start_ns``, not probing."""
        super().__init__(start_ns)
        self.probing = False
        self.probe_sleeps: list[int] = []

    def sleep_ns(self, duration_ns: int) -> None:
        """Sleep as `ManualClock` does; while probing, record the sleep apart instead."""
        if self.probing:
            self.probe_sleeps.append(duration_ns)
            return
        super().sleep_ns(duration_ns)

    @contextlib.contextmanager
    def probe(self) -> Iterator[list[int]]:
        """Hold the clock still for the body of a ``with``; yield the sleeps it records."""
        self.probing, self.probe_sleeps = True, []
        try:
            yield self.probe_sleeps
        finally:
            self.probing = False


# --- the machine -----------------------------------------------------------------------------


class ControllerMatchesModel(RuleBasedStateMachine):
    """Drive a `FlowController` and the reference model in lockstep; compare after each step."""

    covered: ClassVar[Counter[str]] = Counter()
    """For each regime and (rejection, regime) pair, the runs so far in this process that
    reached it."""
    examples: ClassVar[int] = 0
    """Runs of the machine (Hypothesis examples) so far in this process."""
    steps: ClassVar[int] = 0
    """Steps taken so far in this process."""
    sweeps: ClassVar[int] = 0
    """Rejection sweeps (`every_rejection_changes_nothing`) so far in this process."""
    far_runs: ClassVar[int] = 0
    """Runs that started from a far state so far in this process."""

    def __init__(self) -> None:
        """Start a run; the controller is built by the `build` initialisation rule."""
        super().__init__()
        type(self).examples += 1
        self.tasks: list[TaskState] = []
        self.handles: list[FlowTask] = []
        self.most_debt_mu = 0
        self.most_delay_share = 0.0
        self.orphan_debt = 0
        self.far = False
        self.restarts = 0
        self.swept: set[tuple[str, frozenset[str]]] = set()
        self.labelled: set[str] = set()
        self.sweep_number = 0

    @initialize(
        options=campaign_options(),
        start=starts(),
        flushes=st.sampled_from((0, 1, 3, 3)),
        io_us=st.sampled_from((1_000, 1_000, 50, 20_000)),
        backlog=st.sampled_from((0, 0, 1, 4)),
    )
    def build(self, options: Options, start: Start, flushes: int, io_us: int, backlog: int) -> None:
        """Build the controller and the model with ``options`` at ``start``; prime them."""
        self.config: Config = normalise(options)
        self.flow_options = implementation_options(options)
        note(f"config: {self.config}")
        # A task of another controller, for the implementation-only misuse of ERR-1.
        self.foreign = FlowController(self.flow_options).on_enqueue_est(1)
        self.start_at(start)
        self.prime(flushes, io_us, backlog)

    def start_at(self, start: Start) -> None:
        """
        Build a controller and the model at ``start``, on a clock and observer of their own.

        A far start builds both in the drawn state (spec ST-1): the controller by
        `controller_from_state`, the model by taking the state as it is. Its debt belongs to
        no task: it is the run's ``orphan_debt``.
        """
        self.now_ns = start.now_ns
        self.clock = ProbeClock(self.now_ns)
        self.observer = RecordingObserver()
        self.tasks, self.handles = [], []
        self.swept.clear()
        if start.far is None:
            self.state = model.new_controller(self.config, self.now_ns)
            self.ctl = FlowController(
                self.flow_options,
                clock=self.clock,
                observer=self.observer,
                async_sleep=self.clock.async_sleep_ns,
            )
            return
        type(self).far_runs += 1
        self.far = True
        self.state = fitted(self.config, start.far)
        assert state_in_domain(self.config, self.state)  # spec ST-1: a valid start
        self.orphan_debt = self.state.debt_bytes
        self.ctl = controller_from_state(
            self.flow_options,
            self.state,
            clock=self.clock,
            observer=self.observer,
            async_sleep=self.clock.async_sleep_ns,
        )
        self.agree("far start", "snapshot", self.state, self.ctl.snapshot())

    @precondition(lambda self: self.far and self.restarts < MAX_RESTARTS)
    @rule(start=starts(far_share=1))
    def restart_far(self, start: Start) -> None:
        """
        Start again, on a new controller, clock and observer, from another far state (ST-1).

        Only in runs that started far, so that each such run tries several far states: the
        rejections at a scope count of u64::MAX (ERR-2) are tried in every regime only from
        such states, and a run soon closes the scopes it started with.
        """
        self.restarts += 1
        self.start_at(start)

    def prime(self, flushes: int, io_us: int, backlog: int) -> None:
        """
        Run ``flushes`` one-unit tasks whose I/O reports ``io_us``, then enqueue ``backlog``.

        Through the ordinary, compared operations: this only shortens the way to the steady
        state (the warm-up needs I/O samples) and to debt above the thresholds.
        """
        for _ in range(flushes):
            number = self.enqueue_bytes(self.config.bp_flush_unit_bytes)
            if number is None:
                break  # a far start's debt left no room
            self.advance("io", 1)
            self.io_built_task(number, 100, io_us * NANOS_PER_MICRO)
            self.mark_done_task(number)
        for _ in range(backlog):
            self.enqueue_bytes(self.config.bp_flush_unit_bytes)

    # --- the comparison -----------------------------------------------------------------------

    def step(self, label: str, expect: Callable[[], Expected], act: Callable[[], object]) -> bool:
        """
        Run one operation on both sides and compare everything; return whether it was valid.

        ``expect`` computes the model's answer (raising as the model does); ``act`` performs
        the operation on the implementation. An operation the model rejects must raise the
        same exception type on the implementation and change nothing (spec ERR-1 to ERR-3).
        """
        type(self).steps += 1
        try:
            expected = expect()
        except MODEL_ERRORS as error:
            self.expect_rejection(label, type(error), act)
            return False
        calls, sleeps = self.observer.call_count, self.clock.sleep_count
        try:
            result = act()
        except Exception as error:
            raise StepMismatchError(
                f"{label}: the model accepts, the implementation raised {error!r}"
            ) from error
        self.agree(label, "result", expected.result, result)
        self.agree(label, "sleeps", expected.sleeps, self.clock.sleeps_since(sleeps))
        self.agree(label, "emissions", expected.emissions, self.observer.calls_since(calls))
        self.agree(label, "clock", expected.now_ns, self.clock.monotonic_ns())
        self.state, self.now_ns = expected.state, expected.now_ns
        if expected.task is not None:
            number, task = expected.task
            if number == len(self.tasks):
                self.tasks.append(task)
            else:
                self.tasks[number] = task
        self.agree(label, "snapshot", self.state, self.ctl.snapshot())
        return True

    def must_reject(
        self, label: str, expect: Callable[[], Expected], act: Callable[[], object]
    ) -> None:
        """Run a step the model must reject (a sweep's attempt); fail the test if it does not."""
        if self.step(label, expect, act):
            raise AssertionError(f"{label}: a rejection sweep's attempt was valid (a test bug)")

    def expect_rejection(
        self, label: str, error: type[BaseException], act: Callable[[], object]
    ) -> None:
        """
        Check that ``act`` raises exactly ``error`` and changes nothing (spec ERR-1..3).

        Nothing: the snapshot, the clock, the sleeps and the observer's calls here (a foreign
        task in `misuse`); every task, against the model, by `implementation_matches_model`
        after the step (and after each sweep).
        """
        before = self.observed()
        raised: type[BaseException] | None = None
        try:
            act()
        except Exception as exception:  # noqa: BLE001  # its type is compared just below
            raised = type(exception)
        self.agree(label, "error type", error, raised)
        self.agree(label, "everything after a rejected operation", before, self.observed())
        self.label(f"rejected {label}: {error.__name__}", required=False)

    def observed(self) -> tuple[object, ...]:
        """Return what a rejected operation may not change, for before/after checks."""
        return (
            self.ctl.snapshot(),
            self.clock.monotonic_ns(),
            self.clock.sleep_count,
            self.observer.call_count,
        )

    @staticmethod
    def agree(label: str, what: str, expected: object, got: object) -> None:
        """Raise StepMismatchError unless the implementation's ``got`` equals the model's."""
        if expected != got:
            raise StepMismatchError(
                f"{label}: {what} differs\n  model:          {expected!r}\n"
                f"  implementation: {got!r}"
            )

    def label(self, name: str, *, required: bool = True) -> None:
        """
        Record that a regime was reached, for Hypothesis's statistics and the coverage gate.

        Once a run: Hypothesis counts each event once a test case anyway, and the gate counts
        the runs that reached each label (a sweep alone labels some 150 pairs).
        """
        if name in self.labelled:
            return
        self.labelled.add(name)
        event(name)
        if required or name in REQUIRED_REGIMES:
            type(self).covered[name] += 1

    # --- choosing tasks (from the model only) -------------------------------------------------

    def live(self) -> list[int]:
        """Return the numbers of the tasks not yet done, oldest first."""
        return [number for number, task in enumerate(self.tasks) if not task.done]

    def finished(self) -> list[int]:
        """Return the numbers of the tasks done, oldest first."""
        return [number for number, task in enumerate(self.tasks) if task.done]

    def has_live(self) -> bool:
        """Return whether some task is not yet done."""
        return any(not task.done for task in self.tasks)

    def has_finished(self) -> bool:
        """Return whether some task is done."""
        return any(task.done for task in self.tasks)

    def bytes_of(self, milli_units: int) -> int:
        """Return ``milli_units`` thousandths of a flush unit, in bytes."""
        return milli_units * self.config.bp_flush_unit_bytes // 1_000

    # --- the task lifecycle (spec FC-1 to FC-5) -----------------------------------------------

    @rule(whole=st.integers(0, 1), milli=st.sampled_from((0, 0, 1, 250, 500, 999)))
    def enqueue(self, whole: int, milli: int) -> None:
        """Enqueue a task of about ``whole`` flush units, sometimes a few milli-units more."""
        self.enqueue_bytes(self.bytes_of(whole * 1_000 + milli))

    def enqueue_bytes(self, est: int) -> int | None:
        """Enqueue a task of ``est`` bytes; label an idle reset (FC-1, FC-12); return its number."""
        number = len(self.tasks)
        reset = model.idle_expired(self.config, self.state, self.now_ns)
        had_history = self.state.io_sample_count != 0 or self.state.e2e_bps_ewma != 0

        def expect() -> Expected:
            step = model.enqueue(self.config, self.state, est, self.now_ns)
            return Expected(None, step.state, self.now_ns, task=(number, step.task))

        def act() -> None:
            self.handles.append(self.ctl.on_enqueue_est(est))

        if not self.step(f"on_enqueue_est({est})", expect, act):
            return None
        if reset and had_history:
            self.label("idle reset")
        return number

    @rule(zone=st.sampled_from(tuple(ZONES)), offset=st.sampled_from((0, 0, 1)))
    def enqueue_to(self, zone: str, offset: int) -> None:
        """
        Enqueue a task whose estimate brings the debt to a threshold (or ``offset`` bytes past).

        The estimate is read from the model's configuration and state, so the debt lands on the
        milli-unit boundaries where the regimes of FC-6 and FC-9 flip (AR-2, AR-3); a debt
        already past the target enqueues an empty task.
        """
        threshold_mu = ZONES[zone](self.config)
        unit = self.config.bp_flush_unit_bytes
        # The least debt whose milli-units reach the threshold: ceil(threshold * unit / 1000).
        target_bytes = -(-threshold_mu * unit // 1_000) + offset
        self.enqueue_bytes(max(target_bytes - self.state.debt_bytes, 0))

    @rule(zone=st.sampled_from(tuple(ZONES)), offset=st.sampled_from((0, 1)))
    def enqueue_to_after_idle_reset(self, zone: str, offset: int) -> None:
        """
        Settle everything, stay idle past the reset interval, then enqueue to a threshold.

        The enqueue resets the throughput history (FC-1, FC-12) and lands the debt on a
        threshold at once: the controller is back in cold start there, where the cold-start
        thresholds (FC-6 rules 4 and 8) decide, and where the fast path must use them too.
        """
        self.drain()
        self.advance("idle gap", 0)
        self.enqueue_to(zone, offset)

    @rule(
        zone=st.sampled_from(tuple(ZONES)),
        offset=st.sampled_from((0, 1)),
        report=st.booleans(),
        sub_ns=sub_micros(),
    )
    def enqueue_to_warm(self, zone: str, offset: int, report: bool, sub_ns: int) -> None:
        """
        Warm up, then enqueue to a threshold; with ``report``, report that task's I/O.

        The warm-up's samples (AR-4) put the controller in steady state, so the debt lands on
        a threshold where FC-6 rules 5, 9 and 10 decide; the report leaves a live task whose
        I/O was reported (ERR-1: a second report is rejected) in that zone.
        """
        self.prime(min(self.config.bp_warmup_min_samples, 3), 1_000, 0)
        first = len(self.tasks)
        self.enqueue_to(zone, offset)
        if report and len(self.tasks) > first:
            self.io_built_task(first, 100, NANOS_PER_MILLI + sub_ns)

    @rule()
    def drain(self) -> None:
        """
        Finish every live task, oldest first: the debt returns to the orphan debt (INV-1).

        With no orphan debt (every run but a far start's with debt), the debt is then 0 and the
        controller idle with no pacing deadline (FC-5, FC-12).
        """
        drained = self.live()
        for number in drained:
            self.mark_done_task(number)
        assert self.state.debt_bytes == self.orphan_debt
        # A far start may be drawn busy with no debt and no task; a settle makes it idle.
        if self.orphan_debt == 0 and (drained or not self.far):
            assert self.state.idle_since is not None
            assert self.state.next_flush_at is None

    @rule(
        count=st.integers(1, 3),
        milli=st.sampled_from((1, 250, 500, 1_000)),
        io_ms=st.integers(0, 2),
        form=st.sampled_from(FORMS),
        sub_ns=sub_micros(),
    )
    def flush_cycle(
        self, count: int, milli: int, io_ms: int, form: str, sub_ns: int, *, sweep: bool = False
    ) -> None:
        """
        Run ``count`` new tasks through the engine's protocol (spec FC-1..5, FC-9, FC-10).

        Enqueue them, flush them one after the other, let their I/O take ``io_ms`` on the
        clock (each reports 1 ms and ``sub_ns``), then finish them: under low debt the second
        flush meets the deadline the first one set, as an engine's flusher does. With
        ``sweep``, rejections are swept after the flushes and after the reports, the deadline
        still set.
        """
        first = len(self.tasks)
        for _ in range(count):
            self.enqueue_bytes(max(self.bytes_of(milli), 1))
        numbers = range(first, len(self.tasks))  # an enqueue past u64::MAX adds no task
        for number in numbers:
            self.flush_task(number, form)
        if sweep:
            self.every_rejection_changes_nothing()
        self.advance("io", io_ms, sub_ns)
        for number in numbers:
            self.io_built_task(number, 100, NANOS_PER_MILLI + sub_ns)
        if sweep:
            self.every_rejection_changes_nothing()  # the tasks reported, not yet done
        for number in numbers:
            self.mark_done_task(number)

    @rule(form=st.sampled_from(FORMS), sub_ns=sub_micros())
    def paced_flush_cycle(self, form: str, sub_ns: int) -> None:
        """
        Settle everything, close the scopes, warm up, then run two small tasks' flushes.

        With pacing on, both flushes are paced (FC-9: steady state, debt at most the pacing
        threshold, no bypass), so the second sleeps behind the deadline the first committed
        (FC-10): the pacing sleep is reached whatever the run did before.
        """
        self.drain()
        for scope in SCOPE_EXITS:
            while 0 < self.scope_count(scope) <= 3:
                self.scope(scope)
        # As many samples as the warm-up needs (at most 3 in these configurations), after the
        # idle reset the first of them may meet.
        self.prime(min(self.config.bp_warmup_min_samples, 3), 1_000, 0)
        self.flush_cycle(2, 1, 1, form, sub_ns, sweep=True)

    @precondition(has_live)
    @rule(
        pick=st.integers(0, 50),
        size=st.sampled_from(
            ("0%", "0%", "50%", "100%", "100%", "130%", "1 B", "1/2 unit", "3 units")
        ),
        elapsed_us=st.sampled_from((0, 1, 500, 1_000, 10_000)),
        sub_ns=sub_micros(),
    )
    def io_built(self, pick: int, size: str, elapsed_us: int, sub_ns: int) -> None:
        """
        Report a live task's I/O: a share of its estimate (0 bytes: DIV-1), or a size unrelated
        to it (bytes for a task estimated at 0), in a duration with a sub-µs part (FC-2, AR-1).
        """
        number = self.live()[pick % len(self.live())]
        self.io_built_task(number, size, elapsed_us * NANOS_PER_MICRO + sub_ns)

    def io_built_task(self, number: int, size: int | str, elapsed_ns: int) -> None:
        """Report the I/O of task ``number``: ``size`` (percent of its estimate, or absolute)."""
        est = self.tasks[number].est_bytes
        if isinstance(size, int):
            nbytes = est * size // 100
        elif size.endswith("%"):
            nbytes = est * int(size[:-1]) // 100
        else:
            nbytes = {"1 B": 1, "1/2 unit": self.bytes_of(500), "3 units": self.bytes_of(3_000)}[
                size
            ]
        self.io_built_bytes(number, nbytes, elapsed_ns)

    def io_built_bytes(self, number: int, nbytes: int, elapsed_ns: int) -> None:
        """Report that task ``number``'s I/O wrote ``nbytes`` in ``elapsed_ns`` (spec FC-2)."""
        task = self.tasks[number]

        def expect() -> Expected:
            step = model.io_built(self.config, self.state, task, nbytes, elapsed_ns)
            return Expected(None, step.state, self.now_ns, task=(number, step.task))

        handle = self.handles[number]
        label = f"on_io_built(task {number}, {nbytes}, {elapsed_ns})"
        self.step(label, expect, lambda: self.ctl.on_io_built(handle, nbytes, elapsed_ns))

    @rule(
        milli=st.sampled_from((0, 0, 1, 500, 1_000, 2_500, 5_000, 9_000)),
        sub_ns=sub_micros(),
        gap=st.sampled_from((True, True, False)),
    )
    def zero_estimate_reports_late(self, milli: int, sub_ns: int, gap: bool) -> None:
        """
        Reach idle with debt: tasks estimated at 0 outlive the others, then one reports bytes.

        Enqueue two tasks of 0 bytes, settle every other task (the debt reaches 0 and the
        controller goes idle, FC-12), then report ``milli`` milli-units for the first: FC-2
        raises the debt and does not clear ``idle_since`` (``milli`` 0: at least a byte, unless
        0 itself, which leaves a reported task and no debt). The second could still report up
        to the debt's overflow (ERR-2). Rejections are swept there, and, with ``gap``, again
        once the idle spell has outlasted the reset interval.
        """
        first = len(self.tasks)
        for _ in range(2):
            self.enqueue_bytes(0)
        zero_tasks = range(first, len(self.tasks))
        for number in self.live():
            if number not in zero_tasks:
                self.mark_done_task(number)
        if zero_tasks:
            nbytes = max(self.bytes_of(milli), 1) if milli else 0  # 0: reported, no debt
            self.io_built_bytes(first, nbytes, NANOS_PER_MILLI + sub_ns)
        if gap:
            self.every_rejection_changes_nothing()
            self.advance("idle gap", 0)

    @precondition(has_live)
    @rule(pick=st.integers(0, 50), mark=st.sampled_from((*Outcome, "force bypass")))
    def mark_task(self, pick: int, mark: Outcome | str) -> None:
        """Mark a live task's outcome, any of the five (FC-3), or force it to bypass (FC-4)."""
        number = self.live()[pick % len(self.live())]
        task = self.tasks[number]
        handle = self.handles[number]
        if isinstance(mark, Outcome):
            outcome = mark

            def expect() -> Expected:
                changed = model.mark_outcome(task, outcome)
                return Expected(None, self.state, self.now_ns, task=(number, changed))

            self.step(
                f"mark_outcome(task {number}, {outcome})",
                expect,
                lambda: handle.mark_outcome(outcome),
            )
            return

        def expect_bypass() -> Expected:
            bypassed = model.force_bypass(task)
            return Expected(None, self.state, self.now_ns, task=(number, bypassed))

        self.step(f"mark_force_bypass(task {number})", expect_bypass, handle.mark_force_bypass)

    @precondition(has_live)
    @rule(pick=st.integers(0, 50))
    def mark_done(self, pick: int) -> None:
        """Finish a live task, settling its charge (spec FC-5, FC-12)."""
        self.mark_done_task(self.live()[pick % len(self.live())])

    def mark_done_task(self, number: int) -> None:
        """Finish task ``number``."""
        task = self.tasks[number]

        def expect() -> Expected:
            step = model.mark_done(self.config, self.state, task, self.now_ns)
            return Expected(None, step.state, self.now_ns, task=(number, step.task))

        handle = self.handles[number]
        self.step(f"on_mark_done(task {number})", expect, lambda: self.ctl.on_mark_done(handle))

    # --- foreground backpressure (spec FC-6 to FC-8) ------------------------------------------

    @rule(
        units=st.sampled_from((0, 1, 100, 500, 1_000, 3_000)),
        form=st.sampled_from(FORMS),
    )
    def foreground_write(self, units: int, form: str) -> None:
        """Ask before a foreground write of ``units`` milli-units, in one of its three forms."""
        write_bytes = max(self.bytes_of(units), units and 1)
        decision = model.before_foreground_write(self.config, self.state, write_bytes)
        delay_us = decision.delay_us
        # spec INV-2, INV-3, INV-4: the delay's bounds, zero-delay regimes and the stop delay,
        # on the model's answer, which the implementation's must then equal.
        assert 0 <= delay_us <= self.config.bp_max_delay_us
        if decision.regime is ForegroundRegime.STOP:
            assert delay_us == self.config.bp_max_delay_us
        if decision.regime not in model.THROTTLED_REGIMES | {ForegroundRegime.STOP}:
            assert delay_us == 0
        self.label(f"foreground {decision.regime.name}")
        self.most_delay_share = max(self.most_delay_share, delay_us / self.config.bp_max_delay_us)
        sleep_ns = delay_us * NANOS_PER_MICRO
        if form == "nowait":
            expected = Expected(sleep_ns, self.state, self.now_ns, emissions=decision.emissions)
        else:
            sleeps = (sleep_ns,) if sleep_ns else ()
            expected = Expected(
                sleep_ns,  # spec HARD-13: every form returns nanoseconds
                self.state,
                self.now_ns + sleep_ns,
                sleeps=sleeps,
                emissions=decision.emissions,
            )
        act = functools.partial(self.write_in_form, form, write_bytes)
        self.step(f"before_foreground_write[{form}]({write_bytes})", lambda: expected, act)

    def write_in_form(self, form: str, write_bytes: int) -> int:
        """Ask the implementation before a foreground write: blocking, nowait or async form."""
        if form == "nowait":
            return self.ctl.before_foreground_write_nowait(write_bytes)
        if form == "async":
            coroutine = self.ctl.before_foreground_write_async(write_bytes)
            return run_without_loop(coroutine)
        return self.ctl.before_foreground_write(write_bytes)

    # --- flush pacing (spec FC-9, FC-10) ------------------------------------------------------

    @precondition(has_live)
    @rule(
        pick=st.integers(0, 50),
        form=st.sampled_from(FORMS),
        times=st.sampled_from((1, 1, 2)),
    )
    def flush(self, pick: int, form: str, times: int) -> None:
        """
        Ask before flushing a live task, once or twice in a row, in one of the three forms.

        Twice in a row, a paced flush finds the deadline the first one set (spec FC-10).
        """
        self.flush_task(self.live()[pick % len(self.live())], form, times)

    def flush_task(self, number: int, form: str, times: int = 1) -> None:
        """Ask before flushing task ``number``, ``times`` times in a row, in ``form``."""
        handle = self.handles[number]
        for _ in range(times):
            plan = self.flush_plan(number)
            self.step(
                f"before_flush[{form}](task {number})",
                functools.partial(self.expected_flush, plan, form),
                functools.partial(self.flush_in_form, form, handle),
            )

    def flush_in_form(self, form: str, handle: FlowTask) -> int:
        """Ask the implementation before a flush, in the blocking, nowait or async form."""
        if form == "nowait":
            return self.ctl.before_flush_nowait(handle)
        if form == "async":
            return run_without_loop(self.ctl.before_flush_async(handle))
        return self.ctl.before_flush(handle)

    def flush_plan(self, number: int) -> FlushPlan:
        """Return the model's plan for flushing task ``number`` now, and label its regime."""
        plan = model.plan_flush(self.config, self.state, self.tasks[number], self.now_ns)
        self.label(f"flush {plan.decision.name}", required=False)
        if plan.sleep_ns:
            self.label("flush pacing sleep")
        # spec INV-6: pacing sleeps and intervals stay within their bounds.
        assert 0 <= plan.sleep_ns <= self.config.bp_max_delay_us * NANOS_PER_MICRO
        if plan.decision is FlushDecision.PACED:
            assert 1 <= plan.interval_us <= self.config.bp_max_delay_us
        return plan

    def expected_flush(
        self, plan: FlushPlan, form: str, state: ControllerState | None = None
    ) -> Expected:
        """Return what a flush with ``plan`` does in ``form``, from ``state`` (default: now's)."""
        state = self.state if state is None else state
        sleep_ns = plan.sleep_ns
        # The non-blocking forms commit at decision time as if the sleep ended on time; only the
        # blocking and async forms move the clock (by sleeping on it).
        commit_at = self.now_ns + sleep_ns
        committed = model.commit_flush(state, plan, commit_at)
        if form == "nowait":
            return Expected(sleep_ns, committed, self.now_ns, emissions=plan.emissions)
        sleeps = (sleep_ns,) if sleep_ns else ()
        return Expected(
            sleep_ns,  # spec HARD-13: the sleep as planned, in nanoseconds
            committed,
            commit_at,
            sleeps=sleeps,
            emissions=plan.emissions,
        )

    @precondition(has_live)
    @rule(pick=st.integers(0, 50), scope=st.sampled_from(("teardown", "starving")))
    def flush_in_scope(self, pick: int, scope: str) -> None:
        """Flush a live task inside a scope opened by its context manager (spec FC-11)."""
        number = self.live()[pick % len(self.live())]
        handle = self.handles[number]
        enter, leave = (
            (model.enter_teardown, model.leave_teardown)
            if scope == "teardown"
            else (model.enter_starving, model.leave_starving)
        )

        def expect() -> Expected:
            inside = enter(self.state)  # raises at u64::MAX (ERR-2): nothing is flushed then
            plan = model.plan_flush(self.config, inside, self.tasks[number], self.now_ns)
            self.label(f"flush {plan.decision.name}", required=False)
            flushed = self.expected_flush(plan, "blocking", inside)
            return dataclasses.replace(flushed, state=leave(flushed.state))

        def act() -> int:
            manager = (
                self.ctl.teardown_bypass() if scope == "teardown" else self.ctl.arena_starving()
            )
            with manager:
                return self.ctl.before_flush(handle)

        self.step(f"before_flush in {scope} scope (task {number})", expect, act)

    # --- scopes (spec FC-11) ------------------------------------------------------------------

    # Leaving is drawn twice as often as entering, so that scopes are mostly closed and the
    # flushes outside `flush_in_scope` reach the other decisions of FC-9.
    @rule(scope=st.sampled_from(("enter_teardown", "enter_starving", *(2 * SCOPE_EXITS))))
    def scope(self, scope: str) -> None:
        """Open or close a teardown or arena-starvation scope; closing none is a no-op."""
        transition = {
            "enter_teardown": model.enter_teardown,
            "leave_teardown": model.leave_teardown,
            "enter_starving": model.enter_starving,
            "leave_starving": model.leave_starving,
        }[scope]
        method = {
            "enter_teardown": self.ctl.enter_teardown_bypass,
            "leave_teardown": self.ctl.leave_teardown_bypass,
            "enter_starving": self.ctl.enter_arena_starving,
            "leave_starving": self.ctl.leave_arena_starving,
        }[scope]
        pinned = scope.startswith("leave") and self.scope_count(scope) == U64_MAX
        self.step(scope, lambda: Expected(None, transition(self.state), self.now_ns), method)
        if pinned:
            # A scope count at u64::MAX is reached only from a far start: leave it there, by
            # entering again (which both sides must accept from u64::MAX - 1), so that the
            # rejections at the limit are tried in every regime the run goes on to (ERR-2).
            again = scope.replace("leave", "enter")
            self.scope(again)

    def scope_count(self, scope: str) -> int:
        """Return the model's count of the scopes ``scope`` opens or closes."""
        state = self.state
        return state.teardown_bypass_scopes if "teardown" in scope else state.arena_starving_scopes

    # --- time ----------------------------------------------------------------------------------

    @rule(
        kind=st.sampled_from(("tick", "io", "idle gap", "to idle edge", "to deadline edge")),
        amount=st.integers(0, 3),
        sub_ns=sub_micros(),
    )
    def advance(self, kind: str, amount: int, sub_ns: int = 0) -> None:
        """
        Move the clock: a few µs or ms and ``sub_ns``, past the idle-reset interval, or to a
        nanosecond either side of the idle reset or the pacing deadline (spec FC-10, FC-12).

        ``to idle edge`` goes to ``amount - 1`` ns past the end of the idle-reset interval,
        ``to deadline edge`` to ``amount - 1`` ns past the pacing deadline, when that is ahead.
        """
        if kind == "tick":
            duration_ns = amount * NANOS_PER_MICRO + sub_ns
        elif kind == "io":
            duration_ns = amount * NANOS_PER_MILLI + sub_ns
        elif kind == "idle gap":
            duration_ns = (self.config.bp_idle_reset_ms + amount) * NANOS_PER_MILLI
        else:
            edge = self.state.idle_since if kind == "to idle edge" else self.state.next_flush_at
            if edge is None:
                return
            if kind == "to idle edge":
                edge += self.config.bp_idle_reset_ms * NANOS_PER_MILLI
            duration_ns = max(edge + amount - 1 - self.now_ns, 0)
        self.clock.advance_ns(duration_ns)
        self.now_ns += duration_ns
        self.agree("advance", "clock", self.now_ns, self.clock.monotonic_ns())

    # --- misuse (spec ERR-1 to ERR-3) ---------------------------------------------------------

    @rule(
        kind=st.sampled_from(("finished task", "foreign task", "bad argument", "overflow")),
        pick=st.integers(0, 50),
        which=st.integers(0, 5),
        bad=st.sampled_from((-1, U64_MAX + 1, True, 1.5, "7", None)),
    )
    def misuse_attempt(self, kind: str, pick: int, which: int, bad: object) -> None:
        """
        Misuse the API: both sides raise the same error and nothing changes (ERR-1 to ERR-3).

        A finished task (ERR-1), another controller's task (ERR-1, DIV-2), a bad argument
        (ERR-3), or a debt pushed past u64::MAX (ERR-2). ``which`` picks the operation. (The
        rejection sweeps try every one of these in every regime; this rule draws the task.)
        """
        if kind == "finished task":
            if self.has_finished():
                number = self.finished()[pick % len(self.finished())]
                operation = TASK_OPERATIONS[which % len(TASK_OPERATIONS)]
                self.misuse(operation, number, self.handles[number], self.tasks[number])
        elif kind == "foreign task":
            operation = FOREIGN_OPERATIONS[which % len(FOREIGN_OPERATIONS)]
            self.misuse(operation, -1, self.foreign, self.foreign_view(), foreign=True)
        elif kind == "bad argument":
            self.bad_argument(BAD_ARGUMENT_OPERATIONS[which], bad)
        elif self.state.debt_bytes > 0:
            self.overflow(pick, "enqueue" if which % 2 else "io_built")

    @staticmethod
    def foreign_view() -> TaskState:
        """Return the foreign task as the model sees it: valid and live (spec DIV-2)."""
        return TaskState(enqueue_at=0, est_bytes=1)

    def bad_argument(
        self, operation: str, bad: object, form: str = "blocking", *, must_reject: bool = False
    ) -> None:
        """
        Pass a bad argument: both raise the same TypeError or ValueError (spec ERR-3).

        A value the model accepts (``bad=None`` for ``io_built``'s size is a good call of
        ``misuse``'s default) is an ordinary step, unless ``must_reject``.
        """
        run = self.must_reject if must_reject else self.step
        if operation == "enqueue":
            run(
                f"on_enqueue_est({bad!r})",
                lambda: self.reject(model.check_u64, "est_bytes", bad),
                lambda: self.ctl.on_enqueue_est(cast("int", bad)),
            )
        elif operation == "foreground_write":
            run(
                f"before_foreground_write[{form}]({bad!r})",
                lambda: self.reject(model.check_u64, "write_bytes", bad),
                lambda: self.write_in_form(form, cast("int", bad)),
            )
        elif operation == "before_flush":
            run(
                f"before_flush[{form}]({bad!r})",
                lambda: self.reject(raise_type_error, bad),
                lambda: self.flush_in_form(form, cast("FlowTask", bad)),
            )
        elif self.tasks:
            # The newest task, live or finished: ERR-3 is raised before ERR-1 either way.
            number = len(self.tasks) - 1
            handle, task = self.handles[number], self.tasks[number]
            self.misuse(operation, number, handle, task, bad=bad, must_reject=must_reject)
        else:
            # No task yet: another controller's, whose misuse (ERR-1) comes after ERR-3.
            view = self.foreign_view()
            self.misuse(
                operation, -1, self.foreign, view, foreign=True, bad=bad, must_reject=must_reject
            )

    def overflow(self, pick: int, where: str) -> None:
        """Push the debt past u64::MAX: DebtOverflowError on both sides, nothing changes (ERR-2)."""
        if where == "enqueue":
            est = U64_MAX - self.state.debt_bytes + 1
            number = len(self.tasks)

            def expect() -> Expected:
                step = model.enqueue(self.config, self.state, est, self.now_ns)
                return Expected(None, step.state, self.now_ns, task=(number, step.task))

            self.step(
                f"on_enqueue_est({est})",
                expect,
                lambda: self.handles.append(self.ctl.on_enqueue_est(est)),
            )
        elif self.has_live():
            self.misuse("io_built", *self.pick_live(pick), nbytes=U64_MAX)

    def pick_live(self, pick: int) -> tuple[int, FlowTask, TaskState]:
        """Return a live task's number, handle and model state."""
        number = self.live()[pick % len(self.live())]
        return number, self.handles[number], self.tasks[number]

    def misuse(
        self,
        operation: str,
        number: int,
        handle: FlowTask,
        task: TaskState,
        *,
        foreign: bool = False,
        bad: object = GOOD,
        nbytes: int = 1,
        must_reject: bool = False,
    ) -> None:
        """
        Apply a task operation the model may reject; compare as any other step.

        ``bad`` replaces the operation's argument (``io_built elapsed``: its duration). With
        ``must_reject``, the model must reject the operation (a sweep's attempt).
        """
        args: dict[str, object] = {"nbytes": nbytes, "elapsed_ns": 1_000, "outcome": Outcome.SKIP}
        if bad is not GOOD:
            key = {
                "io_built": "nbytes",
                "io_built elapsed": "elapsed_ns",
                "mark_outcome": "outcome",
            }[operation]
            args[key] = bad
        operation = operation.removesuffix(" elapsed")

        def expect() -> Expected:
            if foreign:
                # spec ERR-1, DIV-2: the model cannot see ownership. Bad arguments are rejected
                # first (ERR-3); then the foreign task, before any overflow (ERR-2).
                with contextlib.suppress(TaskStateError, OverflowError):
                    self.model_task_operation(operation, task, args)
                raise TaskStateError("task of another controller")
            new_state, new_task = self.model_task_operation(operation, task, args)
            return Expected(None, new_state, self.now_ns, task=(number, new_task))

        def act() -> object:
            if not foreign:
                return self.impl_task_operation(operation, handle, args)
            before = handle.snapshot()
            try:
                return self.impl_task_operation(operation, handle, args)
            finally:
                # The other controller's task must not change either (spec ERR-1, DIV-2).
                self.agree(operation, "the foreign task", before, handle.snapshot())

        label = f"{operation}(task {number}, {args})"
        if must_reject:
            self.must_reject(label, expect, act)
        else:
            self.step(label, expect, act)

    def model_task_operation(
        self, operation: str, task: TaskState, args: dict[str, object]
    ) -> tuple[ControllerState, TaskState]:
        """Return the model's state and task after ``operation``; raise as the model does."""
        config, state, now = self.config, self.state, self.now_ns
        if operation == "io_built":
            nbytes, elapsed_ns = cast("int", args["nbytes"]), cast("int", args["elapsed_ns"])
            step = model.io_built(config, state, task, nbytes, elapsed_ns)
            return step.state, step.task
        if operation == "mark_outcome":
            return state, model.mark_outcome(task, cast("Outcome", args["outcome"]))
        if operation == "force_bypass":
            return state, model.force_bypass(task)
        if operation == "mark_done":
            step = model.mark_done(config, state, task, now)
            return step.state, step.task
        # A flush reaches here for finished or foreign tasks only: the model's plan rejects the
        # first (ERR-1) and the caller rejects the second.
        model.plan_flush(config, state, task, now)
        return state, task

    def impl_task_operation(
        self, operation: str, handle: FlowTask, args: dict[str, object]
    ) -> object:
        """Perform ``operation`` on the implementation's task ``handle``."""
        # Arguments may be of the wrong type on purpose (spec ERR-3): the casts say so.
        if operation == "before_flush":
            return self.ctl.before_flush(handle)
        if operation == "before_flush_nowait":
            return self.ctl.before_flush_nowait(handle)
        if operation == "before_flush_async":
            return run_without_loop(self.ctl.before_flush_async(handle))
        if operation == "io_built":
            nbytes, elapsed_ns = cast("int", args["nbytes"]), cast("int", args["elapsed_ns"])
            self.ctl.on_io_built(handle, nbytes, elapsed_ns)
        elif operation == "mark_outcome":
            handle.mark_outcome(cast("Outcome", args["outcome"]))
        elif operation == "force_bypass":
            handle.mark_force_bypass()
        else:
            self.ctl.on_mark_done(handle)
        return None

    @staticmethod
    def reject(check: Callable[..., None], *args: object) -> Expected:
        """Run the model's argument check, which raises for a bad argument (spec ERR-3)."""
        check(*args)
        raise AssertionError(f"the model accepted the bad argument {args!r}")

    # --- every rejection in every regime (spec ERR-1 to ERR-3) --------------------------------

    def applicable_kinds(self) -> frozenset[str]:
        """Return the kinds of `REJECTION_KINDS` some operation can be rejected for now."""
        kinds = {kind for kind in REJECTION_KINDS if not kind.startswith(("finished", "over"))}
        kinds.discard("second io_built")
        if self.has_finished():
            kinds.update(f"finished task: {operation}" for operation in TASK_OPERATIONS)
        if any(task.io_reported and not task.done for task in self.tasks):
            kinds.add("second io_built")
        if self.state.debt_bytes > 0:
            kinds.add("overflow enqueue")
        if self.overflowing_report() is not None:
            kinds.add("overflow io_built")
        kinds.update(SCOPE_OVERFLOWS)  # on a twin, when the run's count is below the limit
        return frozenset(kinds)

    def overflowing_report(self) -> int | None:
        """Return a live unreported task whose report can overflow the debt (ERR-2), if any."""
        for number, task in enumerate(self.tasks):
            if not task.done and not task.io_reported and self.state.debt_bytes > task.est_bytes:
                return number
        return None

    @invariant()
    def every_rejection_changes_nothing(self) -> None:
        """
        In each new combination of regimes, every rejected operation changes nothing (ERR-1..3).

        The sweep tries each kind of rejection that applies now and was not yet tried in this
        run in this combination of regimes, and labels each (kind, regime) pair.
        """
        if not hasattr(self, "ctl"):
            return
        regimes = rejection_regimes(self.config, self.state, self.now_ns)
        kinds = self.applicable_kinds()
        todo = [k for k in REJECTION_KINDS if k in kinds and (k, regimes) not in self.swept]
        if not todo:
            return
        self.sweep_number += 1
        type(self).sweeps += 1
        for kind in todo:
            self.swept.add((kind, regimes))
            if kind in SCOPE_OVERFLOWS and self.scope_count(kind) != U64_MAX:
                continue  # on the twin, below
            self.reject_kind(kind)
            for regime in regimes:
                self.label(f"rejected {kind} | {regime}")
        on_twin = [k for k in todo if k in SCOPE_OVERFLOWS and self.scope_count(k) != U64_MAX]
        if on_twin:
            twin_regimes = self.scope_overflows_on_twin(on_twin)
            for kind, regime in itertools.product(on_twin, twin_regimes):
                self.label(f"rejected {kind} | {regime}")
        self.implementation_matches_model()

    def reject_kind(self, kind: str) -> None:  # noqa: C901, PLR0912 - a branch per kind
        """Try the operations of one rejection ``kind``; each must be rejected (ERR-1 to ERR-3)."""
        turn = self.sweep_number % len(U64_BAD_VALUES)
        if kind.startswith("finished task: "):
            number = self.finished()[-1]
            operation = kind.removeprefix("finished task: ")
            handle, task = self.handles[number], self.tasks[number]
            self.misuse(operation, number, handle, task, must_reject=True)
        elif kind == "second io_built":
            number = next(n for n, t in enumerate(self.tasks) if t.io_reported and not t.done)
            handle, task = self.handles[number], self.tasks[number]
            self.misuse("io_built", number, handle, task, must_reject=True)
        elif kind.startswith("foreign task: "):
            operation = kind.removeprefix("foreign task: ")
            view = self.foreign_view()
            self.misuse(operation, -1, self.foreign, view, foreign=True, must_reject=True)
        elif kind in {"bad est_bytes", "bad nbytes"}:
            operation = "enqueue" if kind == "bad est_bytes" else "io_built"
            for bad in U64_BAD_VALUES[turn]:
                self.bad_argument(operation, bad, must_reject=True)
        elif kind == "bad elapsed_ns":
            for bad in ELAPSED_BAD_VALUES[turn]:
                self.bad_argument("io_built elapsed", bad, must_reject=True)
        elif kind == "bad outcome":
            self.bad_argument("mark_outcome", NOT_OUTCOMES[turn], must_reject=True)
        elif kind.startswith("bad write_bytes"):
            form = kind.split("[")[1].rstrip("]")
            for bad in U64_BAD_VALUES[turn]:
                self.bad_argument("foreground_write", bad, form, must_reject=True)
        elif kind.startswith("bad task"):
            form = kind.split("[")[1].rstrip("]")
            self.bad_argument("before_flush", NOT_TASKS[turn], form, must_reject=True)
        elif kind == "overflow enqueue":
            self.overflow(0, "enqueue")
        elif kind == "overflow io_built":
            number = cast("int", self.overflowing_report())
            task = self.tasks[number]
            # The least report that overflows: one byte past u64::MAX (spec ERR-2).
            nbytes = U64_MAX - (self.state.debt_bytes - task.est_bytes) + 1
            handle = self.handles[number]
            self.misuse("io_built", number, handle, task, nbytes=nbytes, must_reject=True)
        else:
            self.scope_overflow(kind.removeprefix("overflow "))

    def scope_overflow(self, scope: str) -> None:
        """Open a scope past u64::MAX, directly and by the context manager (ERR-2, FC-11)."""
        enter = model.enter_teardown if scope == "enter_teardown" else model.enter_starving
        method, manager = (
            (self.ctl.enter_teardown_bypass, self.ctl.teardown_bypass)
            if scope == "enter_teardown"
            else (self.ctl.enter_arena_starving, self.ctl.arena_starving)
        )

        def expect() -> Expected:
            return Expected(None, enter(self.state), self.now_ns)

        def in_scope() -> None:
            with manager():
                raise AssertionError("the scope opened past u64::MAX")

        self.must_reject(scope, expect, method)
        self.must_reject(f"with {manager.__name__}()", expect, in_scope)

    def scope_overflows_on_twin(self, kinds: list[str]) -> frozenset[str]:
        """
        Open scopes past u64::MAX on a twin of the controller; return the twin's regimes.

        No run reaches a scope count of u64::MAX by operations (it takes 2**64 of them), and a
        far start at the limit soon leaves it: the twin is built now by `controller_from_state`
        from the model's state with the counts of ``kinds`` at u64::MAX, everything else as it
        is, on a clock and observer of its own. After the rejections (ERR-2), the probe writes
        check that the fast path's hidden state did not change either (FC-6).
        """
        fields = {
            "teardown_bypass_scopes" if "teardown" in kind else "arena_starving_scopes": U64_MAX
            for kind in kinds
        }
        twin_state = dataclasses.replace(self.state, **fields)
        saved = (self.ctl, self.clock, self.observer, self.state)
        self.clock = ProbeClock(self.now_ns)
        self.observer = RecordingObserver()
        self.ctl = controller_from_state(
            self.flow_options,
            twin_state,
            clock=self.clock,
            observer=self.observer,
            async_sleep=self.clock.async_sleep_ns,
        )
        self.state = twin_state
        try:
            for kind in kinds:
                self.scope_overflow(kind.removeprefix("overflow "))
            self.foreground_decision_agrees()
        finally:
            self.ctl, self.clock, self.observer, self.state = saved
        return rejection_regimes(self.config, twin_state, self.now_ns)

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def implementation_matches_model(self) -> None:
        """The snapshots, every task and the clock agree after every step (spec ST-1, ST-2)."""
        self.agree("after the step", "snapshot", self.state, self.ctl.snapshot())
        for number, (task, handle) in enumerate(zip(self.tasks, self.handles, strict=True)):
            self.agree("after the step", f"task {number}", task, handle.snapshot())
        self.agree("after the step", "clock", self.now_ns, self.clock.monotonic_ns())

    @invariant()
    def foreground_decision_agrees(self) -> None:
        """
        A probe write of one flush unit is decided alike in every form in every state (FC-6..8).

        The blocking form (with its lock-free fast path, taken in the zero-delay regimes), the
        non-blocking form and the async form are each compared with the model: the result, the
        sleep (recorded apart by `ProbeClock.probe`, which holds the clock still) and the
        emissions. Writes change no state (FC-8), so probing after every step checks the
        foreground decision in every state the run visits; it also labels the state's regime.
        """
        probe = self.config.bp_flush_unit_bytes
        decision = model.before_foreground_write(self.config, self.state, probe)
        self.label(f"foreground {decision.regime.name}")
        delay_ns = decision.delay_us * NANOS_PER_MICRO
        for form in FORMS:
            label = f"probe write [{form}]"
            calls = self.observer.call_count
            with self.clock.probe() as sleeps:
                result = self.write_in_form(form, probe)
            self.agree(label, "delay", delay_ns, result)  # spec HARD-13: ns in every form
            if form == "nowait":
                self.agree(label, "sleeps", [], sleeps)
            else:
                self.agree(label, "sleeps", [delay_ns] if delay_ns else [], sleeps)
            self.agree(label, "emissions", decision.emissions, self.observer.calls_since(calls))
        self.agree("probe write", "clock", self.now_ns, self.clock.monotonic_ns())

    @invariant()
    def debt_is_conserved(self) -> None:
        """The debt is the orphan debt plus the live tasks' charges (spec INV-1)."""
        charges = sum(outstanding_charge(task) for task in self.tasks if not task.done)
        assert self.state.debt_bytes == self.orphan_debt + charges
        self.most_debt_mu = max(
            self.most_debt_mu, debt_milli_units(self.config, self.state.debt_bytes)
        )

    @invariant()
    def scopes_are_never_negative(self) -> None:
        """Scope counts stay in [0, u64::MAX]; the adaptive floor stays at or above the floor."""
        # spec INV-7, INV-9
        assert 0 <= self.state.teardown_bypass_scopes <= U64_MAX
        assert 0 <= self.state.arena_starving_scopes <= U64_MAX
        assert self.state.adaptive_floor_bps >= self.config.bp_floor_bps

    def teardown(self) -> None:
        """
        Push the campaign towards high debt and long delays (targeted property testing).

        Not from far starts: their debt comes with the drawn state, and a debt next to
        u64::MAX would draw the whole search to such starts.
        """
        if hasattr(self, "ctl") and not self.far:
            stop_mu = self.config.bp_stop_debt_units * 1_000
            target(min(self.most_debt_mu / stop_mu, 4.0), label="debt / stop threshold")
            target(self.most_delay_share, label="delay / max delay")


def raise_type_error(value: object) -> None:
    """Raise the TypeError a flush of something that is not a task raises (spec ERR-3)."""
    raise TypeError(f"task must be a FlowTask, got {value!r}")


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.no_crosshair("a state machine over a threaded controller")
def test_implementation_matches_model_step_by_step() -> None:
    # spec ST-1, ST-2, FC-1..12, ERR-1..3, INV-1, INV-2, INV-6, INV-7, DIV-2..4: see the module
    # docstring.
    machine = ControllerMatchesModel
    machine.covered.clear()
    machine.examples = machine.steps = machine.sweeps = machine.far_runs = 0
    # At least 200 examples, whatever the profile: Hypothesis mutates each new example several
    # times, so 50 examples start from only about 7 distinct configurations, too few for the
    # coverage gates below to pass reliably.
    campaign = campaign_settings()
    campaign = settings(campaign, max_examples=max(campaign.max_examples, MIN_EXAMPLES))
    covered = machine.covered
    required = REQUIRED_REGIMES | REQUIRED_REJECTIONS
    try:
        run_state_machine_as_test(machine, settings=campaign)
    finally:
        record_stats(
            "sequential",
            examples=machine.examples,
            steps=machine.steps,
            regimes={name: covered[name] for name in sorted(required)},
            **{"rejection sweeps": machine.sweeps, "far starts": machine.far_runs},
        )
    missing = sorted(REQUIRED_REGIMES - {name for name, count in covered.items() if count})
    # The coverage gates: a campaign that never reached a regime checked nothing about it, and
    # one that never tried a rejection in a regime never checked that it changes nothing there.
    assert not missing, f"regimes never reached: {missing}; reached: {dict(covered)}"
    untried = sorted(REQUIRED_REJECTIONS - {name for name, count in covered.items() if count})
    assert not untried, f"{len(untried)} (rejection | regime) pairs never tried: {untried}"


@pytest.mark.no_crosshair("a threaded controller")
@given(
    soft=st.integers(1, 5),
    unit=st.sampled_from((1, 7, 1_000, 4_096)),
    warmup=st.integers(1, 4),
    warm=st.booleans(),
    above_mu=st.sampled_from((-1, 0, 1, 2)),
    write_bytes=st.sampled_from((1, 1_000)),
)
def test_the_fast_path_decides_at_each_threshold_as_the_model(  # noqa: PLR0917 - drawn cases
    soft: int, unit: int, warmup: int, warm: bool, above_mu: int, write_bytes: int
) -> None:
    # spec FC-6, INV-3: the blocking form's lock-free fast path returns 0 up to a precomputed
    # debt; that limit must be the model's threshold to the milli-unit, in cold start (the
    # fail-safe, strict) and in steady state (soft, not strict). The debt is put a milli-unit
    # either side of each threshold, where a limit one off would show.
    options = FlowOptions(
        enable_backpressure=True,
        bp_flush_unit_bytes=unit,
        bp_soft_debt_units=soft,
        bp_warmup_min_samples=warmup,
    )
    clock = ManualClock()
    ctl = FlowController(options, clock=clock)
    config = options.normalised()
    for _ in range(warmup if warm else warmup - 1):  # AR-4: warm once `warmup` samples are in
        task = ctl.on_enqueue_est(unit)
        clock.advance_ns(NANOS_PER_MILLI)
        ctl.on_io_built(task, unit, NANOS_PER_MILLI)
        ctl.on_mark_done(task)
    threshold_units = soft if warm else config.bp_cold_start_fail_safe_units
    target_mu = max(threshold_units * 1_000 + above_mu, 1)
    ctl.on_enqueue_est(-(-target_mu * unit // 1_000))  # the least debt at target_mu (AR-2)
    state = ctl.snapshot()
    decision = model.before_foreground_write(config, state, write_bytes)
    event(f"delayed: {decision.delay_us > 0}")
    assert ctl.before_foreground_write(write_bytes) == decision.delay_us * NANOS_PER_MICRO
