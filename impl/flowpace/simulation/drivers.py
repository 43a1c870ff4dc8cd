"""The laws the plant drives, behind one interface: the real controller, the model, the peers.

Every driver keeps the seed's task lifecycle (enqueue, I/O built, done, flush pacing, the
arena-starvation scope) in a real `FlowController` on the plant's virtual clock, or, for
``seed-model``, in the reference model's state; they differ in how a foreground write is
decided. The controller is driven through its non-blocking forms only
(``before_foreground_write_nowait``, ``before_flush_nowait``): the plant does the waiting in
virtual time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Protocol

from flowpace.controller import FlowController, FlowTask
from flowpace.options import FlowOptions
from flowpace.simulation import laws
from flowpace.simulation.laws import ADMIT_NOW, Decision, Verdict
from flowpace_reference import extended
from flowpace_reference import transitions as model
from flowpace_reference.config import OPTION_NAMES, normalise, options_from_mapping
from flowpace_reference.types import (
    ControllerState,
    ForegroundAdmit,
    ForegroundBlock,
    TaskState,
)


class SimClock:
    """A virtual clock the plant sets; it never sleeps (the plant waits in virtual time)."""

    __slots__ = ("now_ns",)

    def __init__(self) -> None:
        """Start at 0."""
        self.now_ns = 0

    def monotonic_ns(self) -> int:
        """Return the plant's time."""
        return self.now_ns

    def sleep_ns(self, duration_ns: int) -> None:
        """Refuse: the simulator drives only the non-blocking forms."""
        raise RuntimeError(f"the simulator never sleeps (asked for {duration_ns} ns)")


