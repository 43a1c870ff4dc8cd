"""The extended law: the controller against the model, step by step (spec EXT-1 to EXT-9).

A Hypothesis state machine drives a `FlowController` built with ``ext_admission_timeline``
(drawn on in most runs) and, beside it, the reference model: the seed's lifecycle
(`flowpace_reference.transitions`) and the extended law (`flowpace_reference.extended`). Every
step compares the decision, the time waited, the clock, the metrics, the controller's state
and the law's own state (EXT-2). The foreground write is tried in each form: the nowait
decision (``decide``), the nowait delay, the blocking form and the async form; on a manual
clock that does not block, a block at stop always times out, at its deadline (EXT-7).

The coverage gate: every run of the campaign must reach each of the law's regimes: a write
free above zero debt, a write that waits for its slot, a block at stop, a blocking write that
timed out, and a re-check that blocks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import ClassVar, Final

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from flowpace import FlowController, FlowOptions
from flowpace.testing import ManualClock, RecordingObserver
from flowpace.verify import campaign_settings
from flowpace_reference import extended
from flowpace_reference import transitions as model
from flowpace_reference.config import normalise, options_from_mapping
from flowpace_reference.types import (
    ControllerState,
    Emission,
    ForegroundAdmit,
    ForegroundBlock,
    TaskState,
)

REQUIRED: Final = frozenset(
    {"free above zero debt", "slot wait", "stop blocked", "timed out", "re-check blocked"}
)
"""The extended law's regimes every campaign must reach (spec EXT-5 to EXT-7)."""

FORMS: Final = ("decide", "nowait", "blocking", "async")
"""The forms of the foreground write (spec EXT-7)."""

UNIT: Final = 1_000
"""Bytes in a flush unit: a byte is a milli-unit."""

PAST: Final = st.one_of(st.sampled_from((-1, 0, 1)), st.integers(-2, 1_500))
"""How far past a threshold `ExtendedMatchesModel.enqueue_to` takes the debt, milli-units:
often exactly at it or one off, where a strict or non-strict comparison shows."""


@st.composite
def option_values(draw: st.DrawFn) -> dict[str, object]:
    """Return options with small thresholds, the extended law mostly on (spec EXT-1)."""
    soft = draw(st.integers(0, 3))
    stop = draw(st.integers(0, 9))
    return {
        "enable_backpressure": draw(st.sampled_from((True,) * 7 + (False,))),
        "bp_flush_unit_bytes": UNIT,
        "bp_soft_debt_units": soft,
        "bp_hard_debt_units": draw(st.integers(0, 5)),
        "bp_stop_debt_units": stop,
        "bp_cold_start_fail_safe_units": draw(st.integers(0, 6)),
        "bp_warmup_min_samples": draw(st.sampled_from((1, 1, 2, 3, 0))),  # 0: 4 (CFG-2)
        "bp_floor_bps": draw(st.sampled_from((0, 1_000_000, 50_000_000))),
        "bp_idle_reset_ms": draw(st.sampled_from((0, 0, 1, 3))),  # 0: 5 s (CFG-2)
        "ext_admission_timeline": draw(st.sampled_from((True,) * 7 + (False,))),
        "ext_setpoint_units": draw(st.integers(0, 10)),
        "ext_stop_wait_limit_ns": draw(st.sampled_from((0, 1, 999, 2_000_000, 10**9))),
    }


class ExtendedMatchesModel(RuleBasedStateMachine):
    """The controller with the extended law and the model, side by side (spec EXT-1..9)."""

    covered: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        """Start with no controller: `start` builds it."""
        super().__init__()
        self.labelled: set[str] = set()
        self.tasks: list[tuple[object, TaskState]] = []
        self.last_start: int | None = None
        """The latest slot start the law gave, while the timeline holds (EXT-8 d)."""

    # --- set-up and bookkeeping ---------------------------------------------------------------

    @initialize(values=option_values())
    def start(self, values: dict[str, object]) -> None:
        """Build the controller and the model from the same options (spec EXT-1, EXT-2)."""
        self.clock = ManualClock()
        self.observer = RecordingObserver()
        self.ctl = FlowController(
            FlowOptions(**values),  # type: ignore[arg-type]  # drawn as the options' types
            clock=self.clock,
            observer=self.observer,
            async_sleep=self.clock.async_sleep_ns,
        )
        self.config = normalise(options_from_mapping(values))
        assert self.ctl.config == self.config  # spec EXT-1: both normalise alike
        self.cfg = extended.extended_config(self.config)
        self.state: ControllerState = model.new_controller(self.config, 0)
        self.ext = extended.ExtendedState()

    def label(self, name: str) -> None:
        """Record a regime reached, once a run, for the coverage gate."""
        if name not in self.labelled:
            self.labelled.add(name)
            event(name)
            type(self).covered[name] += 1

    def now(self) -> int:
        """Return the clock's time."""
        return self.clock.monotonic_ns()

    # --- the lifecycle (the seed's, unchanged by the law) -------------------------------------

    @rule(est=st.integers(0, 4_000))
    def enqueue(self, est: int) -> None:
        """Charge a task (spec FC-1); the law's state is untouched (EXT-2)."""
        step = model.enqueue(self.config, self.state, est, self.now())
        self.state = step.state
        self.tasks.append((self.ctl.on_enqueue_est(est), step.task))

    @rule(zone=st.sampled_from(("soft", "setpoint", "stop")), past=PAST)
    def enqueue_to(self, zone: str, past: int) -> None:
        """Charge a task that takes the debt to a threshold of the law, give or take a little."""
        threshold = {"soft": self.cfg.soft_mu, "setpoint": self.cfg.setpoint_mu}.get(
            zone, self.cfg.stop_mu
        )
        self.enqueue(max(threshold + past - self.state.debt_bytes, 0))  # a byte is a milli-unit

    @precondition(lambda self: any(not task.done for _, task in self.tasks))
    @rule(
        zone=st.sampled_from(("soft", "setpoint", "stop")),
        past=PAST,
        nbytes=st.integers(1, 5_000),
        form=st.sampled_from(FORMS),
    )
    def write_at(self, zone: str, past: int, nbytes: int, form: str) -> None:
        """Take the debt to a threshold and write there: the boundaries of EXT-5's rules."""
        self.enqueue_to(zone, past)
        self.write(nbytes, form)
        self.recheck()  # a write whose wait ended here (EXT-6)

    @rule(nbytes=st.integers(1, 5_000), form=st.sampled_from(FORMS))
    def write_at_soft(self, nbytes: int, form: str) -> None:
        """Take the debt to soft and write: free in steady state, or the fail-safe's (EXT-3)."""
        self.enqueue_to("soft", 0)
        self.write(nbytes, form)

    @rule(
        data=st.data(),
        nbytes=st.one_of(st.integers(1, 5_000), st.just(0)),
        elapsed_us=st.one_of(st.integers(1, 3_000), st.just(0)),
    )
    def io_built(self, data: st.DataObject, nbytes: int, elapsed_us: int) -> None:
        """Report a live task's I/O, once (spec FC-2)."""
        live = [
            i for i, (_, task) in enumerate(self.tasks) if not task.io_reported and not task.done
        ]
        if not live:
            return
        i = data.draw(st.sampled_from(live))
        handle, task = self.tasks[i]
        step = model.io_built(self.config, self.state, task, nbytes, elapsed_us * 1_000)
        self.state = step.state
        self.tasks[i] = (handle, step.task)
        self.ctl.on_io_built(handle, nbytes, elapsed_us * 1_000)  # type: ignore[arg-type]

    @rule(nbytes=st.integers(1, 2_000), elapsed_us=st.integers(1, 3_000))
    def sample(self, nbytes: int, elapsed_us: int) -> None:
        """Flush a small task at once and report it: an I/O sample, towards steady state."""
        self.enqueue(nbytes)
        handle, task = self.tasks[-1]
        step = model.io_built(self.config, self.state, task, nbytes, elapsed_us * 1_000)
        self.state = step.state
        self.tasks[-1] = (handle, step.task)
        self.ctl.on_io_built(handle, nbytes, elapsed_us * 1_000)  # type: ignore[arg-type]

    @precondition(lambda self: any(not task.done for _, task in self.tasks))
    @rule(data=st.data())
    def mark_done(self, data: st.DataObject) -> None:
        """Settle a live task (spec FC-5)."""
        live = [i for i, (_, task) in enumerate(self.tasks) if not task.done]
        i = data.draw(st.sampled_from(live))
        handle, task = self.tasks[i]
        step = model.mark_done(self.config, self.state, task, self.now())
        self.state = step.state
        self.tasks[i] = (handle, step.task)
        self.ctl.on_mark_done(handle)  # type: ignore[arg-type]

    @rule(ns=st.one_of(st.integers(0, 50_000), st.integers(0, 5 * 10**9)))
    def advance(self, ns: int) -> None:
        """Let time pass."""
        self.clock.advance_ns(ns)

    # --- the foreground write, in each form ---------------------------------------------------

    @rule(nbytes=st.integers(0, 5_000), form=st.sampled_from(FORMS))
    def write(self, nbytes: int, form: str) -> None:
        """Decide a write in ``form``; the controller and the model must agree (EXT-5..9)."""
        before_calls = self.observer.call_count
        now = self.now()
        if not self.config.ext_admission_timeline:
            self.seed_write(nbytes, now, before_calls)
            return
        step = extended.decide(self.cfg, self.ext, self.state, nbytes, now)
        self.ext = step.state
        decision = step.decision
        self.check_decision(decision, nbytes, now)
        if form == "decide":
            got: object = self.ctl.decide_foreground_write(nbytes)
            expected: object = decision
            emissions = self.admit_emissions(decision)
            end = now
        elif form == "nowait":
            got = self.ctl.before_foreground_write_nowait(nbytes)
            if isinstance(decision, ForegroundAdmit):
                expected = decision.wait_ns
            else:
                expected = decision.deadline_ns - now
            emissions = self.admit_emissions(decision)
            end = now
        else:
            end, emissions = self.wait_out(decision, now)
            expected = end - now
            if form == "blocking":
                got = self.ctl.before_foreground_write(nbytes)
            else:
                got = asyncio.run(self.ctl.before_foreground_write_async(nbytes))
        assert got == expected, (form, got, expected)
        assert self.now() == end, (form, self.now(), end)
        assert self.observer.calls_since(before_calls) == emissions

    @rule(
        nbytes=st.integers(1, 5_000), forms=st.lists(st.sampled_from(FORMS), min_size=2, max_size=4)
    )
    def burst(self, nbytes: int, forms: list[str]) -> None:
        """Write several times at the same instant: later writes queue for slots (EXT-8 c)."""
        self.enqueue_to("setpoint", 0)  # between soft and stop, unless the debt is past it
        for form in forms:
            self.write(nbytes, form)

    def seed_write(self, nbytes: int, now: int, before_calls: int) -> None:
        """With the law off, the nowait decision is the seed's delay (spec EXT-1, FC-6..8)."""
        seed = model.before_foreground_write(self.config, self.state, nbytes)
        assert self.ctl.decide_foreground_write(nbytes) == ForegroundAdmit(seed.delay_us * 1_000)
        assert self.observer.calls_since(before_calls) == seed.emissions
        assert self.ctl.recheck_foreground_write() == ForegroundAdmit(0)
        assert self.now() == now

    def check_decision(self, decision: extended.Decision, nbytes: int, now: int) -> None:
        """Check EXT-8 (a) and (d) on the model's decision and label its regime."""
        debt = extended.debt_mu(self.cfg, self.state)
        if isinstance(decision, ForegroundBlock):
            assert debt >= self.cfg.stop_mu  # EXT-8 a: never a block below stop
            self.label("stop blocked")
            return
        if debt != 0 and debt <= extended.free_below_mu(self.cfg, self.ext, self.state):
            assert decision.wait_ns == 0  # EXT-8 a: free at or below the free threshold
            if self.cfg.backpressure and nbytes:
                self.label("free above zero debt")
        if self.ext.next_admit_ns is None:
            self.last_start = None
        elif nbytes and self.cfg.backpressure and debt:
            start = now + decision.wait_ns
            assert self.last_start is None or start >= self.last_start  # EXT-8 d: FIFO
            self.last_start = start
        if decision.wait_ns:
            self.label("slot wait")

    @staticmethod
    def admit_emissions(decision: extended.Decision) -> tuple[Emission, ...]:
        """Return what a nowait decision emits: an admit's wait only (spec EXT-9)."""
        if isinstance(decision, ForegroundAdmit):
            return extended.delay_emissions(decision.wait_ns)
        return ()

    def wait_out(self, decision: extended.Decision, now: int) -> tuple[int, tuple[Emission, ...]]:
        """
        Return when a blocking or async write returns, and what it emits (spec EXT-6, EXT-7).

        Nothing lowers the debt while this single thread waits, so a block ends at its
        deadline: the write times out and proceeds.
        """
        emissions: list[Emission] = []
        if isinstance(decision, ForegroundAdmit):
            if decision.wait_ns == 0:
                return now, ()
            now += decision.wait_ns
            emissions.extend(extended.delay_emissions(decision.wait_ns))
            decision = extended.recheck(self.cfg, self.state, now)
            if isinstance(decision, ForegroundAdmit):
                return now, tuple(emissions)
            self.label("re-check blocked")
        assert not extended.wakes(decision, self.state)
        blocked_at = now
        now = max(now, decision.deadline_ns)
        assert now - blocked_at <= self.cfg.stop_limit_ns  # EXT-8 e: bounded by the limit
        assert extended.timed_out(decision, now)
        emissions.extend(extended.delay_emissions(now - blocked_at))
        self.label("timed out")
        return now, tuple(emissions)

    @rule()
    def recheck(self) -> None:
        """Re-check a write whose wait ended (spec EXT-6): it changes nothing."""
        got = self.ctl.recheck_foreground_write()
        if not self.config.ext_admission_timeline:
            assert got == ForegroundAdmit(0)
            return
        expected = extended.recheck(self.cfg, self.state, self.now())
        assert got == expected
        if isinstance(expected, ForegroundBlock):
            self.label("re-check blocked")

    # --- after every step ---------------------------------------------------------------------

    @invariant()
    def states_agree(self) -> None:
        """The controller's state and the law's are the model's (spec ST-1, EXT-2, EXT-8 f)."""
        if not hasattr(self, "ctl"):
            return
        assert self.ctl.snapshot() == self.state
        ctl = self.ctl
        law = (ctl._ext_next_admit, ctl._ext_known_bps)
        assert law == (self.ext.next_admit_ns, self.ext.known_bps)