class Law(Protocol):
    """What the plant asks of a flow-control law; ``now_ns`` is also the clock's time."""

    def enqueue(self, est_bytes: int, now_ns: int) -> object:
        """Charge a sealed buffer; return its task."""
        ...

    def io_built(self, task: object, nbytes: int, elapsed_ns: int, now_ns: int) -> None:
        """Report the bytes a task's I/O wrote and how long it took."""
        ...

    def mark_done(self, task: object, now_ns: int) -> None:
        """Settle a task."""
        ...

    def before_flush(self, task: object, now_ns: int) -> int:
        """Return how long the flush waits for its pacing slot, nanoseconds."""
        ...

    def enter_starving(self) -> None:
        """Open the arena-starvation scope."""
        ...

    def leave_starving(self) -> None:
        """Close the arena-starvation scope."""
        ...

    def admit(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the decision on a write asked now."""
        ...

    def recheck(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return, for a write whose wait has ended, whether it writes now or blocks."""
        ...

    def state(self) -> ControllerState:
        """Return the controller's state."""
        ...


class ControllerLaw:
    """The lifecycle on a real `FlowController`; the seed's foreground law (``seed``)."""

    def __init__(self, options: FlowOptions, clock: SimClock) -> None:
        """Build the controller on ``clock``."""
        self.ctl = FlowController(options, clock=clock)
        self._state: ControllerState | None = None

    def enqueue(self, est_bytes: int, now_ns: int) -> object:
        """Charge a sealed buffer (spec FC-1)."""
        del now_ns
        self._state = None
        return self.ctl.on_enqueue_est(est_bytes)

    def io_built(self, task: object, nbytes: int, elapsed_ns: int, now_ns: int) -> None:
        """Report the I/O (spec FC-2)."""
        del now_ns
        assert isinstance(task, FlowTask)  # noqa: S101 - the plant hands back what enqueue made
        self._state = None
        self.ctl.on_io_built(task, nbytes, elapsed_ns)

    def mark_done(self, task: object, now_ns: int) -> None:
        """Settle the task (spec FC-5)."""
        del now_ns
        assert isinstance(task, FlowTask)  # noqa: S101 - as in io_built
        self._state = None
        self.ctl.on_mark_done(task)

    def before_flush(self, task: object, now_ns: int) -> int:
        """Reserve the pacing slot without sleeping (spec FC-9, FC-10)."""
        del now_ns
        assert isinstance(task, FlowTask)  # noqa: S101 - as in io_built
        self._state = None
        return self.ctl.before_flush_nowait(task)

    def enter_starving(self) -> None:
        """Open the arena-starvation scope (spec FC-11)."""
        self._state = None
        self.ctl.enter_arena_starving()

    def leave_starving(self) -> None:
        """Close the arena-starvation scope (spec FC-11)."""
        self._state = None
        self.ctl.leave_arena_starving()

    def admit(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the seed's delay (spec FC-6 to FC-8): wait it, then write; never re-checked."""
        del writer, now_ns
        wait = self.ctl.before_foreground_write_nowait(write_bytes)
        return ADMIT_NOW if wait == 0 else Decision(Verdict.ADMIT, wait_ns=wait)

    def recheck(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return admit: the seed writes once its delay is over, whatever the debt then."""
        del writer, write_bytes, now_ns
        return ADMIT_NOW

    def state(self) -> ControllerState:
        """Return the controller's snapshot; cached until the next lifecycle call."""
        if self._state is None:
            self._state = self.ctl.snapshot()
        return self._state


class ModelLaw:
    """The seed's law on the reference model's state (``seed-model``): pure transitions."""

    def __init__(self, options: FlowOptions, clock: SimClock) -> None:
        """Build the model's state at the clock's time."""
        self.config = normalise(options_from_mapping(_option_values(options)))
        self._state = model.new_controller(self.config, clock.now_ns)
        self._tasks: dict[int, TaskState] = {}
        self._next_id = 0

    def enqueue(self, est_bytes: int, now_ns: int) -> object:
        """Charge a sealed buffer (spec FC-1)."""
        step = model.enqueue(self.config, self._state, est_bytes, now_ns)
        self._state = step.state
        self._next_id += 1
        self._tasks[self._next_id] = step.task
        return self._next_id

    def io_built(self, task: object, nbytes: int, elapsed_ns: int, now_ns: int) -> None:
        """Report the I/O (spec FC-2)."""
        del now_ns
        assert isinstance(task, int)  # noqa: S101 - the plant hands back what enqueue made
        step = model.io_built(self.config, self._state, self._tasks[task], nbytes, elapsed_ns)
        self._state, self._tasks[task] = step.state, step.task

    def mark_done(self, task: object, now_ns: int) -> None:
        """Settle the task (spec FC-5)."""
        assert isinstance(task, int)  # noqa: S101 - as in io_built
        step = model.mark_done(self.config, self._state, self._tasks.pop(task), now_ns)
        self._state = step.state

    def before_flush(self, task: object, now_ns: int) -> int:
        """Plan the flush and commit it at the end of its sleep (spec FC-9, FC-10)."""
        assert isinstance(task, int)  # noqa: S101 - as in io_built
        plan = model.plan_flush(self.config, self._state, self._tasks[task], now_ns)
        self._state = model.commit_flush(self._state, plan, now_ns + plan.sleep_ns)
        return plan.sleep_ns

    def enter_starving(self) -> None:
        """Open the arena-starvation scope (spec FC-11)."""
        self._state = model.enter_starving(self._state)

    def leave_starving(self) -> None:
        """Close the arena-starvation scope (spec FC-11)."""
        self._state = model.leave_starving(self._state)

    def admit(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the model's delay (spec FC-6 to FC-8)."""
        del writer, now_ns
        delay_us = model.before_foreground_write(self.config, self._state, write_bytes).delay_us
        return ADMIT_NOW if delay_us == 0 else Decision(Verdict.ADMIT, wait_ns=delay_us * 1_000)

    def recheck(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return admit, as the seed does."""
        del writer, write_bytes, now_ns
        return ADMIT_NOW

    def state(self) -> ControllerState:
        """Return the model's state."""
        return self._state


def _option_values(options: FlowOptions) -> dict[str, object]:
    """Return the 14 seed options of ``options`` by name (the extended law's are set apart)."""
    return {name: getattr(options, name) for name in OPTION_NAMES}


class ExtendedLaw(ControllerLaw):
    """The extended law on a real `FlowController` (``ext_admission_timeline``, EXT-1..9)."""

    def __init__(self, options: FlowOptions, clock: SimClock, *, stop_limit_us: int) -> None:
        """Build the controller with the law on and the user's stop limit (spec EXT-1)."""
        super().__init__(
            replace(
                options, ext_admission_timeline=True, ext_stop_wait_limit_ns=stop_limit_us * 1_000
            ),
            clock,
        )

    def admit(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the controller's decision, never waiting (the nowait form, spec EXT-5)."""
        del writer, now_ns
        return _as_plant_decision(self.ctl.decide_foreground_write(write_bytes))

    def recheck(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the controller's re-check (spec EXT-6)."""
        del writer, write_bytes, now_ns
        return _as_plant_decision(self.ctl.recheck_foreground_write())


class ExtendedModelLaw(ControllerLaw):
    """The extended law of the model (`flowpace_reference.extended`) over a real controller."""

    def __init__(self, options: FlowOptions, clock: SimClock, *, stop_limit_us: int) -> None:
        """Build the controller and the law's configuration and state (spec EXT-1, EXT-2)."""
        super().__init__(options, clock)
        values = {**_option_values(options), "ext_admission_timeline": True}
        values["ext_stop_wait_limit_ns"] = stop_limit_us * 1_000
        self.cfg = extended.extended_config(normalise(options_from_mapping(values)))
        self.ext = extended.ExtendedState()

    def admit(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the model's decision and keep the law's state (spec EXT-5)."""
        del writer
        step = extended.decide(self.cfg, self.ext, self.state(), write_bytes, now_ns)
        self.ext = step.state
        return _as_plant_decision(step.decision)

    def recheck(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return block if the debt reached stop during the wait (spec EXT-6)."""
        del writer, write_bytes
        return _as_plant_decision(extended.recheck(self.cfg, self.state(), now_ns))


def _as_plant_decision(decision: ForegroundAdmit | ForegroundBlock) -> Decision:
    """Return the plant's form of an extended-law decision (spec EXT-5)."""
    if isinstance(decision, ForegroundBlock):
        return Decision(
            Verdict.BLOCK, below_bytes=decision.below_bytes, deadline_ns=decision.deadline_ns
        )
    return ADMIT_NOW if decision.wait_ns == 0 else Decision(Verdict.ADMIT, decision.wait_ns)


class BucketLaw(ControllerLaw):
    """A RocksDB-style shared token bucket over a real controller's debt and disk estimate."""

    def __init__(self, options: FlowOptions, clock: SimClock) -> None:
        """Build the controller and an empty bucket."""
        super().__init__(options, clock)
        self.cfg = laws.bucket_config(self.ctl.config)
        self.bucket = laws.BucketState()
        self._until: dict[int, int] = {}
        """Each sleeping writer's end of delay: it sleeps in 1 ms slices until then."""

    def _recalculate(self) -> None:
        """Set the delayed write rate up again, as RocksDB does on every new superversion."""
        state = self.state()
        self.bucket = laws.bucket_recalculate(
            self.cfg, self.bucket, state.debt_bytes, state.io_bps_ewma
        )

    def enqueue(self, est_bytes: int, now_ns: int) -> object:
        """Charge a sealed buffer (a memtable switch), then recalculate."""
        task = super().enqueue(est_bytes, now_ns)
        self._recalculate()
        return task

    def mark_done(self, task: object, now_ns: int) -> None:
        """Settle the task (a flush installed), then recalculate."""
        super().mark_done(task, now_ns)
        self._recalculate()

    def admit(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the bucket's decision and keep its state."""
        decision, self.bucket = laws.bucket_admit(
            self.cfg, self.bucket, self.state().debt_bytes, write_bytes, now_ns
        )
        if decision.verdict is Verdict.ADMIT and decision.wait_ns > laws.REFILL_NS:
            self._until[writer] = now_ns + decision.wait_ns
            return Decision(Verdict.ADMIT, wait_ns=laws.REFILL_NS)
        return decision

    def recheck(self, writer: int, write_bytes: int, now_ns: int) -> Decision:
        """Return the next 1 ms slice of the delay, or admit once writes are not delayed.

        RocksDB's ``DelayWrite`` sleeps in 1 ms slices while ``NeedsDelay()`` holds and the
        delay is not over, then waits for the stop to end if writes are stopped.
        """
        del write_bytes
        stop = laws.bucket_stop(self.cfg, self.state().debt_bytes)
        if stop is not None:
            self._until.pop(writer, None)
            return stop
        until = self._until.get(writer)
        if until is None or not self.bucket.delayed or now_ns >= until:
            self._until.pop(writer, None)
            return ADMIT_NOW
        return Decision(Verdict.ADMIT, wait_ns=min(until - now_ns, laws.REFILL_NS))


@dataclass(frozen=True, slots=True)
class LawSpec:
    """A law the command line can name."""

    name: str
    summary: str
    build: Callable[[FlowOptions, SimClock, int], Law]
    """Make the law from the options, the clock and the user's stop limit, microseconds."""


def _seed(options: FlowOptions, clock: SimClock, stop_limit_us: int) -> Law:
    del stop_limit_us
    return ControllerLaw(options, clock)


def _seed_model(options: FlowOptions, clock: SimClock, stop_limit_us: int) -> Law:
    del stop_limit_us
    return ModelLaw(options, clock)


def _extended(options: FlowOptions, clock: SimClock, stop_limit_us: int) -> Law:
    return ExtendedLaw(options, clock, stop_limit_us=stop_limit_us)


def _extended_model(options: FlowOptions, clock: SimClock, stop_limit_us: int) -> Law:
    return ExtendedModelLaw(options, clock, stop_limit_us=stop_limit_us)


def _bucket(options: FlowOptions, clock: SimClock, stop_limit_us: int) -> Law:
    del stop_limit_us
    return BucketLaw(options, clock)


LAWS: Final = {
    spec.name: spec
    for spec in (
        LawSpec("seed", "the origin's law, on the real FlowController", _seed),
        LawSpec("extended", "shared admission timeline, smooth rate, real stop", _extended),
        LawSpec("token-bucket", "RocksDB-style shared token bucket (a peer)", _bucket),
        LawSpec("seed-model", "the origin's law on the reference model", _seed_model),
        LawSpec("extended-model", "the extended law on the reference model", _extended_model),
    )
}
"""Every law the simulator runs, by name."""