@pytest.mark.no_crosshair("a state machine over a threaded controller")
def test_extended_law_matches_model_step_by_step() -> None:
    # spec EXT-1 to EXT-9: see the module docstring.
    machine = ExtendedMatchesModel
    machine.covered.clear()
    campaign = campaign_settings()
    examples = max(campaign.max_examples, 100)
    run_state_machine_as_test(
        machine, settings=settings(campaign, max_examples=examples, stateful_step_count=30)
    )
    missing = sorted(REQUIRED - {name for name, count in machine.covered.items() if count})
    # The coverage gate: a campaign that never reached a regime checked nothing about it.
    assert not missing, f"regimes never reached: {missing}; reached: {dict(machine.covered)}"


def test_the_option_is_off_by_default_and_normalises_as_specified() -> None:
    # spec EXT-1: off by default; the default setpoint is soft + (stop - soft) // 8 = 8 + 5.
    config = FlowController(clock=ManualClock()).config
    assert config == normalise(options_from_mapping({}))
    assert not config.ext_admission_timeline
    assert (config.ext_setpoint_units, config.ext_stop_wait_limit_ns) == (13, 10**9)
    clamped = FlowOptions(ext_setpoint_units=99, ext_stop_wait_limit_ns=0).normalised()
    assert (clamped.ext_setpoint_units, clamped.ext_stop_wait_limit_ns) == (47, 1)
    low = FlowOptions(ext_setpoint_units=3).normalised()
    assert low.ext_setpoint_units == 9  # at least soft + 1
    assert FlowController(FlowOptions(enable_backpressure=True), clock=ManualClock())._ext is None


async def never(duration_ns: int) -> None:
    """Await for ever (until cancelled): an async sleep whose deadline never comes."""
    del duration_ns
    await asyncio.Event().wait()


STOPPED: Final = {
    "enable_backpressure": True,
    "bp_flush_unit_bytes": UNIT,
    "bp_soft_debt_units": 1,
    "bp_hard_debt_units": 2,
    "bp_stop_debt_units": 3,
    "bp_cold_start_fail_safe_units": 1,
    "ext_admission_timeline": True,
}


def test_an_async_block_is_woken_by_the_debt_falling() -> None:
    # spec EXT-7: the async form awaits an event the settling operation sets; nothing is left
    # registered once it returns.
    ctl = FlowController(FlowOptions(**STOPPED), clock=ManualClock(), async_sleep=never)  # type: ignore[arg-type]
    task = ctl.on_enqueue_est(3_500)

    async def scenario() -> int:
        writer = asyncio.ensure_future(ctl.before_foreground_write_async(100))
        for _ in range(3):
            await asyncio.sleep(0)  # the writer decides and blocks
        assert not writer.done()
        assert ctl._ext_blocked == 1
        ctl.on_mark_done(task)  # the debt falls to 0: below stop
        return await writer

    assert asyncio.run(scenario()) == 0  # woken at once: the manual clock never moved
    assert (ctl._ext_blocked, ctl._ext_async_waiters) == (0, [])


def test_a_cancelled_async_block_leaves_nothing_waiting_and_its_slot_taken() -> None:
    # spec EXT-7: cancelled, a block unregisters its event; a slot taken stays taken.
    ctl = FlowController(FlowOptions(**STOPPED), clock=ManualClock(), async_sleep=never)  # type: ignore[arg-type]
    ctl.on_enqueue_est(1_500)  # between soft and stop: writes take slots
    first = ctl.decide_foreground_write(100)
    timeline = ctl._ext_next_admit
    assert first == ForegroundAdmit(0)
    assert timeline is not None

    async def cancelled(nbytes: int) -> None:
        writer = asyncio.ensure_future(ctl.before_foreground_write_async(nbytes))
        for _ in range(3):
            await asyncio.sleep(0)
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer

    asyncio.run(cancelled(100))  # waited for its slot, behind the first write: cancelled
    after_slot = ctl._ext_next_admit
    assert after_slot is not None
    assert after_slot > timeline  # the slot stays taken
    ctl.on_enqueue_est(2_000)  # now at stop
    asyncio.run(cancelled(100))  # blocked at stop: cancelled
    assert (ctl._ext_blocked, ctl._ext_async_waiters) == (0, [])
    assert ctl._ext_next_admit == after_slot


@pytest.mark.no_crosshair("a threaded controller")
@settings(campaign_settings(), max_examples=max(campaign_settings().max_examples, 60))
@given(
    warm=st.booleans(),
    zone=st.sampled_from(("soft", "fail-safe", "setpoint", "stop")),
    past=st.sampled_from((-1, 0, 1)),
)
def test_each_rule_boundary_decides_as_the_model(warm: bool, zone: str, past: int) -> None:
    # spec EXT-3, EXT-5, EXT-8 a: at each threshold and one milli-unit either side, two writes
    # at the same instant (the second behind the first's slot) and a re-check, in both the
    # cold start and the steady state: the controller's decisions and its timeline are the
    # model's.
    values: dict[str, object] = {**STOPPED, "bp_stop_debt_units": 6, "bp_warmup_min_samples": 1}
    values["bp_cold_start_fail_safe_units"] = 3
    config = normalise(options_from_mapping(values))
    cfg = extended.extended_config(config)
    ctl = FlowController(FlowOptions(**values), clock=ManualClock())  # type: ignore[arg-type]
    state = model.new_controller(config, 0)
    if warm:
        task = ctl.on_enqueue_est(0)
        ctl.on_io_built(task, 1_000, 10_000)  # one sample: 100 MB/s, steady state
        ctl.on_mark_done(task)
        step = model.enqueue(config, state, 0, 0)
        step = model.io_built(config, step.state, step.task, 1_000, 10_000)
        state = model.mark_done(config, step.state, step.task, 0).state
    threshold = {"soft": cfg.soft_mu, "fail-safe": cfg.cold_mu - 1, "setpoint": cfg.setpoint_mu}
    debt = threshold.get(zone, cfg.stop_mu) + past  # a byte is a milli-unit
    ctl.on_enqueue_est(debt)
    state = model.enqueue(config, state, debt, 0).state
    ext = extended.ExtendedState()
    for _ in range(2):
        expected = extended.decide(cfg, ext, state, 100, 0)
        ext = expected.state
        assert ctl.decide_foreground_write(100) == expected.decision
        assert (ctl._ext_next_admit, ctl._ext_known_bps) == (ext.next_admit_ns, ext.known_bps)
    assert ctl.recheck_foreground_write() == extended.recheck(cfg, state, 0)
